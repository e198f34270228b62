//! Driving the real `rehearse` binary against real clusters, as a user would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rehearse")
}

pub fn state_dir() -> PathBuf {
    rehearse_image::state_dir()
}

/// The history (run store, run folders, proofs) of this test binary: under
/// target/, never the user's. Clusters and images stay in the shared state
/// directory, so tests reuse the image cache.
pub fn history_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("history")
        .join(env!("CARGO_CRATE_NAME"))
}

/// `rehearse` recording into this binary's history, whatever the
/// environment names as the run store.
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env("REHEARSE_HISTORY", history_dir())
        .env("REHEARSE_DATABASE_URL", "");
    cmd
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "cluster tests boot real nodes and must run as root (they run in CI as root)"
    );
}

pub fn run(args: &[&str]) -> Output {
    command().args(args).output().expect("rehearse runs")
}

pub fn run_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    let text = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "rehearse {args:?} printed no JSON ({e}): stdout={text} stderr={}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

/// A cluster that is destroyed when the test ends, pass or fail.
pub struct Cluster {
    pub id: String,
    pub up: Value,
}

impl Cluster {
    pub fn up(args: &[&str]) -> Cluster {
        require_root();
        let mut all = vec!["up", "--no-reaper"];
        all.extend_from_slice(args);
        let (code, up) = run_json(&all);
        assert_eq!(code, 0, "rehearse up {args:?} failed: {up}");
        Cluster {
            id: up["cluster"].as_str().expect("cluster id").to_string(),
            up,
        }
    }

    pub fn ip(&self, node: &str) -> String {
        self.up["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node)
            .and_then(|n| n["ip"].as_str())
            .unwrap_or_else(|| panic!("no node {node} in {}", self.up))
            .to_string()
    }

    /// Runs a shell command on a node: (exit code, stdout, stderr).
    pub fn sh(&self, node: &str, script: &str) -> (i32, String, String) {
        let (_, v) = run_json(&["exec", &self.id, node, "--", "sh", "-c", script]);
        let code = v["exit_code"]
            .as_i64()
            .unwrap_or_else(|| panic!("exec failed: {v}")) as i32;
        (
            code,
            v["stdout"].as_str().unwrap_or_default().to_string(),
            v["stderr"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// Like `sh`, asserting success, returning trimmed stdout.
    pub fn ok(&self, node: &str, script: &str) -> String {
        let (code, out, err) = self.sh(node, script);
        assert_eq!(
            code, 0,
            "`{script}` on {node} exited {code}: stdout={out} stderr={err}"
        );
        out.trim().to_string()
    }

    pub fn dir(&self) -> PathBuf {
        state_dir().join("clusters").join(&self.id)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = run(&["down", &self.id]);
    }
}

/// Everything on the host that belongs to a cluster id: a test asserts it is
/// empty after teardown.
#[derive(Debug, Default, PartialEq)]
pub struct Leftovers {
    pub mounts: Vec<String>,
    pub links: Vec<String>,
    pub processes: usize,
    pub nft_table: bool,
    pub cgroup: bool,
    pub state_dir: bool,
}

impl Leftovers {
    pub fn of(id: &str) -> Leftovers {
        let dir = state_dir().join("clusters").join(id);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(&dir))
            .map(str::to_string)
            .collect();
        let links = std::fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|l| {
                l.starts_with(&format!("rh{id}"))
                    || l.starts_with(&format!("vb-rh{id}"))
                    || l.starts_with(&format!("rv{id}"))
            })
            .collect();
        let cg = Path::new("/sys/fs/cgroup/unified/rehearse").join(id);
        let cg = if cg.exists() {
            cg
        } else {
            Path::new("/sys/fs/cgroup/rehearse").join(id)
        };
        let processes = count_procs(&cg);
        let tables = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        Leftovers {
            mounts,
            links,
            processes,
            nft_table: String::from_utf8_lossy(&tables.stdout).contains(&format!("rehearse_{id}")),
            cgroup: cg.exists(),
            state_dir: dir.exists(),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Leftovers::default()
    }
}

fn count_procs(dir: &Path) -> usize {
    let mut n = std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                n += count_procs(&e.path());
            }
        }
    }
    n
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
