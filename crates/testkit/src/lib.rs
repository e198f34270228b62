//! What rehearse's integration tests share: the check that they run as root,
//! the `rehearse` binary, a state directory of a test's own, and an account
//! of everything a cluster left on the host.
//!
//! Tests use real nodes, networks and mounts, never mocks: they need root, and
//! one that runs without it fails at once saying so instead of failing later
//! with a confusing error.

pub mod mcp;
pub mod pg;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Fails the test at once, naming why, when it does not run as root.
pub fn require_root(what: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what} boot real nodes and must run as root (CI runs them as root): \
         run them with `sudo -E cargo test` or from a root shell"
    );
}

/// The shared state directory (`REHEARSE_HOME` or /var/lib/rehearse).
pub fn state_dir() -> PathBuf {
    rehearse_image::state_dir()
}

/// The `rehearse` binary of this build: `REHEARSE_BIN` when set, otherwise
/// built once per test process in the profile the tests were built in.
pub fn rehearse_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("REHEARSE_BIN").filter(|b| !b.is_empty()) {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-q", "-p", "rehearse-cli", "--bin", "rehearse"]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        assert!(
            build.status().expect("running cargo build").success(),
            "building rehearse failed"
        );
        profile_dir.join("rehearse")
    })
    .clone()
}

/// A state directory of a test's own: its clusters, run store and `gc` touch
/// nothing of other tests' or users' clusters. It shares the host's images, so
/// nothing is built twice. Removed when dropped.
pub struct Home {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Home {
    /// A new state directory, driven by [`rehearse_bin`].
    pub fn new() -> Home {
        Home::with_bin(rehearse_bin())
    }

    /// A new state directory, driven by the binary `bin`.
    pub fn with_bin(bin: impl Into<PathBuf>) -> Home {
        require_root("tests with a state directory of their own");
        let shared = state_dir();
        let images = shared.join("images");
        std::fs::create_dir_all(&images).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("test-home-")
            .tempdir_in(&shared)
            .unwrap();
        std::os::unix::fs::symlink(&images, dir.path().join("images")).unwrap();
        Home {
            dir,
            bin: bin.into(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rehearse ARGS` over this state directory, recording into it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("REHEARSE_HOME", self.path())
            .env_remove("REHEARSE_DATABASE_URL")
            .env_remove("REHEARSE_HISTORY")
            .args(args);
        cmd
    }

    /// `rehearse --json ARGS` over this state directory: the exit code and
    /// the JSON document it printed.
    pub fn run_json(&self, args: &[&str]) -> (i32, serde_json::Value) {
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
            if let Ok(env) = std::fs::read(entry.path().join("environ")) {
                if env.windows(needle.len()).any(|w| w == needle.as_slice()) {
                    let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                    found.push(format!(
                        "{name}: {}",
                        String::from_utf8_lossy(&cmdline).replace('\0', " ")
                    ));
                }
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

/// The exit code and the JSON document a `rehearse ARGS` run printed; fails
/// the test with both streams when stdout is not JSON.
pub fn json_outcome(args: &[&str], out: &std::process::Output) -> (i32, serde_json::Value) {
    let text = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "rehearse {args:?} printed no JSON ({e}): stdout={text} stderr={}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

impl Default for Home {
    fn default() -> Self {
        Home::new()
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
    /// What is left of cluster `id` of the shared state directory.
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
