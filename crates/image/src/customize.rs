//! What turns a plain Debian root filesystem into a node image that boots fast in
//! a container and is reachable over SSH as soon as systemd is up.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::ImageError;

/// Units that cost boot time and do nothing useful in a disposable node: periodic
/// maintenance, hardware and console handling a container has no use for.
const MASKED_UNITS: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "apt-daily.service",
    "apt-daily-upgrade.service",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-pstore.service",
    "getty@tty1.service",
    "console-getty.service",
    "systemd-journal-flush.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "man-db.timer",
    "systemd-tmpfiles-clean.timer",
    "systemd-remount-fs.service",
    // Waiting for a network manager that a node does not use.
    "systemd-networkd-wait-online.service",
    "NetworkManager-wait-online.service",
    // Other families' periodic jobs and key generation (keys come per cluster).
    "dnf-makecache.timer",
    "motd-news.timer",
    "sshd-keygen.target",
    "sshd-keygen@.service",
];

/// Generators for hardware and boot setups a container never has. Each one is a
/// process started on every boot.
const MASKED_GENERATORS: &[&str] = &[
    "systemd-cryptsetup-generator",
    "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator",
    "systemd-integritysetup-generator",
    "systemd-veritysetup-generator",
    "systemd-system-update-generator",
    "systemd-getty-generator",
    "systemd-run-generator",
    "systemd-debug-generator",
];

/// Services the distribution starts at boot that are activated on demand anyway
/// (through D-Bus or their socket): starting them lazily keeps them available
/// and off the boot path.
const LAZY_UNITS: &[&str] = &[
    "systemd-logind.service",
    "dbus.service",
    "dbus-broker.service",
];

/// Where distributions keep their unit files: Debian 11 and 12 in /lib (a real
/// folder there), newer Debian, Ubuntu, Fedora, Arch in /usr/lib.
const UNIT_DIRS: &[&str] = &["usr/lib/systemd/system", "lib/systemd/system"];

/// OpenSSH's socket unit and service by family: Debian's `ssh`, everyone else's `sshd`.
const SSH_UNITS: &[(&str, &str)] = &[
    ("ssh.socket", "ssh.service"),
    ("sshd.socket", "sshd.service"),
];

/// OpenSSH 9.8 and later: the per-connection half of sshd, by family.
const SSHD_SESSION: &[&str] = &[
    "usr/lib/openssh/sshd-session",
    "usr/libexec/openssh/sshd-session",
    "usr/lib/ssh/sshd-session",
];

const SSHD_CONFIG: &str = "\
# Written by rehearse: one host key per cluster (installed at node creation),
# root logs in with the cluster key only.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
";

const SSHD_INCLUDE: &str = "Include /etc/ssh/sshd_config.d/*.conf";

