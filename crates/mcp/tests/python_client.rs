//! Runs the Python tests (`tests/python`): the official MCP Python SDK drives
//! `rehearse mcp` and `rehearse serve` on real clusters. Needs root and
//! `python3 -m pip install mcp pytest` (scripts/setup.sh does both).

use std::path::PathBuf;
use std::process::Command;

/// The `rehearse` binary next to this test's own target folder, built (or
/// rebuilt, when the server's crates changed since) before the tests use it.

#[test]
fn official_python_client_drives_the_server() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"])
        .arg(root.join("tests/python"))
        .env("REHEARSE_BIN", rehearse_testkit::rehearse_bin())
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
