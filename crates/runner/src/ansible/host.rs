//! `ansible-playbook` run on the host, reaching nodes over SSH with the
//! cluster's key and known hosts.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::inventory::{self, Access};
use super::{
    ansible_env, capture_hangs, playbook_args, stop_remote_modules, write_run_files, EnvPaths,
    Request, Run,
};
use crate::capture::file_tail;
use crate::{StepContext, OUTPUT_CAP};

pub(super) fn run(ctx: &StepContext<'_>, req: &Request<'_>) -> Run {
    let mut run = Run::default();
    if let Err(e) = run_into(ctx, req, &mut run) {
        run.error = Some(e);
    }
    run
}

fn run_into(ctx: &StepContext<'_>, req: &Request<'_>, run: &mut Run) -> Result<(), String> {
    let dir = ctx.log_dir;
    let ssh = ctx.run.engine.cluster_dir(&ctx.run.cluster.id).join("ssh");
    let inventory = inventory::render(
        ctx.run.cluster,
        &Access {
            private_key: &text(&ssh.join("id_ed25519")),
            known_hosts: &text(&ssh.join("known_hosts")),
            controller: None,
        },
    );
    let files = write_run_files(dir, &inventory, req.extra_vars)?;
    let events = dir.join("events.jsonl");
    let local_temp = dir.join("tmp");
    let control_dir = control_path_dir(ctx.run.work_dir);
    for d in [&local_temp, &control_dir] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    // Ansible reports task positions with absolute paths; these are shown
    // relative to the scenario folder.
    let scenario =
        std::fs::canonicalize(ctx.run.scenario_dir).unwrap_or(ctx.run.scenario_dir.to_path_buf());
    run.scenario_root = text(&scenario);
    let args = playbook_args(
        ctx,
        &text(&files.inventory),
        files.extra_vars.as_deref().map(text).as_deref(),
        &text(&scenario.join(req.playbook)),
    );
    let env = ansible_env(
        ctx,
        &EnvPaths {
            callback_dir: &text(&files.callback_dir),
            events: &text(&events),
            local_temp: &text(&local_temp),
            control_path_dir: &text(&control_dir),
            home: None,
        },
    );
    let log = dir.join("ansible.log");
    let err_log = dir.join("ansible.stderr");
    let create =
        |p: &Path| File::create(p).map_err(|e| format!("cannot write {}: {e}", p.display()));
    let mut child = Command::new("ansible-playbook")
        .args(&args)
        .envs(env)
        .current_dir(&scenario)
        .stdin(Stdio::null())
        .stdout(create(&log)?)
        .stderr(create(&err_log)?)
        // Its own process group, so a timeout kills every worker and ssh with it.
        .process_group(0)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "ansible-playbook is not installed on this host; install ansible-core (`apt-get install ansible-core`) or run the step from a node with `controller:`".to_string()
            } else {
                format!("cannot start ansible-playbook: {e}")
            }
        })?;
    run.log = Some(log.clone());
    let deadline = Instant::now() + ctx.step.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for ansible-playbook: {e}")),
        }
        if Instant::now() >= deadline {
            let so_far = std::fs::read_to_string(&events).unwrap_or_default();
            run.hang_state = capture_hangs(ctx, &so_far, None);
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            stop_remote_modules(ctx, &run.hang_state);
            run.timed_out = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    run.exit_code = status.and_then(|s| s.code());
    run.stdout = file_tail(&log, OUTPUT_CAP);
    run.stderr = file_tail(&err_log, OUTPUT_CAP);
    run.events = std::fs::read_to_string(&events).unwrap_or_default();
    Ok(())
}

/// The folder of ssh's control sockets: shared by the run's steps so later steps
/// reuse connections. A socket path must fit in 108 bytes: `<dir>/<10-char
/// hash>` plus ssh's 17-character temporary suffix; a long work folder gets a
/// short folder of its own under the system's temporary folder instead.
fn control_path_dir(work_dir: &Path) -> PathBuf {
    let dir = work_dir.join("cp");
    if dir.as_os_str().len() + 1 + 10 + 17 < 100 {
        return dir;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    work_dir.hash(&mut hasher);
    std::env::temp_dir().join(format!("rehearse-cp-{:016x}", hasher.finish()))
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sockets_stay_within_unix_socket_limits() {
        let short = control_path_dir(Path::new("/var/lib/rehearse/runs/1"));
        assert_eq!(short, Path::new("/var/lib/rehearse/runs/1/cp"));
        let long_dir = format!("/var/lib/rehearse/{}", "x".repeat(120));
        let long = control_path_dir(Path::new(&long_dir));
        assert!(long.as_os_str().len() + 28 < 108, "{}", long.display());
        assert_eq!(long, control_path_dir(Path::new(&long_dir)));
    }
}