/// Applies the node preparation to the image root at `root`. Works on any
/// systemd layout (Debian, Ubuntu, RPM family, Arch): paths inside the image are
/// resolved inside it, never through a link to the host.
pub(crate) fn prepare(root: &Path) -> Result<(), ImageError> {
    let etc_units = "etc/systemd/system";
    for unit in MASKED_UNITS {
        link(root, &format!("{etc_units}/{unit}"), "/dev/null")?;
    }
    for generator in MASKED_GENERATORS {
        link(
            root,
            &format!("etc/systemd/system-generators/{generator}"),
            "/dev/null",
        )?;
    }
    for unit in LAZY_UNITS {
        for dir in UNIT_DIRS.iter().copied().chain([etc_units]) {
            remove(root, &format!("{dir}/multi-user.target.wants/{unit}"))?;
        }
    }
    enable_ssh_socket(root)?;

    // Host keys are per cluster, never shared by every node built from this image.
    let ssh_dir = in_root(root, "etc/ssh")?;
    if let Ok(entries) = fs::read_dir(&ssh_dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    write(root, "etc/ssh/sshd_config.d/rehearse.conf", SSHD_CONFIG)?;
    // sshd takes the first value it reads for a keyword: the drop-ins must be
    // read before the distribution's own settings.
    let sshd_config = in_root(root, "etc/ssh/sshd_config")?;
    let current = fs::read_to_string(&sshd_config).unwrap_or_default();
    if !current
        .lines()
        .any(|l| l.trim_start().starts_with("Include /etc/ssh/sshd_config.d"))
    {
        write(
            root,
            "etc/ssh/sshd_config",
            &format!("{SSHD_INCLUDE}\n{current}"),
        )?;
    }
    if in_root(root, "etc/apt")?.is_dir() {
        prepare_apt(root)?;
    }
    // An empty machine-id makes systemd take the one the container manager passes.
    write(root, "etc/machine-id", "")?;
    write(root, "etc/hostname", "node\n")?;
    // Keep the journal in memory: nodes live minutes, and disk flushes cost boot time.
    write(
        root,
        "etc/systemd/journald.conf.d/rehearse.conf",
        "[Journal]\nStorage=volatile\n",
    )?;
    Ok(())
}

/// sshd through socket activation where that is safe: port 22 accepts as soon
/// as sockets.target is reached, instead of after sshd has started and loaded
/// its keys. A socket with `Accept=yes` (one sshd per connection: Debian 11,
/// Ubuntu 22.04, the RPM family) always is. One with `Accept=no` hands its
/// socket to a single sshd, which must keep it across `systemctl reload`:
/// OpenSSH before 9.8 re-executes itself with it (Debian 12); from 9.8 on
/// (a separate `sshd-session`) Debian 13's sshd re-executes, cannot bind and
/// dies. Such a socket is used where the distribution enables it itself
/// (Ubuntu 24.04) or sshd has no `sshd-session`. Otherwise sshd is started at boot.
fn enable_ssh_socket(root: &Path) -> Result<(), ImageError> {
    let unit_dir = |unit: &str| {
        UNIT_DIRS
            .iter()
            .find(|dir| in_root(root, &format!("{dir}/{unit}")).is_ok_and(|p| p.exists()))
            .map(|dir| format!("/{dir}/{unit}"))
    };
    for (socket, service) in SSH_UNITS {
        let Some(service_path) = unit_dir(service) else {
            continue;
        };
        let socket_wants = format!("etc/systemd/system/sockets.target.wants/{socket}");
        let service_wants = format!("etc/systemd/system/multi-user.target.wants/{service}");
        let enabled_by_distribution =
            in_root(root, &socket_wants).is_ok_and(|p| fs::symlink_metadata(p).is_ok());
        let keeps_socket_on_reload = !SSHD_SESSION
            .iter()
            .any(|p| in_root(root, p).is_ok_and(|p| fs::symlink_metadata(p).is_ok()));
        let socket_path = unit_dir(socket).filter(|path| {
            enabled_by_distribution
                || keeps_socket_on_reload
                || accepts_per_connection(&in_root(root, path).unwrap_or_default())
        });
        remove(root, &service_wants)?;
        remove(root, "etc/systemd/system/sshd.service")?;
        match socket_path {
            Some(socket_path) => link(root, &socket_wants, &socket_path)?,
            None => {
                remove(root, &socket_wants)?;
                link(root, &service_wants, &service_path)?;
            }
        }
        return Ok(());
    }
    Ok(())
}

/// Whether a socket unit starts one service instance per connection.
fn accepts_per_connection(unit: &Path) -> bool {
    fs::read_to_string(unit).is_ok_and(|text| {
        text.lines().any(|l| {
            l.trim().strip_prefix("Accept=").is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "yes" | "true" | "1" | "on"
                )
            })
        })
    })
}

