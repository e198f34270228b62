//! How many 4-node clusters this host boots at once, what an idle node costs,
//! and how `up` slows down with other clusters running.

use std::time::{Duration, Instant};

use anyhow::Context;

use rehearse_sandbox::{ClusterState, Engine, SandboxError, UpRequest};
use rehearse_spec::{Topology, DEFAULT_IMAGE};

use crate::stats::{self, Samples};

const NODES: usize = 4;

fn up(engine: &Engine) -> Result<ClusterState, SandboxError> {
    engine.up(
        UpRequest {
            topology: Topology::with_nodes(NODES, DEFAULT_IMAGE).expect("valid topology"),
            ttl: Duration::from_secs(1800),
            boot_timeout: Duration::from_secs(60),
            source: "rehearse-bench capacity".into(),
            ownership: rehearse_sandbox::Ownership::User,
        },
        &|_| {},
    )
}

/// Destroys clusters when dropped, so a failing run leaves nothing.
struct Clusters<'a> {
    engine: &'a Engine,
    ids: Vec<String>,
}

impl Drop for Clusters<'_> {
    fn drop(&mut self) {
        let engine = self.engine;
        std::thread::scope(|s| {
            for id in &self.ids {
                s.spawn(move || {
                    let _ = engine.down(id);
                });
            }
        });
    }
}

/// Memory charged to a node's cgroup (bytes): cgroup v1 memory hierarchy on
/// hybrid hosts, v2 otherwise.
fn node_memory(cluster: &str, node: &str) -> Option<u64> {
    [
        format!("/sys/fs/cgroup/memory/rehearse/{cluster}/{node}/memory.usage_in_bytes"),
        format!("/sys/fs/cgroup/rehearse/{cluster}/{node}/memory.current"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
}

pub fn bench(batches: &[usize], runs: usize, others: &[usize], json: bool) -> anyhow::Result<()> {
    let engine =
        Engine::new(&rehearse_image::state_dir()).context("opening the state directory")?;
    let spec = engine.images().spec_for(DEFAULT_IMAGE)?;
    engine
        .images()
        .ensure(&spec, &|m| eprintln!("image: {m}"))?;
    drop(up(&engine).map(|s| engine.down(&s.id))); // warm-up

    // 1. Clusters started at the same moment, in growing batches, until one fails.
    let mut booted_together = 0;
    let mut stopped_by = String::from("none (every batch booted)");
    let mut idle_node_mb = None;
    for &k in batches {
        let t0 = Instant::now();
        let results: Vec<Result<ClusterState, SandboxError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..k).map(|_| s.spawn(|| up(&engine))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("up thread"))
                .collect()
        });
        let took = t0.elapsed();
        let mut batch = Clusters {
            engine: &engine,
            ids: Vec::new(),
        };
        let mut failure = None;
        for r in results {
            match r {
                Ok(s) => batch.ids.push(s.id),
                Err(e) => failure = failure.or(Some(e.to_string())),
            }
        }
        eprintln!(
            "{k} clusters of {NODES} started together: {} ready in {:.1} s",
            batch.ids.len(),
            took.as_secs_f64()
        );
        if let Some(f) = failure {
            stopped_by = f;
            break;
        }
        booted_together = k;
        std::thread::sleep(Duration::from_secs(3));
        let mut total = 0u64;
        let mut counted = 0u64;
        for id in &batch.ids {
            for n in 1..=NODES {
                if let Some(b) = node_memory(id, &format!("node{n}")) {
                    total += b;
                    counted += 1;
                }
            }
        }
        if counted > 0 {
            idle_node_mb = Some(total as f64 / counted as f64 / (1 << 20) as f64);
        }
    }
    let capacity = rehearse_sandbox::capacity::measure(engine.state_dir());

    // 2. `up` of one 4-node cluster while N others are up.
    let mut rows = Vec::new();
    let mut background = Clusters {
        engine: &engine,
        ids: Vec::new(),
    };
    for &n in others {
        while background.ids.len() < n {
            background.ids.push(up(&engine)?.id);
        }
        let mut samples = Samples::new(&format!("up, {NODES} nodes, with {n} other clusters up"));
        for _ in 0..runs {
            let t0 = Instant::now();
            let s = up(&engine)?;
            samples.push(t0.elapsed());
            engine.down(&s.id)?;
        }
        rows.push(samples);
    }
    drop(background);

    if json {
        println!(
            "{}",
            serde_json::json!({
                "concurrent_clusters_booted": booted_together,
                "stopped_by": stopped_by,
                "idle_node_mib": idle_node_mb,
                "admission": {"fits_now": capacity.fits, "limited_by": capacity.limited_by},
            })
        );
    } else {
        println!("{NODES}-node clusters booted at once: {booted_together} (batches {batches:?}); next batch stopped by: {stopped_by}");
        match idle_node_mb {
            Some(mb) => println!("memory per idle node (its cgroup): {mb:.1} MiB"),
            None => println!("memory per idle node: not measured"),
        }
        println!(
            "admission now: {} more nodes fit, limited by {}",
            capacity.fits, capacity.limited_by
        );
    }
    stats::print(&rows, 0, json);
    Ok(())
}
