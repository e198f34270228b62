//! VM nodes, for real: a QEMU microVM with its own Debian kernel joins a
//! cluster beside a container node, both reach each other over the cluster
//! network, commands and files go in and out, kernel-level changes work on the
//! VM and are refused with a clear message on the container, and nothing is
//! left once the cluster is gone (by `down`, or by `gc` after its state was
//! lost as when an engine crashes).
//!
//! One VM boots the minimal init, the other the image's systemd; both take
//! seconds even under QEMU's TCG on hosts without usable KVM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rehearse_sandbox::vm::{GuestInit, VmBackend};
use rehearse_sandbox::{ClusterState, Engine, ExecRequest, UpRequest};
use rehearse_spec::Topology;

fn engine(init: GuestInit) -> Engine {
    rehearse_testkit::require_root("VM tests");
    let state = rehearse_image::state_dir();
    Engine::new(&state)
        .expect("engine")
        .with_node_backend(Arc::new(VmBackend::new(&state).with_init(init)))
}

/// A container `box` and a VM `vm1` on one isolated network.
const MIXED: &str = "\
nodes:
  - name: box
  - name: vm1
    backend: vm
networks:
  - name: lan
    egress: none
ttl: 20m
";

struct Up<'a> {
    engine: &'a Engine,
    state: ClusterState,
}

impl<'a> Up<'a> {
    fn new(engine: &'a Engine, yaml: &str) -> Up<'a> {
        let topology = Topology::from_yaml(yaml, "mixed.yaml").expect("topology");
        let state = engine
            .up(
                UpRequest {
                    topology,
                    ttl: Duration::from_secs(20 * 60),
                    boot_timeout: Duration::from_secs(120),
                    source: "vm test".into(),
                    ownership: rehearse_sandbox::Ownership::User,
                },
                &|_| {},
            )
            .expect("a cluster with a VM node comes up");
        Up { engine, state }
    }

    fn sh(&self, node: &str, script: &str) -> (i32, String, String) {
        let req = ExecRequest {
            timeout: Some(Duration::from_secs(60)),
            ..ExecRequest::shell(script)
        };
        let (outcome, out, err) = self
            .engine
            .exec_capture(&self.state.id, node, &req)
            .unwrap_or_else(|e| panic!("exec on {node}: {e}"));
        (outcome.exit_code, out, err)
    }

    fn ok(&self, node: &str, script: &str) -> String {
        let (code, out, err) = self.sh(node, script);
        assert_eq!(
            code, 0,
            "`{script}` on {node}: exit {code}, stdout={out} stderr={err}"
        );
        out.trim().to_string()
    }
}

impl Drop for Up<'_> {
    fn drop(&mut self) {
        let _ = self.engine.down(&self.state.id);
    }
}

/// Everything on the host that belongs to a cluster.
fn leftovers(engine: &Engine, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    let dir: PathBuf = engine.cluster_dir(id);
    if dir.exists() {
        left.push(format!("folder {}", dir.display()));
    }
    for link in rehearse_sandbox::net::list_links() {
        if rehearse_sandbox::net::iface_belongs_to(&link, id) {
            left.push(format!("interface {link}"));
        }
    }
    if engine.process_count(id) > 0 {
        left.push(format!("{} processes", engine.process_count(id)));
    }
    // QEMU by its command line, whatever cgroup it might be in.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rfind(')')
            .is_some_and(|i| stat[i + 2..].starts_with('Z'));
        if cmdline.contains("qemu-system")
            && cmdline.contains(&format!("/clusters/{id}/"))
            && !zombie
        {
            left.push(format!("qemu {}", entry.file_name().to_string_lossy()));
        }
    }
    left
}

