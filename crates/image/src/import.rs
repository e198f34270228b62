//! Images imported from OCI sources: an OCI layout folder, an OCI archive, a
//! docker archive (`docker save`, `podman save`), or a registry reference.
//!
//! skopeo normalises any source into an OCI layout (checking every blob's
//! digest on the way), `umoci unpack` applies its layers (whiteouts, owners,
//! modes and xattrs kept), and the root filesystem then goes through what a
//! built image goes through after mmdebstrap: the requirement check, the node
//! preparation and the shift to the node UID range. Nothing reaches the cache
//! before all of it succeeded.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use rehearse_spec::{builtin_image, ImageSpec};

use crate::cache::{du, now, remove_tree};
use crate::customize::{in_root, prepare};
use crate::{shift, Image, ImageCache, ImageError, UID_BASE};

/// Transports skopeo understands that a user may name explicitly.
const TRANSPORTS: &[&str] = &[
    "docker://",
    "oci:",
    "oci-archive:",
    "docker-archive:",
    "dir:",
];

/// How skopeo is to read `source`: an explicit transport as given, a folder
/// with an `oci-layout` file, a tar archive holding an OCI layout or a docker
/// archive, else a registry reference.
pub(crate) fn skopeo_source(source: &str) -> Result<String, ImageError> {
    if TRANSPORTS.iter().any(|t| source.starts_with(t)) {
        return Ok(source.to_string());
    }
    let path = Path::new(source);
    let not_an_image = |why: String| ImageError::NotAnImage {
        image: source.to_string(),
        why,
    };
    if path.is_dir() {
        if path.join("oci-layout").is_file() {
            return Ok(format!("oci:{}", absolute(path).display()));
        }
        return Err(not_an_image(
            "a folder without an `oci-layout` file is not an OCI image layout".into(),
        ));
    }
    if path.is_file() {
        let listing = Command::new("tar")
            .arg("-tf")
            .arg(path)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| ImageError::io("listing", path, e))?;
        if !listing.status.success() {
            return Err(not_an_image(
                "the file is not a tar archive (an OCI archive or a `docker save` archive is one)"
                    .into(),
            ));
        }
        let entries = String::from_utf8_lossy(&listing.stdout);
        let has = |name: &str| {
            entries
                .lines()
                .any(|l| l.trim_start_matches("./").trim_end_matches('/') == name)
        };
        let abs = absolute(path);
        if has("oci-layout") {
            return Ok(format!("oci-archive:{}", abs.display()));
        }
        if has("manifest.json") {
            return Ok(format!("docker-archive:{}", abs.display()));
        }
        return Err(not_an_image(
            "the archive has neither an `oci-layout` file (OCI archive) nor a `manifest.json` (docker archive); a plain root filesystem tarball must be packed as an image first (e.g. `podman import`)".into(),
        ));
    }
    let looks_like_path = source.starts_with('/')
        || source.starts_with("./")
        || source.starts_with("../")
        || source.ends_with(".tar")
        || source.ends_with(".tar.gz");
    let reference = regex_free_reference(source);
    if looks_like_path || !reference {
        return Err(not_an_image(
            "no such file or folder, and not a registry reference such as quay.io/org/image:tag"
                .into(),
        ));
    }
    Ok(format!("docker://{source}"))
}

/// A registry reference: lowercase name components separated by `/`, an
/// optional registry host (with port), `:tag` and/or `@sha256:...`.
fn regex_free_reference(s: &str) -> bool {
    !s.is_empty()
        && !s.contains("//")
        && !s.starts_with(['-', '.', ':', '@', '/'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
}

fn absolute(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What a node needs from an image, where it may be, and the package that
/// brings it in each family.
struct Requirement {
    what: &'static str,
    why: &'static str,
    paths: &'static [&'static str],
}

const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        what: "systemd",
        why: "the node's init",
        paths: &["usr/lib/systemd/systemd", "lib/systemd/systemd"],
    },
    Requirement {
        what: "sshd",
        why: "the OpenSSH server every step and check connects through",
        paths: &["usr/sbin/sshd", "sbin/sshd", "usr/bin/sshd"],
    },
    Requirement {
        what: "iproute2",
        why: "`ip`, which sets the node's addresses at boot",
        paths: &["usr/sbin/ip", "sbin/ip", "usr/bin/ip", "bin/ip"],
    },
    Requirement {
        what: "python3",
        why: "for checks and Ansible",
        paths: &["usr/bin/python3", "bin/python3", "usr/local/bin/python3"],
    },
];