/// Debian and Ubuntu: installs without recommends, no fsync per file, lists
/// that look as old as they are.
fn prepare_apt(root: &Path) -> Result<(), ImageError> {
    // A node starts with the package lists of the image's build; make them
    // look as old as they are, so tools that refresh "stale" lists (Ansible's
    // cache_valid_time) do: through the host's cache that is a revalidation.
    remove(root, "var/lib/apt/periodic/update-success-stamp")?;
    let lists = in_root(root, "var/lib/apt/lists")?;
    if lists.is_dir() {
        let epoch = nix::sys::time::TimeSpec::new(0, 0);
        nix::sys::stat::utimensat(
            None,
            &lists,
            &epoch,
            &epoch,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| ImageError::io("setting the time of", &lists, e.into()))?;
    }
    write(
        root,
        "etc/apt/apt.conf.d/90rehearse",
        "APT::Install-Recommends \"false\";\nDPkg::Use-Pty \"false\";\nAcquire::Languages \"none\";\n",
    )?;
    // A disposable node needs no crash safety from dpkg: skipping its fsync per
    // file makes package installs several times faster on overlayfs.
    write(root, "etc/dpkg/dpkg.cfg.d/rehearse", "force-unsafe-io\n")
}

/// `rel` below `root`, with every link on the way resolved as the image would
/// see it (absolute targets start at `root`, `..` stops at `root`): an image's
/// `/etc` that links to `/etc` never reaches the host's. The last component is
/// left as it is: callers replace or read it.
pub(crate) fn in_root(root: &Path, rel: &str) -> Result<PathBuf, ImageError> {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&part);
        let is_last = pending.iter().all(|p| p.is_empty() || p == ".");
        match fs::read_link(root.join(&candidate)) {
            Ok(target) if !is_last => {
                hops += 1;
                if hops > 40 {
                    return Err(ImageError::io(
                        "resolving",
                        root.join(rel),
                        std::io::Error::from_raw_os_error(nix::libc::ELOOP),
                    ));
                }
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved = PathBuf::new();
                }
                pending.extend(target.split('/').rev().map(str::to_string));
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

fn link(root: &Path, rel: &str, target: &str) -> Result<(), ImageError> {
    let path = in_root(root, rel)?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| ImageError::io("creating", parent, e))?;
    }
    let _ = fs::remove_file(&path);
    symlink(target, &path).map_err(|e| ImageError::io("linking", &path, e))
}

fn remove(root: &Path, rel: &str) -> Result<(), ImageError> {
    let path = in_root(root, rel)?;
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ImageError::io("removing", &path, e))
        }
        _ => Ok(()),
    }
}