#[test]
fn a_vm_node_joins_a_container_cluster_runs_commands_and_leaves_nothing() {
    let engine = engine(GuestInit::Minimal);
    let up = Up::new(&engine, MIXED);
    let id = up.state.id.clone();
    let vm = up.state.node("vm1").unwrap();
    assert_eq!(vm.backend, "vm");
    assert_eq!(up.state.node("box").unwrap().backend, "nspawn");

    // Its own kernel, not the host's.
    let host_release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let guest_release = up.ok("vm1", "uname -r");
    assert_ne!(
        guest_release,
        host_release.trim(),
        "vm1 runs the host's kernel"
    );
    assert!(
        guest_release.contains("amd64"),
        "not a Debian kernel: {guest_release}"
    );
    assert_eq!(up.ok("vm1", "hostname"), "vm1");

    // Both ways over the cluster network: ICMP and TCP, by name.
    let vm_ip = vm.ip().unwrap().to_string();
    up.ok(
        "box",
        &format!("ping -c 1 -W 10 vm1 && getent hosts vm1 | grep -q {vm_ip}"),
    );
    up.ok("box", "nc -z -w 10 vm1 22");
    up.ok("vm1", "ping -c 1 -W 10 box && nc -z -w 10 box 22");

    // The command's streams, exit status, environment and folder come through.
    let req = ExecRequest {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "echo \"out $GREETING $(pwd)\"; echo 'err it'\"'\"'s' >&2; exit 7".into(),
        ],
        env: vec![("GREETING".into(), "hello world".into())],
        workdir: Some("/tmp".into()),
        timeout: Some(Duration::from_secs(60)),
    };
    let (outcome, out, err) = engine.exec_capture(&id, "vm1", &req).unwrap();
    assert_eq!(outcome.exit_code, 7);
    assert_eq!(out, "out hello world /tmp\n");
    assert_eq!(err, "err it's\n");

    // A command over its timeout is killed and reported as such.
    let slow = ExecRequest {
        timeout: Some(Duration::from_secs(2)),
        ..ExecRequest::shell("sleep 30")
    };
    assert!(matches!(
        engine.exec_capture(&id, "vm1", &slow),
        Err(rehearse_sandbox::SandboxError::Timeout { .. })
    ));

    // Files both ways.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("app.conf");
    std::fs::write(&src, "listen 8080\n").unwrap();
    engine
        .copy_to_node(&id, "vm1", &src, "/etc/app.conf")
        .unwrap();
    assert_eq!(up.ok("vm1", "cat /etc/app.conf"), "listen 8080");
    let back = tmp.path().join("back.conf");
    engine
        .copy_from_node(&id, "vm1", "/etc/app.conf", &back)
        .unwrap();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "listen 8080\n");

    drop(up);
    assert_eq!(leftovers(&engine, &id), Vec::<String>::new());
}

#[test]
fn kernel_changes_work_on_a_vm_and_are_refused_clearly_on_a_container() {
    // This VM boots the image's systemd, as a scenario's VM node would.
    let engine = engine(GuestInit::Systemd);
    let up = Up::new(&engine, MIXED);
    let id = up.state.id.clone();
    assert_eq!(up.ok("vm1", "cat /proc/1/comm"), "systemd");
    let (_, running, _) = up.sh("vm1", "systemctl is-system-running --wait");
    assert_eq!(running.trim(), "running");

    // A sysctl no namespace owns.
    let swappiness = up.ok(
        "vm1",
        "sysctl -w vm.swappiness=13 >/dev/null && cat /proc/sys/vm/swappiness",
    );
    assert_eq!(swappiness, "13");
    // A module loads by name into the VM's own kernel.
    let loaded = up.ok(
        "vm1",
        "modprobe dummy && grep -q '^dummy ' /proc/modules && echo loaded",
    );
    assert_eq!(loaded, "loaded");

    for change in ["sysctl -w vm.swappiness=13", "modprobe dummy"] {
        let (code, _, err) = up.sh("box", change);
        assert_ne!(code, 0, "a container made a kernel-level change: {change}");
        assert!(
            err.contains("node box is a container") && err.contains("`backend: vm`"),
            "the refusal of {change} does not name the node and the fix: {err}"
        );
    }
    // The host's own value is untouched.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/vm/swappiness")
            .unwrap()
            .trim(),
        "13"
    );

    // An engine that crashed loses nothing to gc: with the cluster's state
    // gone, its VM is still found by its cgroup and interfaces, and removed.
    std::fs::remove_file(engine.cluster_dir(&id).join("cluster.json")).unwrap();
    let report = engine.gc().unwrap();
    assert!(
        report.orphaned.contains(&id),
        "gc did not find {id}: {report:?}"
    );
    assert_eq!(leftovers(&engine, &id), Vec::<String>::new());
    drop(up);
}
