//! Runs the Python tests (`tests/python`): the official MCP Python SDK drives
//! `rehearse mcp` and `rehearse serve` on real clusters. Needs root and
//! `python3 -m pip install mcp pytest` (scripts/setup.sh does both).

use std::path::PathBuf;
use std::process::Command;

/// The `rehearse` binary next to this test's own target folder, built (or
/// rebuilt, when the server's crates changed since) before the tests use it.
fn rehearse_bin() -> PathBuf {
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
    let status = build.status().expect("running cargo build");
    assert!(status.success(), "building rehearse failed");
    profile_dir.join("rehearse")
}

#[test]
fn official_python_client_drives_the_server() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"])
        .arg(root.join("tests/python"))
        .env("REHEARSE_BIN", rehearse_bin())
        // The servers record into a history of this test's own, under
        // target/, never the user's.
        .env(
            "REHEARSE_HISTORY",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("history/mcp-python"),
        )
        .env("REHEARSE_DATABASE_URL", "")
        .status()
        .expect("running python3 -m pytest (install it with scripts/setup.sh)");
    assert!(
        out.success(),
        "the Python MCP client tests failed (output above)"
    );
}
