//! `ansible-playbook` run on a node of the cluster (`controller:`): ansible-core
//! is installed there, the scenario folder and the run's files are copied to
//! `/run/rehearse`, and the events file is read back. The node already holds
//! the cluster's key and known hosts.

use std::path::Path;

use super::inventory::{self, Access};
use super::{
    ansible_env, capture_hangs, playbook_args, stop_remote_modules, write_run_files, EnvPaths,
    Request, Run, NODE_ANSIBLE_DIR,
};
use crate::capture::Capture;
use crate::job::{self, Job, HELPER_TIMEOUT};
use crate::nodes;
use crate::report::HangState;
use crate::workdir::NODE_RUN_DIR;
use crate::{StepContext, OUTPUT_CAP};

/// Installs ansible-core unless it is there. Without recommends: those pull in
/// the whole `ansible` collection bundle.
const INSTALL: &str = r#"command -v ansible-playbook >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
opts='-y -q -o Dpkg::Use-Pty=0 --no-install-recommends'
apt-get install $opts ansible-core || { apt-get update -q && apt-get install $opts ansible-core; }"#;

pub(super) fn run(ctx: &StepContext<'_>, req: &Request<'_>, controller: &str) -> Run {
    let mut run = Run::default();
    if let Err(e) = run_into(ctx, req, controller, &mut run) {
        run.error = Some(e);
    }
    run
}

fn run_into(
    ctx: &StepContext<'_>,
    req: &Request<'_>,
    controller: &str,
    run: &mut Run,
) -> Result<(), String> {
    let node = ctx
        .run
        .cluster
        .node(controller)
        .map_err(|e| e.to_string())?;
    let scenario = std::fs::canonicalize(ctx.run.scenario_dir).map_err(|e| {
        format!(
            "cannot read the scenario folder {}: {e}",
            ctx.run.scenario_dir.display()
        )
    })?;
    let playbook_host = scenario.join(req.playbook);
    let playbook = std::fs::canonicalize(&playbook_host)
        .map_err(|e| format!("cannot read the playbook {}: {e}", playbook_host.display()))?;
    let playbook = playbook.strip_prefix(&scenario).map_err(|_| {
        format!(
            "the playbook {} is outside the scenario folder {}, which is all that is copied to controller {controller}",
            playbook.display(),
            scenario.display()
        )
    })?;

    // The step's timeout covers the install and the play together.
    let started = std::time::Instant::now();
    install_ansible(ctx, controller)?;

    // The run's files, staged on the host (kept with the step's logs), then
    // copied next to the scenario on the controller.
    let base = format!("{NODE_RUN_DIR}/{}-ansible", ctx.token);
    let stage = ctx.log_dir.join("controller");
    std::fs::create_dir_all(&stage)
        .map_err(|e| format!("cannot create {}: {e}", stage.display()))?;
    let inventory = inventory::render(
        ctx.run.cluster,
        &Access {
            private_key: "/root/.ssh/id_ed25519",
            known_hosts: "/etc/ssh/ssh_known_hosts",
            controller: Some(node),
        },
    );
    let files = write_run_files(&stage, &inventory, req.extra_vars)?;
    let remote = |p: &Path| format!("{base}/{}", p.strip_prefix(&stage).unwrap_or(p).display());
    let remote_scenario = format!("{base}/scenario");
    let copied = ctx
        .nodes
        .copy_to(controller, &stage, &base)
        .and_then(|()| ctx.nodes.copy_to(controller, &scenario, &remote_scenario));
    let result = copied
        .map_err(|e| format!("cannot copy the scenario to controller {controller}: {e}"))
        .and_then(|()| {
            run.scenario_root = remote_scenario.clone();
            play(
                ctx,
                controller,
                ctx.step
                    .timeout
                    .saturating_sub(started.elapsed())
                    .max(std::time::Duration::from_secs(1)),
                run,
                &base,
                &playbook_args(
                    ctx,
                    &remote(&files.inventory),
                    files.extra_vars.as_deref().map(remote).as_deref(),
                    &playbook.display().to_string(),
                ),
                &EnvPaths {
                    callback_dir: &remote(&files.callback_dir),
                    events: &format!("{base}/events.jsonl"),
                    local_temp: &format!("{NODE_ANSIBLE_DIR}/local"),
                    control_path_dir: &format!("{NODE_ANSIBLE_DIR}/cp"),
                    home: Some(&format!("{NODE_ANSIBLE_DIR}/home")),
                },
            )
        });
    if let Err(e) = nodes::sh(
        ctx.nodes,
        controller,
        r#"rm -rf -- "$1""#,
        &[&base],
        None,
        HELPER_TIMEOUT,
    ) {
        tracing::warn!(node = controller, error = %e, "removing the Ansible run's files");
    }
    result
}

fn install_ansible(ctx: &StepContext<'_>, controller: &str) -> Result<(), String> {
    let log = ctx.log_dir.join("controller-install.log");
    let c = nodes::sh(ctx.nodes, controller, INSTALL, &[], None, ctx.step.timeout)
        .map_err(|e| format!("cannot install ansible-core on controller {controller}: {e}"))?;
    let _ = std::fs::write(&log, format!("{}{}", c.stdout, c.stderr));
    if c.success() {
        return Ok(());
    }
    Err(format!(
        "cannot install ansible-core on controller {controller}: {} (its network needs egress `packages` or `nat`; apt's output: {})",
        nodes::last_line(&c),
        log.display()
    ))
}

fn play(
    ctx: &StepContext<'_>,
    controller: &str,
    timeout: std::time::Duration,
    run: &mut Run,
    base: &str,
    args: &[String],
    paths: &EnvPaths<'_>,
) -> Result<(), String> {
    let mut argv = vec!["ansible-playbook".to_string()];
    argv.extend(args.iter().cloned());
    let job = Job {
        node: controller,
        argv,
        env: ansible_env(ctx, paths),
        stdin: None,
        workdir: Some(format!("{base}/scenario")),
        timeout,
        token: format!("{}-ansible", ctx.token),
    };
    let log = ctx.log_dir.join("ansible.log");
    let mut stdout = Capture::logged(OUTPUT_CAP, &log);
    let mut stderr = Capture::logged(OUTPUT_CAP, &ctx.log_dir.join("ansible.stderr"));
    let mut hang: Vec<HangState> = Vec::new();
    let end = job::run(ctx.nodes, &job, &mut stdout, &mut stderr, &mut || {
        hang = capture_hangs(
            ctx,
            &read_events(ctx, controller, paths.events),
            Some(controller),
        );
    });
    if let Some(e) = end.error {
        return Err(format!(
            "cannot run ansible-playbook on controller {controller}: {e}"
        ));
    }
    if end.timed_out {
        stop_remote_modules(ctx, &hang);
    }
    run.exit_code = end.exit_code;
    run.timed_out = end.timed_out;
    run.hang_state = hang;
    run.stdout = stdout.into_text();
    run.stderr = stderr.into_text();
    run.log = Some(log);
    run.events = read_events(ctx, controller, paths.events);
    let _ = std::fs::write(ctx.log_dir.join("events.jsonl"), &run.events);
    Ok(())
}

fn read_events(ctx: &StepContext<'_>, controller: &str, path: &str) -> String {
    match nodes::sh(
        ctx.nodes,
        controller,
        r#"cat -- "$1" 2>/dev/null; exit 0"#,
        &[path],
        None,
        HELPER_TIMEOUT,
    ) {
        Ok(c) => c.stdout,
        Err(e) => {
            tracing::warn!(node = controller, error = %e, "reading Ansible's events");
            String::new()
        }
    }
}