/// A distribution family, by its package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Apt,
    Dnf,
    Zypper,
    Pacman,
    Apk,
    Unknown,
}

impl Family {
    /// The package that brings `what` in, in this family.
    fn package(self, what: &str) -> Option<&'static str> {
        Some(match (self, what) {
            (Family::Apt, "systemd") => "systemd systemd-sysv",
            (Family::Apk, "systemd") => return None,
            (Family::Pacman, "sshd") => "openssh",
            (_, "sshd") => "openssh-server",
            (Family::Dnf, "iproute2") => "iproute",
            (_, "iproute2") => "iproute2",
            (Family::Pacman, "python3") => "python",
            (_, "python3") => "python3",
            (_, "systemd") => "systemd",
            _ => return None,
        })
    }

    /// The Containerfile line that installs `packages` in this family.
    fn containerfile_line(self, packages: &str) -> String {
        match self {
            Family::Apt => format!("RUN apt-get update && apt-get install -y --no-install-recommends {packages} && rm -rf /var/lib/apt/lists/*"),
            Family::Dnf => format!("RUN dnf install -y {packages} && dnf clean all"),
            Family::Zypper => format!("RUN zypper --non-interactive install {packages} && zypper clean --all"),
            Family::Pacman => format!("RUN pacman -Sy --noconfirm {packages} && pacman -Scc --noconfirm"),
            Family::Apk => format!("RUN apk add --no-cache {packages}"),
            Family::Unknown => format!("install with the image's package manager: {packages}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Apt => "apt",
            Family::Dnf => "dnf",
            Family::Zypper => "zypper",
            Family::Pacman => "pacman",
            Family::Apk => "apk",
            Family::Unknown => "unknown",
        }
    }
}

/// The image's `/etc/os-release` (or `/usr/lib/os-release`) as key/value pairs.
pub(crate) fn os_release(root: &Path) -> Vec<(String, String)> {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .filter_map(|rel| resolve(root, rel).ok())
        .find_map(|p| fs::read_to_string(p).ok())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches(['"', '\'']).to_string(),
            )
        })
        .collect()
}

/// The family of the image at `root`: from os-release `ID` and `ID_LIKE`, else
/// from the package manager it has.
pub(crate) fn family(root: &Path) -> Family {
    let release = os_release(root);
    let get = |key: &str| {
        release
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let ids = format!("{} {}", get("ID"), get("ID_LIKE"));
    for id in ids.split_whitespace() {
        let family = match id {
            "debian" | "ubuntu" => Family::Apt,
            "fedora" | "rhel" | "centos" | "rocky" | "almalinux" | "amzn" | "ol" => Family::Dnf,
            "suse" | "opensuse" | "sles" | "opensuse-leap" | "opensuse-tumbleweed" => {
                Family::Zypper
            }
            "arch" | "archlinux" | "manjaro" => Family::Pacman,
            "alpine" => Family::Apk,
            _ => continue,
        };
        return family;
    }
    let has = |rel: &str| exists(root, rel);
    if has("usr/bin/apt-get") {
        Family::Apt
    } else if has("usr/bin/dnf") || has("usr/bin/microdnf") || has("usr/bin/yum") {
        Family::Dnf
    } else if has("usr/bin/zypper") {
        Family::Zypper
    } else if has("usr/bin/pacman") {
        Family::Pacman
    } else if has("sbin/apk") || has("usr/sbin/apk") {
        Family::Apk
    } else {
        Family::Unknown
    }
}

/// `rel` below `root` with every link resolved inside the image, the last
/// component included.
fn resolve(root: &Path, rel: &str) -> Result<PathBuf, ImageError> {
    let mut rel = rel.to_string();
    for _ in 0..40 {
        let path = in_root(root, &rel)?;
        let Ok(target) = fs::read_link(&path) else {
            return Ok(path);
        };
        let target = target.to_string_lossy().into_owned();
        rel = if target.starts_with('/') {
            target
        } else {
            let here = path.strip_prefix(root).unwrap_or(&path);
            let parent = here.parent().unwrap_or(Path::new(""));
            format!("{}/{target}", parent.display())
        };
    }
    Err(ImageError::io(
        "resolving",
        root.join(rel),
        std::io::Error::from_raw_os_error(nix::libc::ELOOP),
    ))
}

fn exists(root: &Path, rel: &str) -> bool {
    resolve(root, rel).is_ok_and(|p| fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()))
}

