//! Running mmdebstrap for an image spec, with progress lines for the caller.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use rehearse_spec::ImageSpec;

use crate::{keyring, ImageError, BASE_PACKAGES};

/// Builds the root filesystem of `spec` into `target` (which must not exist).
/// `state_dir` holds keyrings fetched for distributions the host has none of.
pub(crate) fn mmdebstrap(
    spec: &ImageSpec,
    target: &Path,
    state_dir: &Path,
    progress: &dyn Fn(&str),
) -> Result<(), ImageError> {
    let mut packages: Vec<&str> = BASE_PACKAGES.to_vec();
    packages.extend(spec.packages.iter().map(String::as_str));
    let mut cmd = Command::new("mmdebstrap");
    if let Some(keyring) = keyring::for_distro(&spec.distro, state_dir, progress)? {
        cmd.arg(format!("--keyring={}", keyring.display()));
    }
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
        if let Some(why) = lines.iter().find_map(|l| unreachable_archive(l)) {
            return Err(ImageError::ArchiveUnreachable {
                name: spec.name.clone(),
                archive: spec.mirror_url().to_string(),
                why: why.to_string(),
            });
        }
        return Err(ImageError::BuildFailed {
            name: spec.name.clone(),
            what: format!("mmdebstrap exited with {status}"),
            tail: lines.join("\n"),
        });
    }
    Ok(())
}

/// The line of apt's output that says the archive could not be reached, if any:
/// then the cause is the network or the mirror, not the spec.
fn unreachable_archive(line: &str) -> Option<&str> {
    const SIGNS: &[&str] = &[
        "Could not resolve",
        "Temporary failure resolving",
        "Could not connect to",
        "Connection refused",
        "Connection timed out",
        "Network is unreachable",
        "No route to host",
        "Unable to connect to",
    ];
    SIGNS
        .iter()
        .any(|sign| line.contains(sign))
        .then_some(line.trim())
}

/// The sources list of an image: the release, and for the distribution's own
/// archive its updates and security pockets too.
pub(crate) fn sources(spec: &ImageSpec) -> Vec<String> {
    let mirror = spec.mirror_url().trim_end_matches('/');
    let suite = &spec.suite;
    let components = spec.components().join(" ");
    let mut lines = vec![format!("deb {mirror} {suite} {components}")];
    if spec.mirror.is_none() && !matches!(suite.as_str(), "sid" | "unstable") {
        lines.push(format!("deb {mirror} {suite}-updates {components}"));
        match spec.distro.as_str() {
            // Ubuntu serves its security pocket from the main archive too.
            "ubuntu" => lines.push(format!("deb {mirror} {suite}-security {components}")),
            _ => lines.push(format!(
                "deb {mirror}-security {suite}-security {components}"
            )),
        }
    }
    lines
}

pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
