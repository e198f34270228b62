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
        // Nodes read no translated descriptions (see customize.rs): the
        // image carries none either.
        .arg("--aptopt=Acquire::Languages \"none\"");
    if spec.package_lists {
        // The package lists stay in the image: a node's `apt-get update` then
        // revalidates them (release files) instead of fetching and unpacking
        // every index.
        cmd.arg("--skip=cleanup/apt/lists");
    }
    if !spec.full_files {
        // mmdebstrap writes these to the image's dpkg.cfg.d: installs in its
        // nodes skip the same files.
        for (rule, pattern) in DPKG_PATH_RULES {
            cmd.arg(format!("--dpkgopt={rule}={pattern}"));
        }
    }
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

/// What a default image leaves out of every package (dpkg's `path-exclude`
/// and `path-include`, in order): documentation except licences, man pages,
/// translations.
pub(crate) const DPKG_PATH_RULES: &[(&str, &str)] = &[
    ("path-exclude", "/usr/share/man/*"),
    ("path-exclude", "/usr/share/doc/*"),
    ("path-include", "/usr/share/doc/*/copyright"),
    ("path-exclude", "/usr/share/locale/*"),
];

/// The keyring of a distribution's own archive, inside its image.
const ARCHIVE_KEYRINGS: &[(&str, &str)] = &[
    ("debian", "usr/share/keyrings/debian-archive-keyring.gpg"),
    ("ubuntu", "usr/share/keyrings/ubuntu-archive-keyring.gpg"),
];

/// Names the distribution's archive keyring on the image's own sources
/// (`signed-by`): apt then checks each release file against that one binary
/// keyring, instead of converting and loading every key of
/// `/etc/apt/trusted.gpg.d` for each (Debian 12 ships them armoured): about
/// a third of a revalidating `apt-get update`. Only for the distribution's
/// own archive: a spec's `mirror` may be signed by another key; and not
/// with `package_lists: false` (the stock setup of `apt-get update`).
pub(crate) fn sign_sources(spec: &ImageSpec, root: &Path) -> Result<(), ImageError> {
    if spec.mirror.is_some() || !spec.package_lists {
        return Ok(());
    }
    let Some((_, keyring)) = ARCHIVE_KEYRINGS.iter().find(|(d, _)| *d == spec.distro) else {
        return Ok(());
    };
    if !root.join(keyring).is_file() {
        return Ok(());
    }
    let path = root.join("etc/apt/sources.list");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let ours = sources(spec);
    let signed: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix("deb ") {
            Some(rest) if ours.iter().any(|l| l == line) => {
                format!("deb [signed-by=/{keyring}] {rest}")
            }
            _ => line.to_string(),
        })
        .collect();
    std::fs::write(&path, signed.join("\n") + "\n").map_err(|e| ImageError::io("writing", &path, e))
}

/// Builds apt's binary caches (`/var/cache/apt/pkgcache.bin`,
/// `srcpkgcache.bin`) from the package lists kept in the image, once the
/// sources are final (apt ties the caches to them). Without them every node's
/// first apt command parses the 50 MB of lists again (half a second on
/// Debian 12): `apt-get install` without an update, and each revalidating
/// `apt-get update`, which keeps the caches when the lists did not change.
/// Only with `package_lists`; a failure leaves the node to build them as
/// stock apt does, and is said on the progress lines.
pub(crate) fn apt_caches(spec: &ImageSpec, root: &Path, progress: &dyn Fn(&str)) {
    if !spec.package_lists || !root.join("usr/bin/apt-cache").exists() {
        return;
    }
    let out = Command::new("chroot")
        .arg(root)
        .args(["/usr/bin/apt-cache", "gencaches"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => progress(&format!(
            "apt's caches were not built into the image (nodes build them on first use): apt-cache gencaches exited with {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => progress(&format!(
            "apt's caches were not built into the image (nodes build them on first use): chroot: {e}"
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ImageSpec {
        ImageSpec::from_yaml(yaml, "test").unwrap()
    }

    fn root_with(spec: &ImageSpec, keyring: &str, extra: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/apt")).unwrap();
        std::fs::create_dir_all(dir.path().join("usr/share/keyrings")).unwrap();
        std::fs::write(dir.path().join(keyring), "").unwrap();
        let text = sources(spec).join("\n\n") + "\n" + extra;
        std::fs::write(dir.path().join("etc/apt/sources.list"), text).unwrap();
        dir
    }

    #[test]
    fn the_archive_sources_name_the_distribution_keyring() {
        let debian = spec("name: d\nsuite: bookworm\n");
        let root = root_with(
            &debian,
            "usr/share/keyrings/debian-archive-keyring.gpg",
            "deb http://example.org/x stable main\n",
        );
        sign_sources(&debian, root.path()).unwrap();
        let text = std::fs::read_to_string(root.path().join("etc/apt/sources.list")).unwrap();
        let signed = "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ";
        assert_eq!(text.matches(signed).count(), 3, "{text}");
        assert!(
            text.contains(&format!(
                "{signed}http://deb.debian.org/debian-security bookworm-security main"
            )),
            "{text}"
        );
        // A line rehearse did not write is left alone.
        assert!(
            text.contains("\ndeb http://example.org/x stable main\n"),
            "{text}"
        );
    }

    #[test]
    fn a_mirror_of_its_own_keeps_the_trusted_keys() {
        let mirror = spec("name: d\nsuite: bookworm\nmirror: http://mirror.example/debian\n");
        let root = root_with(&mirror, "usr/share/keyrings/debian-archive-keyring.gpg", "");
        sign_sources(&mirror, root.path()).unwrap();
        let text = std::fs::read_to_string(root.path().join("etc/apt/sources.list")).unwrap();
        assert!(!text.contains("signed-by"), "{text}");

        // No keyring in the image: nothing to name.
        let ubuntu = spec("name: u\ndistro: ubuntu\nsuite: noble\n");
        let root = root_with(&ubuntu, "usr/share/keyrings/other.gpg", "");
        sign_sources(&ubuntu, root.path()).unwrap();
        let text = std::fs::read_to_string(root.path().join("etc/apt/sources.list")).unwrap();
        assert!(!text.contains("signed-by"), "{text}");
    }
}
