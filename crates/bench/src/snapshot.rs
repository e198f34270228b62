//! Snapshots: `snapshot` and `restore` of a whole cluster whose nodes carry
//! changes, against booting the same cluster fresh in the same run (what one
//! would do without snapshots: start over).

use std::time::{Duration, Instant};

use anyhow::Context;

use rehearse_sandbox::{Engine, ExecRequest, UpRequest};
use rehearse_spec::{Topology, DEFAULT_IMAGE};

use crate::stats::{self, Samples};

/// What every node changes before the snapshot: a user, config files, `mb`
/// MiB of data and, if any, packages installed.
fn changes(mb: u32, packages: &str) -> String {
    let install = if packages.trim().is_empty() {
        String::new()
    } else {
        format!(
            "apt-get -o Acquire::http::Timeout=30 update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {packages} >/dev/null; "
        )
    };
    format!(
        "set -e; {install}useradd -m bench; mkdir -p /var/lib/app /etc/app; \
         for i in $(seq 50); do echo \"key$i=value\" > /etc/app/conf$i; done; \
         head -c {mb}M /dev/urandom > /var/lib/app/data; sync"
    )
}

/// Makes the changes on every node of a cluster, in parallel.
fn change_all(engine: &Engine, id: &str, script: &str) -> anyhow::Result<()> {
    let state = engine.get(id)?;
    std::thread::scope(|s| {
        let handles: Vec<_> = state
            .nodes
            .iter()
            .map(|n| s.spawn(move || sh(engine, id, &n.name, script).map(|_| ())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("change thread panicked"))
            .collect::<anyhow::Result<Vec<()>>>()
    })?;
    Ok(())
}

fn up(engine: &Engine, nodes: usize) -> anyhow::Result<(String, Duration)> {
    let t0 = Instant::now();
    let state = engine.up(
        UpRequest {
            topology: Topology::with_nodes(nodes, DEFAULT_IMAGE)?,
            ttl: Duration::from_secs(600),
            boot_timeout: Duration::from_secs(60),
            source: "rehearse-bench".into(),
            ownership: rehearse_sandbox::Ownership::User,
        },
        &|_| {},
    )?;
    Ok((state.id, t0.elapsed()))
}

fn sh(engine: &Engine, id: &str, node: &str, script: &str) -> anyhow::Result<String> {
    let (o, out, err) = engine.exec_capture(id, node, &ExecRequest::shell(script))?;
    anyhow::ensure!(o.exit_code == 0, "`{script}` on {node}: {err}");
    Ok(out.trim().to_string())
}

pub fn bench(
    runs: usize,
    sizes: &[usize],
    mb: u32,
    packages: &str,
    json: bool,
) -> anyhow::Result<()> {
    let script = changes(mb, packages);
    let what = if packages.trim().is_empty() {
        format!("{mb} MiB")
    } else {
        format!("{packages} + {mb} MiB")
    };
    bench_sizes(runs, sizes, &script, &what, json)
}

fn bench_sizes(
    runs: usize,
    sizes: &[usize],
    script: &str,
    what: &str,
    json: bool,
) -> anyhow::Result<()> {
    let engine =
        Engine::new(&rehearse_image::state_dir()).context("opening the state directory")?;
    // Warm-up: page cache, package cache start.
    let (id, _) = up(&engine, 1)?;
    engine.down(&id)?;
    for &n in sizes {
        let mut fresh = Samples::new(&format!(
            "rehearse up, {n} fresh nodes, to ready (baseline)"
        ));
        let mut redo = Samples::new(&format!("rehearse up, {n} fresh nodes + the changes again"));
        let mut snap = Samples::new(&format!("snapshot, {n} nodes ({what} changed each)"));
        let mut frozen = Samples::new(&format!("  of which nodes frozen, {n} nodes"));
        let mut restore = Samples::new(&format!("restore, {n} nodes, to all ready"));
        let mut copying = Samples::new("  of which copying layers (nodes still up)");
        let mut stopping = Samples::new("  of which stopping nodes, swapping layers");
        let mut booting = Samples::new("  of which booting to all ready");
        let mut cleanup = Samples::new("  of which removing the replaced layers");
        let (id, _) = up(&engine, n)?;
        let result = (|| -> anyhow::Result<()> {
            let state = engine.get(&id)?;
            change_all(&engine, &id, script)?;
            for run in 0..runs {
                // Baseline and snapshot alternate so both see the same machine.
                let (fresh_id, took) = up(&engine, n)?;
                engine.down(&fresh_id)?;
                fresh.push(took);
                let t0 = Instant::now();
                let (again_id, _) = up(&engine, n)?;
                let redone = change_all(&engine, &again_id, script);
                redo.push(t0.elapsed());
                engine.down(&again_id)?;
                redone?;

                let name = format!("run{run}");
                let t0 = Instant::now();
                let manifest = engine.snapshot(&id, &name)?;
                snap.push(t0.elapsed());
                frozen.push(Duration::from_millis(manifest.frozen_ms));

                for node in &state.nodes {
                    sh(
                        &engine,
                        &id,
                        &node.name,
                        "rm -rf /etc/app /var/lib/app; userdel bench",
                    )?;
                }
                let t0 = Instant::now();
                let restored = engine.restore(&id, &name, Duration::from_secs(60))?;
                let took = t0.elapsed();
                restore.push(took);
                let ms = Duration::from_millis;
                copying.push(ms(restored.copy_ms));
                stopping.push(ms(restored.stop_ms));
                booting.push(ms(restored.boot_ms));
                cleanup.push(ms(restored.cleanup_ms));
                for node in &state.nodes {
                    let found = sh(
                        &engine,
                        &id,
                        &node.name,
                        "id -un bench; ls /etc/app | wc -l; systemctl is-system-running",
                    )?;
                    anyhow::ensure!(
                        found.split_whitespace().collect::<Vec<_>>() == ["bench", "50", "running"],
                        "{} after restore: {found}",
                        node.name
                    );
                }
                engine.remove_snapshot(&id, &name)?;
                if run == 0 && !json {
                    println!(
                        "{n} nodes: snapshot of {} copied as {:?}",
                        crate::snapshot::size(manifest.bytes),
                        manifest.copy
                    );
                }
            }
            Ok(())
        })();
        engine.down(&id)?;
        result?;
        stats::print(
            &[
                fresh, redo, snap, frozen, restore, copying, stopping, booting, cleanup,
            ],
            0,
            json,
        );
    }
    Ok(())
}

fn size(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}
