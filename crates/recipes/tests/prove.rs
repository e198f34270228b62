//! Every shipped recipe proven on a fresh cluster: its scenario run by the
//! same code as `rehearse recipe prove`, a few at a time, each proof recorded
//! with the recipe's version and content hash, and no cluster left behind.
//!
//! `REHEARSE_PROVE_ONLY=web-lb,time-sync` limits the run to some recipes
//! (for working on them); CI proves them all. Each is proven on the first
//! platform its recipe.yaml lists, and web-lb on every one it lists (the
//! per-platform proof); `REHEARSE_PROVE_ALL_PLATFORMS=1` proves every recipe
//! on every platform it lists.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rehearse_recipes::{prove, Catalogue};
use rehearse_sandbox::Engine;

/// Proofs at once: each boots 2-5 nodes that install packages, on 2 cores.
const PARALLEL: usize = 3;

/// The recipe CI proves on every platform it lists.
const ALL_PLATFORMS_IN_CI: &str = "web-lb";

#[test]
fn every_shipped_recipe_proves_on_a_fresh_cluster() {
    rehearse_testkit::require_root("recipe proofs");
    // Proofs and their runs are recorded in a history of this test's own
    // (under target/), never the user's; the image cache is shared.
    let engine = Engine::new(&rehearse_image::state_dir())
        .expect("engine")
        .with_history_dir(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("history/prove"));
    let catalogue = Catalogue::load(&Catalogue::default_dir()).expect("the catalogue loads");
    let only: Option<Vec<String>> = std::env::var("REHEARSE_PROVE_ONLY")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_string).collect());
    let recipes: Vec<_> = catalogue
        .recipes
        .iter()
        .filter(|r| {
            only.as_ref()
                .is_none_or(|o| o.iter().any(|n| n == r.name()))
        })
        .collect();
    if only.is_none() {
        assert!(
            recipes.len() >= 10,
            "the catalogue ships at least ten recipes"
        );
    }
    let all_platforms = std::env::var("REHEARSE_PROVE_ALL_PLATFORMS").is_ok_and(|v| v == "1");
    // The proofs' runs are recorded as `rehearse recipe prove` records them.
    let store = rehearse_store::RunStore::open(engine.history_dir())
        .ok()
        .map(std::sync::Arc::new);
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(recipe) = recipes.get(i) else { break };
                let platforms = if all_platforms || recipe.name() == ALL_PLATFORMS_IN_CI {
                    recipe.meta.platforms.clone()
                } else {
                    recipe.meta.platforms[..1].to_vec()
                };
                let proof =
                    prove::prove_on(&engine, store.clone(), recipe, &[], &platforms, &|_| {});
                eprintln!(
                    "{}: {}",
                    recipe.name(),
                    match &proof {
                        Ok(p) => format!(
                            "{} (run {}): {}",
                            p.record.outcome,
                            p.record.run_id,
                            p.platforms
                                .iter()
                                .map(|pp| format!(
                                    "{} {} in {} ms",
                                    pp.platform, pp.outcome, pp.total_ms
                                ))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        Err(e) => e.to_string(),
                    }
                );
                results.lock().unwrap().push((*recipe, proof));
            });
        }
    });
    let results = results.into_inner().unwrap();
    let mut failed = Vec::new();
    for (recipe, proof) in &results {
        match proof {
            Ok(p) if p.passed() => {
                // The proof is on record with what was proven.
                let last = prove::history(engine.history_dir(), Some(recipe.name()))
                    .into_iter()
                    .rfind(|r| r.run_id == p.record.run_id)
                    .expect("the proof is recorded");
                assert_eq!(last.version, recipe.meta.version);
                assert_eq!(last.hash, recipe.hash);
                assert_eq!(last.outcome, "passed");
                // One result per platform proven, each on record.
                let proven: Vec<&str> = p.platforms.iter().map(|pp| pp.platform.as_str()).collect();
                if recipe.name() == ALL_PLATFORMS_IN_CI || all_platforms {
                    assert_eq!(proven, recipe.meta.platforms, "{}", recipe.name());
                }
                for pp in &p.platforms {
                    assert_eq!(pp.outcome, "passed", "{}: {pp:?}", recipe.name());
                    let on_record = prove::history(engine.history_dir(), Some(recipe.name()))
                        .into_iter()
                        .any(|r| {
                            r.run_id == pp.run_id
                                && r.platform.as_deref() == Some(pp.platform.as_str())
                        });
                    assert!(
                        on_record,
                        "{} on {}: not recorded",
                        recipe.name(),
                        pp.platform
                    );
                }
                // Checks a node kind cannot run are skipped, never all of them.
                assert!(
                    p.report.checks.iter().any(|c| c.passed()),
                    "{}: no check passed",
                    recipe.name()
                );
            }
            Ok(p) => failed.push(format!(
                "{}: {} (run {}): {}",
                recipe.name(),
                p.record.outcome,
                p.record.run_id,
                p.platforms
                    .iter()
                    .filter(|pp| pp.outcome != "passed")
                    .map(|pp| format!("on {}: {}", pp.platform, pp.failures.join("; ")))
                    .collect::<Vec<_>>()
                    .join(" | ")
            )),
            Err(e) => failed.push(format!("{}: {e}", recipe.name())),
        }
        if let Ok(p) = proof {
            for cluster in p.platforms.iter().filter_map(|pp| pp.cluster.as_ref()) {
                assert!(
                    engine.get(cluster).is_err(),
                    "{}: cluster {cluster} left behind",
                    recipe.name()
                );
            }
        }
    }
    assert!(
        failed.is_empty(),
        "recipes failing their proof:\n{}",
        failed.join("\n")
    );
}