/// Checks that the image at `root` has what a node needs; refuses naming what
/// is missing and the Containerfile line that adds it.
pub(crate) fn validate_node_requirements(root: &Path, source: &str) -> Result<Family, ImageError> {
    let family = family(root);
    let missing: Vec<&Requirement> = REQUIREMENTS
        .iter()
        .filter(|r| !r.paths.iter().any(|p| exists(root, p)))
        .collect();
    if missing.is_empty() {
        return Ok(family);
    }
    let what = missing
        .iter()
        .map(|r| {
            format!(
                "{} ({}; looked for /{})",
                r.what,
                r.why,
                r.paths.join(", /")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let packages: Vec<&str> = missing
        .iter()
        .filter_map(|r| family.package(r.what))
        .collect();
    let mut fix = if packages.is_empty() {
        String::new()
    } else {
        format!(
            "add to the image's Containerfile ({} family):\n    {}\nthen build and import it again",
            family.name(),
            family.containerfile_line(&packages.join(" "))
        )
    };
    if family == Family::Apk && missing.iter().any(|r| r.what == "systemd") {
        if !fix.is_empty() {
            fix.push_str("; ");
        }
        fix.push_str("Alpine has no systemd package: base the node image on a systemd distribution (Debian, Ubuntu, Fedora, Rocky, AlmaLinux, openSUSE, Arch)");
    }
    Err(ImageError::MissingForNode {
        image: source.to_string(),
        missing: what,
        fix,
    })
}

/// The image's distribution and release, for `image ls`: os-release `ID`, and
/// `VERSION_ID` (or `VERSION_CODENAME`, or `rolling`).
fn distro_and_release(root: &Path) -> (String, String) {
    let release = os_release(root);
    let get = |key: &str| {
        release
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    (
        get("ID").unwrap_or_else(|| "unknown".into()),
        get("VERSION_ID")
            .or_else(|| get("VERSION_CODENAME"))
            .unwrap_or_else(|| "rolling".into()),
    )
}

/// Runs a tool to completion; a failure carries the end of its error output.
fn run_tool(
    tool: &'static str,
    package: &'static str,
    args: &[&str],
    source: &str,
    doing: &str,
) -> Result<(), ImageError> {
    let output = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ImageError::ToolMissing { tool, package },
            _ => ImageError::io("running", tool, e),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(6)..].join("\n");
    Err(ImageError::ImportFailed {
        image: source.to_string(),
        what: format!("{doing} ({tool} {})", args.join(" ")),
        tail,
    })
}

impl ImageCache {
    /// Imports the image at `source` (see [`skopeo_source`]) as `name`. The
    /// name must be new. On any failure nothing is left in the cache.
    pub fn import(
        &self,
        source: &str,
        name: &str,
        progress: &dyn Fn(&str),
    ) -> Result<Image, ImageError> {
        let reference = skopeo_source(source)?;
        // Names follow the rules of image spec names.
        let placeholder = ImageSpec {
            name: name.to_string(),
            distro: "debian".into(),
            suite: "imported".into(),
            mirror: None,
            components: Vec::new(),
            packages: Vec::new(),
            post_install: Vec::new(),
            full_files: false,
            package_lists: false,
        };
        placeholder.validate()?;
        if builtin_image(name).is_some() {
            return Err(ImageError::NameTaken {
                name: name.to_string(),
                id: "built-in".into(),
            });
        }
        fs::create_dir_all(&self.root).map_err(|e| ImageError::io("creating", &self.root, e))?;
        // One import at a time per cache: the name check below holds until
        // the name is written.
        let _import_lock = self.lock("import")?;
        if let Some(existing) = self.by_name(name)? {
            return Err(ImageError::NameTaken {
                name: name.to_string(),
                id: existing.id,
            });
        }
        let started = Instant::now();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = serde_json::json!({
            "imported_from": reference, "name": name, "at": nanos.to_string(), "uid_base": UID_BASE,
        });
        let id = hex::encode(&Sha256::digest(key.to_string().as_bytes())[..8]);
        let staging = self.staging(&id)?;
        let (distro, release) = (|| {
            let layout = staging.dir().join("layout");
            let bundle = staging.dir().join("bundle");
            progress(&format!("copying {reference} into an OCI layout (skopeo)"));
            let dest = format!("oci:{}:rehearse", layout.display());
            run_tool(
                "skopeo",
                "skopeo",
                &["--insecure-policy", "copy", "--quiet", &reference, &dest],
                source,
                "reading the image",
            )
            .map_err(|e| match e {
                ImageError::ImportFailed { image, what, tail } if reference.starts_with("docker://") => {
                    ImageError::ImportFailed {
                        image,
                        what,
                        tail: format!("{tail}\ncheck that this host reaches the registry (network, DNS, proxy, credentials in ${{XDG_RUNTIME_DIR}}/containers/auth.json) and that the reference exists; or copy the image where a registry is reachable (`skopeo copy docker://REF oci-archive:image.tar`) and import the archive"),
                    }
                }
                other => other,
            })?;
            progress("applying the layers (umoci unpack)");
            let image_ref = format!("{}:rehearse", layout.display());
            run_tool(
                "umoci",
                "umoci",
                &[
                    "unpack",
                    "--image",
                    &image_ref,
                    bundle.to_str().unwrap_or_default(),
                ],
                source,
                "applying the image's layers",
            )?;
            let rootfs = staging.rootfs();
            fs::rename(bundle.join("rootfs"), &rootfs)
                .map_err(|e| ImageError::io("moving the root filesystem of", &bundle, e))?;
            remove_tree(&bundle)?;
            remove_tree(&layout)?;
            progress("checking what a node needs (systemd, sshd, iproute2, python3)");
            validate_node_requirements(&rootfs, source)?;
            progress("preparing the image for container boot");
            prepare(&rootfs)?;
            progress("shifting ownership to the node UID range");
            shift::shift_tree(&rootfs, UID_BASE)?;
            Ok::<_, ImageError>(distro_and_release(&rootfs))
        })()?;
        let final_dir = self.root.join(&id);
        let image = Image {
            id: id.clone(),
            name: name.to_string(),
            spec: ImageSpec {
                distro,
                suite: release,
                ..placeholder
            },
            uid_base: UID_BASE,
            built_at: now(),
            build_secs: started.elapsed().as_secs_f64(),
            size_bytes: du(&staging.rootfs()),
            parent: None,
            origin: None,
            imported: Some(reference),
            dir: final_dir,
        };
        staging.commit(self, &image)?;
        progress(&format!("image {name} ready ({id})"));
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn touch(root: &Path, rel: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "").unwrap();
    }

    fn complete(root: &Path, os_release: &str) {
        touch(root, "usr/lib/systemd/systemd");
        touch(root, "usr/sbin/sshd");
        touch(root, "usr/sbin/ip");
        touch(root, "usr/bin/python3.12");
        symlink("python3.12", root.join("usr/bin/python3")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/os-release"), os_release).unwrap();
    }

    #[test]
    fn a_complete_image_passes_with_its_family() {
        let dir = tempfile::tempdir().unwrap();
        complete(
            dir.path(),
            "ID=rocky\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n",
        );
        assert_eq!(
            validate_node_requirements(dir.path(), "x").unwrap(),
            Family::Dnf
        );
        assert_eq!(
            distro_and_release(dir.path()),
            ("rocky".to_string(), "9.4".to_string())
        );
    }

    #[test]
    fn what_is_missing_is_named_with_the_line_for_the_family() {
        let cases = [
            ("ID=fedora\n", "sshd", "RUN dnf install -y openssh-server"),
            ("ID=arch\n", "python3", "RUN pacman -Sy --noconfirm python"),
            (
                "ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n",
                "ip",
                "RUN zypper --non-interactive install iproute2",
            ),
            (
                "ID=ubuntu\nID_LIKE=debian\n",
                "systemd",
                "apt-get install -y --no-install-recommends systemd systemd-sysv",
            ),
        ];
        for (os_release, remove, line) in cases {
            let dir = tempfile::tempdir().unwrap();
            complete(dir.path(), os_release);
            let rel = match remove {
                "sshd" => "usr/sbin/sshd",
                "python3" => "usr/bin/python3.12",
                "ip" => "usr/sbin/ip",
                _ => "usr/lib/systemd/systemd",
            };
            fs::remove_file(dir.path().join(rel)).unwrap();
            let error = validate_node_requirements(dir.path(), "img.tar")
                .unwrap_err()
                .to_string();
            let what = if remove == "ip" { "iproute2" } else { remove };
            assert!(
                error.contains(&format!("no {what} (")) || error.contains(&format!("; {what} (")),
                "{error}"
            );
            assert!(error.contains(line), "{os_release}: {error}");
            assert!(error.contains("img.tar"), "{error}");
        }
    }

    #[test]
    fn a_family_is_found_from_the_package_manager_without_os_release() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "usr/bin/zypper");
        assert_eq!(family(dir.path()), Family::Zypper);
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "sbin/apk");
        assert_eq!(family(dir.path()), Family::Apk);
        let error = validate_node_requirements(dir.path(), "alpine")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("RUN apk add --no-cache openssh-server iproute2 python3"),
            "{error}"
        );
        assert!(error.contains("Alpine has no systemd"), "{error}");
    }

    #[test]
    fn links_to_the_host_do_not_count_as_present() {
        // An image whose sshd is an absolute link resolves inside the image,
        // never to the host's /usr/sbin/sshd.
        let dir = tempfile::tempdir().unwrap();
        complete(dir.path(), "ID=debian\n");
        fs::remove_file(dir.path().join("usr/sbin/sshd")).unwrap();
        symlink("/usr/sbin/sshd-real", dir.path().join("usr/sbin/sshd")).unwrap();
        let error = validate_node_requirements(dir.path(), "x").unwrap_err();
        assert!(error.to_string().contains("sshd"), "{error}");
        touch(dir.path(), "usr/sbin/sshd-real");
        validate_node_requirements(dir.path(), "x").unwrap();
    }

    #[test]
    fn sources_are_told_apart_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let not_layout = dir.path().join("rootfs");
        fs::create_dir_all(&not_layout).unwrap();
        let error = skopeo_source(not_layout.to_str().unwrap()).unwrap_err();
        assert!(error.to_string().contains("oci-layout"), "{error}");
        let layout = dir.path().join("layout");
        fs::create_dir_all(&layout).unwrap();
        fs::write(layout.join("oci-layout"), "{}").unwrap();
        assert!(skopeo_source(layout.to_str().unwrap())
            .unwrap()
            .starts_with("oci:/"));
        let text = dir.path().join("notes.txt");
        fs::write(&text, "hello").unwrap();
        let error = skopeo_source(text.to_str().unwrap()).unwrap_err();
        assert!(error.to_string().contains("not a tar archive"), "{error}");
        assert_eq!(
            skopeo_source("quay.io/org/image:1").unwrap(),
            "docker://quay.io/org/image:1"
        );
        assert_eq!(
            skopeo_source("oci-archive:/x.tar").unwrap(),
            "oci-archive:/x.tar"
        );
        let error = skopeo_source("./missing.tar").unwrap_err();
        assert!(error.to_string().contains("no such file"), "{error}");
        let error = skopeo_source("not an image").unwrap_err();
        assert!(
            error.to_string().contains("not a registry reference"),
            "{error}"
        );
    }
}