fn write(root: &Path, rel: &str, contents: &str) -> Result<(), ImageError> {
    let path = in_root(root, rel)?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| ImageError::io("creating", parent, e))?;
    }
    // A link in the last place is replaced, never written through.
    if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(&path).map_err(|e| ImageError::io("replacing", &path, e))?;
    }
    fs::write(&path, contents).map_err(|e| ImageError::io("writing", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_inside_an_image_resolve_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/etc")).unwrap();
        symlink("/usr/etc", root.join("etc")).unwrap();
        symlink("../../../../../tmp", root.join("usr/up")).unwrap();
        assert_eq!(
            in_root(root, "etc/ssh/sshd_config").unwrap(),
            root.join("usr/etc/ssh/sshd_config")
        );
        assert_eq!(in_root(root, "usr/up/x").unwrap(), root.join("tmp/x"));
        // The last component is not followed: it is what gets replaced.
        assert_eq!(in_root(root, "etc").unwrap(), root.join("etc"));
    }

    #[test]
    fn a_link_loop_is_refused_not_followed_out_of_the_image() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/etc", dir.path().join("etc")).unwrap();
        let error = prepare(dir.path()).unwrap_err();
        assert!(error.to_string().contains("resolving"), "{error}");
    }

    #[test]
    fn an_rpm_layout_gets_sshd_socket_activation_and_the_include() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let units = root.join("usr/lib/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::write(units.join("sshd.service"), "[Service]\n").unwrap();
        fs::write(units.join("sshd.socket"), "[Socket]\nAccept=yes\n").unwrap();
        fs::create_dir_all(root.join("etc/ssh")).unwrap();
        fs::write(root.join("etc/ssh/sshd_config"), "PermitRootLogin yes\n").unwrap();
        fs::write(root.join("etc/ssh/ssh_host_rsa_key"), "secret").unwrap();
        prepare(root).unwrap();
        assert_eq!(
            fs::read_link(root.join("etc/systemd/system/sockets.target.wants/sshd.socket"))
                .unwrap(),
            Path::new("/usr/lib/systemd/system/sshd.socket")
        );
        let config = fs::read_to_string(root.join("etc/ssh/sshd_config")).unwrap();
        assert!(config.starts_with(SSHD_INCLUDE), "{config}");
        assert!(!root.join("etc/ssh/ssh_host_rsa_key").exists());
        assert!(
            !root.join("etc/apt").exists(),
            "no apt settings on an RPM layout"
        );
        assert_eq!(
            fs::read_link(root.join("etc/systemd/system/dnf-makecache.timer")).unwrap(),
            Path::new("/dev/null")
        );
    }

    #[test]
    fn an_arch_layout_without_a_socket_unit_starts_sshd_at_boot() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let units = root.join("usr/lib/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::write(
            units.join("sshd.service"),
            "[Service]\nExecStart=/usr/bin/sshd -D\n",
        )
        .unwrap();
        fs::write(units.join("dbus-broker.service"), "[Service]\n").unwrap();
        let wants = root.join("etc/systemd/system/multi-user.target.wants");
        fs::create_dir_all(&wants).unwrap();
        symlink(
            "/usr/lib/systemd/system/dbus-broker.service",
            wants.join("dbus-broker.service"),
        )
        .unwrap();
        fs::create_dir_all(root.join("etc/ssh")).unwrap();
        fs::write(
            root.join("etc/ssh/sshd_config"),
            "Include /etc/ssh/sshd_config.d/*.conf\n",
        )
        .unwrap();
        fs::write(root.join("etc/os-release"), "ID=arch\n").unwrap();
        prepare(root).unwrap();
        assert_eq!(
            fs::read_link(wants.join("sshd.service")).unwrap(),
            Path::new("/usr/lib/systemd/system/sshd.service")
        );
        assert!(!root
            .join("etc/systemd/system/sockets.target.wants/sshd.socket")
            .exists());
        assert!(
            fs::symlink_metadata(wants.join("dbus-broker.service")).is_err(),
            "dbus-broker starts on demand"
        );
        let config = fs::read_to_string(root.join("etc/ssh/sshd_config")).unwrap();
        assert_eq!(
            config.matches("Include /etc/ssh/sshd_config.d").count(),
            1,
            "{config}"
        );
        assert!(root.join("etc/ssh/sshd_config.d/rehearse.conf").is_file());
        assert!(!root.join("etc/apt").exists());
    }

    #[test]
    fn a_fedora_layout_keeps_keygen_off_the_boot_path_and_its_etc_links_inside() {
        // Fedora: units in /usr/lib, keys made by sshd-keygen@ from
        // /usr/libexec/openssh/sshd-keygen, sbin merged into bin.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let units = root.join("usr/lib/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::write(
            units.join("sshd.socket"),
            "[Socket]\nListenStream=22\nAccept=yes\n",
        )
        .unwrap();
        for unit in [
            "sshd.service",
            "sshd@.service",
            "sshd-keygen@.service",
            "sshd-keygen.target",
        ] {
            fs::write(units.join(unit), "[Unit]\n").unwrap();
        }
        fs::create_dir_all(root.join("usr/libexec/openssh")).unwrap();
        fs::write(root.join("usr/libexec/openssh/sshd-keygen"), "#!/bin/sh\n").unwrap();
        symlink("usr/bin", root.join("sbin")).unwrap();
        let wants = root.join("etc/systemd/system/multi-user.target.wants");
        fs::create_dir_all(&wants).unwrap();
        symlink(
            "/usr/lib/systemd/system/sshd.service",
            wants.join("sshd.service"),
        )
        .unwrap();
        // A distribution default that links into /etc/ must stay in the image.
        fs::create_dir_all(root.join("etc/ssh")).unwrap();
        symlink(
            "/etc/ssh/sshd_config.dist",
            root.join("etc/ssh/sshd_config"),
        )
        .unwrap();
        prepare(root).unwrap();
        assert!(
            fs::symlink_metadata(wants.join("sshd.service")).is_err(),
            "the socket starts it"
        );
        assert_eq!(
            fs::read_link(root.join("etc/systemd/system/sockets.target.wants/sshd.socket"))
                .unwrap(),
            Path::new("/usr/lib/systemd/system/sshd.socket")
        );
        for masked in [
            "sshd-keygen@.service",
            "sshd-keygen.target",
            "dnf-makecache.timer",
        ] {
            assert_eq!(
                fs::read_link(root.join("etc/systemd/system").join(masked)).unwrap(),
                Path::new("/dev/null"),
                "{masked}"
            );
        }
        let config = fs::read_to_string(root.join("etc/ssh/sshd_config")).unwrap();
        assert!(config.starts_with(SSHD_INCLUDE), "{config}");
    }

    #[test]
    fn a_debian_11_layout_uses_its_units_in_lib() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let units = root.join("lib/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::write(units.join("ssh.service"), "[Service]\n").unwrap();
        fs::write(units.join("ssh.socket"), "[Socket]\nAccept=yes\n").unwrap();
        fs::create_dir_all(root.join("etc/apt")).unwrap();
        prepare(root).unwrap();
        assert_eq!(
            fs::read_link(root.join("etc/systemd/system/sockets.target.wants/ssh.socket")).unwrap(),
            Path::new("/lib/systemd/system/ssh.socket")
        );
        assert!(root.join("etc/apt/apt.conf.d/90rehearse").is_file());
    }

    #[test]
    fn a_single_sshd_socket_is_used_only_where_the_distribution_enables_it() {
        // Debian 13: ssh.socket hands its socket to one sshd (Accept=no) and is
        // not enabled; its sshd (with sshd-session) cannot rebind after a
        // reload, so it starts at boot.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib/openssh")).unwrap();
        fs::write(root.join("usr/lib/openssh/sshd-session"), "").unwrap();
        let units = root.join("usr/lib/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::write(units.join("ssh.service"), "[Service]\n").unwrap();
        fs::write(
            units.join("ssh.socket"),
            "[Socket]\nListenStream=22\nAccept=no\n",
        )
        .unwrap();
        prepare(root).unwrap();
        let etc = root.join("etc/systemd/system");
        assert_eq!(
            fs::read_link(etc.join("multi-user.target.wants/ssh.service")).unwrap(),
            Path::new("/usr/lib/systemd/system/ssh.service")
        );
        assert!(fs::symlink_metadata(etc.join("sockets.target.wants/ssh.socket")).is_err());

        // Ubuntu 24.04: the same kind of socket, enabled by the distribution.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let units = root.join("usr/lib/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::write(units.join("ssh.service"), "[Service]\n").unwrap();
        fs::write(
            units.join("ssh.socket"),
            "[Socket]\nListenStream=22\nAccept=no\n",
        )
        .unwrap();
        let wants = root.join("etc/systemd/system/sockets.target.wants");
        fs::create_dir_all(&wants).unwrap();
        symlink(
            "/usr/lib/systemd/system/ssh.socket",
            wants.join("ssh.socket"),
        )
        .unwrap();
        prepare(root).unwrap();
        assert!(fs::symlink_metadata(wants.join("ssh.socket")).is_ok());
        assert!(fs::symlink_metadata(
            root.join("etc/systemd/system/multi-user.target.wants/ssh.service")
        )
        .is_err());
    }

    #[test]
    fn a_single_sshd_socket_is_used_where_sshd_keeps_it_across_a_reload() {
        // Debian 12: the same socket, not enabled, an sshd without sshd-session.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let units = root.join("lib/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::write(units.join("ssh.service"), "[Service]\n").unwrap();
        fs::write(units.join("ssh.socket"), "[Socket]\nAccept=no\n").unwrap();
        prepare(root).unwrap();
        assert_eq!(
            fs::read_link(root.join("etc/systemd/system/sockets.target.wants/ssh.socket")).unwrap(),
            Path::new("/lib/systemd/system/ssh.socket")
        );
    }
}
