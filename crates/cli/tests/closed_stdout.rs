//! A reader that goes away (`rehearse ls --json | head`) ends any command
//! quietly, by SIGPIPE as for any Unix tool: no panic, nothing on stderr.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

fn with_stdout_closed(args: &[&str]) -> (std::process::ExitStatus, String) {
    // The read end is gone before the command writes anything.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = common::command()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("rehearse runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_every_kind_of_output_quietly() {
    common::require_root();
    for args in [
        &["--json", "ls"][..],
        &["ls"][..],
        &["--json", "doctor"][..],
        &["image", "ls"][..],
        &["recipe", "search", "nginx"][..],
    ] {
        let (status, stderr) = with_stdout_closed(args);
        assert_eq!(
            status.signal(),
            Some(13),
            "{args:?}: {status:?}, stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}
