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
    rehearse_testkit::require_root("cluster tests");
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

use rehearse_testkit::json_outcome;

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

#[allow(unused_imports)]
pub use rehearse_testkit::{Home, Leftovers};

/// A state directory of a test's own, driven by this build's `rehearse`.
pub fn home() -> Home {
    Home::with_bin(bin())
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
