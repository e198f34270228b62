//! Why a node does not boot: what nspawn and the node's systemd printed, and
//! what its cgroup says, turned into a cause and the fix.

/// A cause found for a boot failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// What went wrong, in a few words.
    pub cause: String,
    /// What to do about it.
    pub fix: String,
    /// Whether booting the node again can help (a race for a limit, a
    /// transient error), as opposed to a broken image or a full disk.
    pub retryable: bool,
}

impl Diagnosis {
    fn new(cause: &str, fix: &str, retryable: bool) -> Self {
        Diagnosis {
            cause: cause.into(),
            fix: fix.into(),
            retryable,
        }
    }

    /// The cause and its fix, as one sentence for an error message.
    pub fn sentence(&self) -> String {
        format!("{}; {}", self.cause, self.fix)
    }
}

/// Lines nspawn prints at every exit on a host whose `/run` is not a tmpfs;
/// they never say why a node failed.
pub fn is_noise(line: &str) -> bool {
    line.contains("Attempted to remove disk file system under")
}

/// A line of the boot log that means the node will not finish booting: the
/// node's systemd gave up, or nspawn failed before it started.
pub fn is_fatal(text: &str) -> bool {
    text.lines().any(|l| {
        l.contains("Freezing execution")
            || l.contains("Failed to allocate manager object")
            || l.contains("Failed to execute /sbin/init")
            || l.contains("doesn't look like an OS root directory")
            || l.contains("Failed to find an init")
            || (l.starts_with("execv(") && l.contains("failed"))
    })
}

/// The cause a boot log names, if any.
pub fn from_log(text: &str) -> Option<Diagnosis> {
    let has = |s: &str| text.contains(s);
    let inotify = text
        .lines()
        .any(|l| l.to_ascii_lowercase().contains("inotify"));
    if inotify && has("Too many open files")
        || has("Failed to allocate manager object: Too many open files")
    {
        return Some(Diagnosis::new(
            "the node's systemd got no inotify instance (fs.inotify.max_user_instances is exhausted for its UID)",
            "raise it: sysctl -w fs.inotify.max_user_instances=8192 (persist it in /etc/sysctl.d/; the host check shows the value that fits)",
            true,
        ));
    }
    if inotify && has("No space left on device") {
        return Some(Diagnosis::new(
            "the node ran out of inotify watches (fs.inotify.max_user_watches)",
            "raise it: sysctl -w fs.inotify.max_user_watches=1048576 (persist it in /etc/sysctl.d/)",
            true,
        ));
    }
    if has("No space left on device") || has("Disk quota exceeded") {
        return Some(Diagnosis::new(
            "the disk under the state directory is full",
            "free space there (expired clusters, unused images, old snapshots) and try again",
            false,
        ));
    }
    if has("Cannot allocate memory") || has("Out of memory") || has("oom-kill") {
        return Some(Diagnosis::new(
            "the host or the node's memory limit ran out of memory",
            "destroy clusters you no longer need, or give the node more `memory` in the topology",
            true,
        ));
    }
    if has("Resource temporarily unavailable") && (has("fork") || has("clone")) {
        return Some(Diagnosis::new(
            "no process could be started (a PID limit: kernel.pid_max, kernel.threads-max or the node's `pids`)",
            "destroy clusters you no longer need, or raise the limit the host check names",
            true,
        ));
    }
    if has("Failed to execute /sbin/init")
        || has("doesn't look like an OS root directory")
        || has("Failed to find an init")
        || text
            .lines()
            .any(|l| l.starts_with("execv(") && l.contains("/sbin/init") && l.contains("failed"))
    {
        return Some(Diagnosis::new(
            "the node's image is broken (no usable /sbin/init)",
            "rebuild it: remove the image NAME and build it again (a cluster that needs it builds it)",
            false,
        ));
    }
    if has("Freezing execution") {
        return Some(Diagnosis::new(
            "the node's systemd hit a fatal error and froze (see the log below)",
            "fix what its last lines name; if they name a limit, the host check shows it",
            true,
        ));
    }
    // nspawn's own errors come before the node's systemd prints anything.
    let nspawn_error = text
        .lines()
        .filter(|l| !is_noise(l))
        .find(|l| l.starts_with("Failed to") || l.contains("systemd-nspawn:"))?;
    Some(Diagnosis::new(
        &format!("systemd-nspawn failed: {}", nspawn_error.trim()),
        "run the host check; if the host is fine, this is a bug worth reporting with the log below",
        true,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_logs_name_their_cause_and_the_noise_is_not_one() {
        let inotify = "systemd 252 running in system mode\nFailed to allocate manager object: Too many open files\nFreezing execution.\n";
        let d = from_log(inotify).unwrap();
        assert!(d.cause.contains("max_user_instances"), "{d:?}");
        assert!(is_fatal(inotify));
        let broken = "Directory /x/root doesn't look like an OS root directory (os-release file is missing). Refusing.\n";
        let d = from_log(broken).unwrap();
        assert!(d.cause.contains("image is broken") && !d.retryable, "{d:?}");
        let no_init = "execv(/usr/lib/systemd/systemd, /lib/systemd/systemd, /sbin/init) failed: No such file or directory\n";
        assert!(from_log(no_init).unwrap().cause.contains("image is broken"));
        let noise = "Container rh1n0 terminated by signal KILL.\nAttempted to remove disk file system under \"/run/systemd/nspawn/propagate/rh1n0\", and we can't allow that.\n";
        assert_eq!(from_log(noise), None);
        assert!(!is_fatal(noise));
        let full = "Failed to create /run/host: No space left on device\n";
        assert!(from_log(full).unwrap().cause.contains("disk"));
    }
}
