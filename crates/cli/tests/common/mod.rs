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
    json_outcome(args, &out)
}

/// The exit code and the JSON document a `rehearse ARGS` run printed.
fn json_outcome(args: &[&str], out: &std::process::Output) -> (i32, serde_json::Value) {
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
        Leftovers::of_in(&state_dir(), id)
    }

    /// What is left of cluster `id` of the state directory `home`.
    pub fn of_in(home: &Path, id: &str) -> Leftovers {
        let dir = home.join("clusters").join(id);
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

/// A state directory of a test's own: its clusters, run store and `gc` touch
/// nothing of other tests' or users' clusters. It shares the host's images, so
/// nothing is built twice. Removed when dropped.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        require_root();
        let shared = state_dir();
        let images = shared.join("images");
        std::fs::create_dir_all(&images).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("test-home-")
            .tempdir_in(&shared)
            .unwrap();
        std::os::unix::fs::symlink(&images, dir.path().join("images")).unwrap();
        Home { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rehearse ARGS` over this state directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env("REHEARSE_HOME", self.path())
            .env_remove("REHEARSE_DATABASE_URL")
            .env_remove("REHEARSE_HISTORY")
            .args(args);
        cmd
    }

    pub fn run_json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.command(&all).output().expect("rehearse runs");
        json_outcome(args, &out)
    }

    /// Processes started over this state directory (runs, reapers, helpers):
    /// they carry it in their environment.
    pub fn processes(&self) -> Vec<String> {
        let needle = format!("REHEARSE_HOME={}\0", self.path().display()).into_bytes();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.parse::<u32>().is_err() {
                continue;
            }
            let Ok(env) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if env.windows(needle.len()).any(|w| w == needle.as_slice()) {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push(format!(
                    "{name}: {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                ));
            }
        }
        found
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        // Whatever a failed test left: removed by id, never by a host-wide gc.
        if let Ok(entries) = std::fs::read_dir(self.path().join("clusters")) {
            for entry in entries.flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if !id.starts_with('.') {
                    let _ = self.command(&["down", &id]).output();
                }
            }
        }
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
