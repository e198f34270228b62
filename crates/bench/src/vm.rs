//! VM nodes: `up` of one VM node to ready (the guest's readiness signal, then
//! sshd answering) and `down`, against `up` of one container node measured in
//! the same run. Reports the accelerator, which decides most of the figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use rehearse_sandbox::vm::{GuestInit, VmBackend};
use rehearse_sandbox::{Engine, UpRequest};
use rehearse_spec::{NodeBackend, Topology, DEFAULT_IMAGE};

use crate::stats::{self, Samples};

pub fn bench(runs: usize, systemd: bool, json: bool) -> anyhow::Result<()> {
    let state_dir = rehearse_image::state_dir();
    let inits: Vec<GuestInit> = if systemd {
        vec![GuestInit::Minimal, GuestInit::Systemd]
    } else {
        vec![GuestInit::Minimal]
    };
    let probe = VmBackend::new(&state_dir)
        .accelerator()
        .context("preparing the VM backend")?;
    let accel = probe.accelerator.as_str();
    if !json {
        println!("accelerator: {accel} ({})", probe.detail);
    }
    let base_engine = Engine::new(&state_dir).context("opening the state directory")?;
    // Warm-up: the first VM boot builds the base disk and the kernel cache.
    let warm = |engine: &Engine, backend| up_down(engine, backend).map(|_| ());
    warm(&base_engine, NodeBackend::Nspawn)?;
    let mut rows = Vec::new();
    let mut baseline = Samples::new("rehearse up, 1 container node, to ready (baseline)");
    for _ in 0..runs {
        baseline.push(up_down(&base_engine, NodeBackend::Nspawn)?.0);
    }
    rows.push(baseline);
    for init in inits {
        let engine = Engine::new(&state_dir)?
            .with_node_backend(Arc::new(VmBackend::new(&state_dir).with_init(init)));
        warm(&engine, NodeBackend::Vm)?;
        let label = match init {
            GuestInit::Minimal => "minimal init",
            GuestInit::Systemd => "systemd",
        };
        let mut up = Samples::new(&format!(
            "rehearse up, 1 VM node ({label}, {accel}), to ready"
        ));
        let mut down = Samples::new(&format!("rehearse down, 1 VM node ({label}, {accel})"));
        for _ in 0..runs {
            let (u, d) = up_down(&engine, NodeBackend::Vm)?;
            up.push(u);
            down.push(d);
        }
        rows.push(up);
        rows.push(down);
    }
    stats::print(&rows, 0, json);
    Ok(())
}

fn up_down(engine: &Engine, backend: NodeBackend) -> anyhow::Result<(Duration, Duration)> {
    let mut topology = Topology::with_nodes(1, DEFAULT_IMAGE)?;
    topology.set_default_backend(backend);
    let t0 = Instant::now();
    let state = engine.up(
        UpRequest {
            topology,
            ttl: Duration::from_secs(900),
            boot_timeout: Duration::from_secs(60),
            source: "rehearse-bench vm".into(),
            ownership: rehearse_sandbox::Ownership::User,
        },
        &|_| {},
    )?;
    let up = t0.elapsed();
    let t1 = Instant::now();
    engine.down(&state.id)?;
    Ok((up, t1.elapsed()))
}
