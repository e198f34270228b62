//! Running mmdebstrap for an image spec, with progress lines for the caller.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use rehearse_spec::ImageSpec;

use crate::{ImageError, BASE_PACKAGES};

/// Builds the root filesystem of `spec` into `target` (which must not exist).
pub(crate) fn mmdebstrap(
    spec: &ImageSpec,
    target: &Path,
    progress: &dyn Fn(&str),
) -> Result<(), ImageError> {
    let mut packages: Vec<&str> = BASE_PACKAGES.to_vec();
    packages.extend(spec.packages.iter().map(String::as_str));
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg("--variant=minbase")
        .arg("--mode=root")
        .arg("--format=directory")
        .arg(format!("--include={}", packages.join(",")))
        .arg("--aptopt=Acquire::Retries \"3\"")
        .arg("--dpkgopt=path-exclude=/usr/share/man/*")
        .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
        .arg("--dpkgopt=path-include=/usr/share/doc/*/copyright")
        .arg("--dpkgopt=path-exclude=/usr/share/locale/*");
    for command in &spec.post_install {
        cmd.arg(format!(
            "--customize-hook=chroot \"$1\" /bin/sh -ec {}",
            shell_quote(command)
        ));
    }
    cmd.arg(&spec.suite).arg(target);
    for line in sources(spec) {
        cmd.arg(line);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImageError::NoMmdebstrap,
        _ => ImageError::io("running mmdebstrap for", target, e),
    })?;
    let stdout = child.stdout.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let mut tail: Vec<String> = Vec::new();
    let stderr = child.stderr.take().expect("piped");
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(msg) = line.strip_prefix("I: ") {
            progress(msg);
        }
        tail.push(line);
        if tail.len() > 40 {
            tail.remove(0);
        }
    }
    let status = child
        .wait()
        .map_err(|e| ImageError::io("waiting for mmdebstrap on", target, e))?;
    let out = out_thread.join().unwrap_or_default();
    if !status.success() {
        let mut lines = out.into_iter().rev().take(10).collect::<Vec<_>>();
        lines.reverse();
        lines.extend(tail);
        return Err(ImageError::BuildFailed {
            name: spec.name.clone(),
            what: format!("mmdebstrap exited with {status}"),
            tail: lines.join("\n"),
        });
    }
    Ok(())
}

fn sources(spec: &ImageSpec) -> Vec<String> {
    let mirror = spec.mirror_url().trim_end_matches('/');
    let suite = &spec.suite;
    let mut lines = vec![format!("deb {mirror} {suite} main")];
    if spec.mirror.is_none() && !matches!(suite.as_str(), "sid" | "unstable") {
        lines.push(format!("deb {mirror} {suite}-updates main"));
        lines.push(format!("deb {}-security {suite}-security main", mirror));
    }
    lines
}

pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
