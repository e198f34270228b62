//! What turns a plain Debian root filesystem into a node image that boots fast in
//! a container and is reachable over SSH as soon as systemd is up.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

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
    "lib/systemd/system/multi-user.target.wants/systemd-logind.service",
    "lib/systemd/system/multi-user.target.wants/dbus.service",
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

/// Applies the node preparation to the image root at `root`.
pub(crate) fn prepare(root: &Path) -> Result<(), ImageError> {
    let etc_units = root.join("etc/systemd/system");
    for unit in MASKED_UNITS {
        let link = etc_units.join(unit);
        let _ = fs::remove_file(&link);
        symlink("/dev/null", &link).map_err(|e| ImageError::io("masking", &link, e))?;
    }
    let generators = root.join("etc/systemd/system-generators");
    fs::create_dir_all(&generators).map_err(|e| ImageError::io("creating", &generators, e))?;
    for generator in MASKED_GENERATORS {
        let link = generators.join(generator);
        let _ = fs::remove_file(&link);
        symlink("/dev/null", &link).map_err(|e| ImageError::io("masking", &link, e))?;
    }
    for wants in LAZY_UNITS {
        let _ = fs::remove_file(root.join(wants));
    }
    // sshd through socket activation: port 22 accepts as soon as sockets.target is
    // reached, instead of after sshd has started and loaded its keys.
    let _ = fs::remove_file(etc_units.join("multi-user.target.wants/ssh.service"));
    let _ = fs::remove_file(etc_units.join("sshd.service"));
    let wants = etc_units.join("sockets.target.wants");
    fs::create_dir_all(&wants).map_err(|e| ImageError::io("creating", &wants, e))?;
    let socket_link = wants.join("ssh.socket");
    let _ = fs::remove_file(&socket_link);
    symlink("/lib/systemd/system/ssh.socket", &socket_link)
        .map_err(|e| ImageError::io("enabling", &socket_link, e))?;

    // Host keys are per cluster, never shared by every node built from this image.
    let ssh_dir = root.join("etc/ssh");
    if let Ok(entries) = fs::read_dir(&ssh_dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    write(root, "etc/ssh/sshd_config.d/rehearse.conf", SSHD_CONFIG)?;
    // A node starts with no package lists; make them look as old as they are,
    // so tools that refresh "stale" lists (Ansible's cache_valid_time) do.
    let _ = fs::remove_file(root.join("var/lib/apt/periodic/update-success-stamp"));
    let lists = root.join("var/lib/apt/lists");
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
    // An empty machine-id makes systemd take the one the container manager passes.
    write(root, "etc/machine-id", "")?;
    write(root, "etc/hostname", "node\n")?;
    // Keep the journal in memory: nodes live minutes, and disk flushes cost boot time.
    write(
        root,
        "etc/systemd/journald.conf.d/rehearse.conf",
        "[Journal]\nStorage=volatile\n",
    )?;
    write(
        root,
        "etc/apt/apt.conf.d/90rehearse",
        "APT::Install-Recommends \"false\";\nDPkg::Use-Pty \"false\";\nAcquire::Languages \"none\";\n",
    )?;
    // A disposable node needs no crash safety from dpkg: skipping its fsync per
    // file makes package installs several times faster on overlayfs.
    write(root, "etc/dpkg/dpkg.cfg.d/rehearse", "force-unsafe-io\n")?;
    Ok(())
}

fn write(root: &Path, rel: &str, contents: &str) -> Result<(), ImageError> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| ImageError::io("creating", parent, e))?;
    }
    fs::write(&path, contents).map_err(|e| ImageError::io("writing", &path, e))
}
