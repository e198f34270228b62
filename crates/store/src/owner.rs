//! The process a run belongs to, so that a run whose process died is told
//! apart from one still going. Only on the host that ran it: runs of other
//! hosts sharing a PostgreSQL store are theirs to judge.

/// A process on a host, across PID reuse and reboots.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RunOwner {
    machine: String,
    boot: String,
    pid: i32,
    start_time: u64,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn machine_id() -> String {
    read_trimmed("/etc/machine-id")
        .or_else(|| read_trimmed("/var/lib/dbus/machine-id"))
        .or_else(|| read_trimmed("/proc/sys/kernel/hostname"))
        .unwrap_or_default()
}

fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default()
}

/// The kernel's start time of a live process (clock ticks since boot).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    if rest.starts_with('Z') || rest.starts_with('X') {
        return None;
    }
    rest.split(' ').nth(19)?.parse().ok()
}

impl RunOwner {
    pub fn current() -> RunOwner {
        let pid = std::process::id() as i32;
        RunOwner {
            machine: machine_id(),
            boot: boot_id(),
            pid,
            start_time: start_time(pid).unwrap_or(0),
        }
    }

    pub fn encode(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.machine, self.boot, self.pid, self.start_time
        )
    }

    pub fn decode(text: &str) -> Option<RunOwner> {
        let mut parts = text.split('/');
        let owner = RunOwner {
            machine: parts.next()?.to_owned(),
            boot: parts.next()?.to_owned(),
            pid: parts.next()?.parse().ok()?,
            start_time: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(owner)
    }

    /// Why the process is certainly gone, seen from this host; None while it
    /// may be alive (or runs on another host).
    pub fn gone(&self, here: &RunOwner) -> Option<String> {
        if self.machine != here.machine {
            return None;
        }
        if self.boot != here.boot {
            return Some(format!(
                "the host rebooted while the rehearse process that ran it (pid {}) was running",
                self.pid
            ));
        }
        if start_time(self.pid) == Some(self.start_time) {
            return None;
        }
        Some(format!(
            "the rehearse process that ran it (pid {}) ended before the run did: it was killed or crashed",
            self.pid
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_reads_back_and_is_alive_while_it_runs() {
        let me = RunOwner::current();
        assert_eq!(RunOwner::decode(&me.encode()), Some(me.clone()));
        assert_eq!(me.gone(&me), None);
        let mut dead = me.clone();
        dead.start_time += 1;
        assert!(dead.gone(&me).unwrap().contains(&format!("pid {}", me.pid)));
        let mut rebooted = me.clone();
        rebooted.boot = "earlier".into();
        assert!(rebooted.gone(&me).unwrap().contains("rebooted"));
        let mut elsewhere = dead.clone();
        elsewhere.machine = "another host".into();
        assert_eq!(elsewhere.gone(&me), None);
        assert_eq!(RunOwner::decode("a/b/c"), None);
    }
}
