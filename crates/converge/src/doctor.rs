//! The rules doctor: deterministic fixes for failure signatures common enough
//! that no model is needed to recognise them. It runs before a model is asked,
//! and is the whole engine when none is configured.
//!
//! A fix is a few lines of bash put before (preparation) or after (service
//! start) the code, so the fixed script still works from zero and is proven like
//! any other. Bash only: a playbook is not patched by text.

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use crate::failure::Failure;

/// A change the doctor makes to the code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// `command-not-found`, `missing-directory`, `service-not-running`,
    /// `apt-lock`, `missing-user`, `port-in-use`.
    pub rule: &'static str,
    /// The signature that was recognised, in a sentence.
    pub reason: String,
    /// Lines put after the shebang and `set` lines.
    pub prepend: String,
    /// Lines put at the end.
    pub append: String,
}

impl Fix {
    /// The code with the fix in place.
    pub fn apply(&self, code: &str) -> String {
        let mut head_end = 0;
        for line in code.split_inclusive('\n') {
            let t = line.trim_start();
            if (head_end == 0 && t.starts_with("#!")) || t.starts_with("set -") {
                head_end += line.len();
            } else {
                break;
            }
        }
        let (head, body) = code.split_at(head_end);
        let mut out = String::from(head);
        if !head.is_empty() && !head.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&self.prepend);
        out.push_str(body);
        if !self.append.is_empty() {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&self.append);
        }
        out
    }
}

/// Commands whose Debian 12 package has another name than the command, or that
/// minbase images lack. Commands not listed are assumed to be in a package of
/// their own name only when they appear as a key here: guessing wrong would
/// cost an iteration.
const PACKAGES: &[(&str, &str)] = &[
    ("ab", "apache2-utils"),
    ("crontab", "cron"),
    ("curl", "curl"),
    ("dig", "dnsutils"),
    ("envsubst", "gettext-base"),
    ("gpg", "gnupg"),
    ("git", "git"),
    ("haproxy", "haproxy"),
    ("htpasswd", "apache2-utils"),
    ("ifconfig", "net-tools"),
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("jq", "jq"),
    ("less", "less"),
    ("lsof", "lsof"),
    ("make", "make"),
    ("mysql", "default-mysql-client"),
    ("nc", "netcat-openbsd"),
    ("netstat", "net-tools"),
    ("nft", "nftables"),
    ("nginx", "nginx"),
    ("nslookup", "dnsutils"),
    ("openssl", "openssl"),
    ("ping", "iputils-ping"),
    ("pip3", "python3-pip"),
    ("psql", "postgresql-client"),
    ("redis-cli", "redis-tools"),
    ("rsync", "rsync"),
    ("sqlite3", "sqlite3"),
    ("ss", "iproute2"),
    ("sudo", "sudo"),
    ("tcpdump", "tcpdump"),
    ("traceroute", "traceroute"),
    ("ufw", "ufw"),
    ("unzip", "unzip"),
    ("vim", "vim"),
    ("wget", "wget"),
    ("xmllint", "libxml2-utils"),
    ("zip", "zip"),
];

/// The Debian package that provides `command`, when the built-in map knows it.
pub fn package_for(command: &str) -> Option<&'static str> {
    PACKAGES
        .iter()
        .find(|(c, _)| *c == command)
        .map(|(_, p)| *p)
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("doctor patterns are valid"))
}

/// The first rule that recognises the failure and has not already been applied
/// to `code`.
pub fn diagnose(code: &str, failure: &Failure) -> Option<Fix> {
    // A service that failed to start says why in its journal, not in the code's output.
    let output = &format!("{}\n{}", failure.output, failure.journal);
    let candidates = [
        apt_lock(output),
        command_not_found(output),
        missing_directory(output),
        missing_user(output),
        port_in_use(output),
        service_not_running(failure),
    ];
    candidates.into_iter().flatten().find(|fix| {
        let new = |lines: &str| lines.is_empty() || !code.contains(lines.trim());
        new(&fix.prepend) && new(&fix.append)
    })
}

fn command_not_found(output: &str) -> Option<Fix> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = re(
        &RE,
        r"(?m)(?:^|: )([A-Za-z0-9_.+-]+): (?:command not found|not found)$",
    );
    re.captures_iter(output).find_map(|c| {
        let command = c.get(1)?.as_str();
        let package = package_for(command)?;
        Some(Fix {
            rule: "command-not-found",
            reason: format!("`{command}` is not installed; Debian's package {package} provides it"),
            prepend: format!(
                "command -v {command} >/dev/null 2>&1 || {{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}; }}\n"
            ),
            append: String::new(),
        })
    })
}

fn missing_directory(output: &str) -> Option<Fix> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = re(
        &RE,
        r"(?m)(?:can't create |cannot create |: )(/[^\s:'`]+)(?:': |: )(?:No such file or directory|nonexistent directory|Directory nonexistent)",
    );
    re.captures_iter(output).find_map(|c| {
        let path = c.get(1)?.as_str();
        let parent = std::path::Path::new(path).parent()?.to_str()?;
        if parent == "/" || parent.is_empty() {
            return None;
        }
        Some(Fix {
            rule: "missing-directory",
            reason: format!("{path} could not be written because {parent} does not exist"),
            prepend: format!("mkdir -p {parent}\n"),
            append: String::new(),
        })
    })
}

fn apt_lock(output: &str) -> Option<Fix> {
    if !output.contains("Could not get lock") && !output.contains("Unable to acquire the dpkg") {
        return None;
    }
    Some(Fix {
        rule: "apt-lock",
        reason: "another apt or dpkg process held the package lock".into(),
        prepend: "echo 'DPkg::Lock::Timeout \"300\";' > /etc/apt/apt.conf.d/90rehearse-lock-wait\n"
            .into(),
        append: String::new(),
    })
}

fn missing_user(output: &str) -> Option<Fix> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = re(
        &RE,
        r"(?:invalid user|no such user|invalid owner)[:]?\s*[‘'`]?([a-z_][a-z0-9_-]*)|[‘'`]([a-z_][a-z0-9_-]*)[’'`]?: no such user",
    );
    re.captures_iter(output).find_map(|c| {
        let user = c.get(1).or_else(|| c.get(2))?.as_str();
        Some(Fix {
            rule: "missing-user",
            reason: format!("user {user} does not exist"),
            prepend: format!(
                "id -u {user} >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin {user}\n"
            ),
            append: String::new(),
        })
    })
}

/// Ports the doctor never frees: the way into the node.
const KEEP_PORTS: &[u16] = &[22];

fn port_in_use(output: &str) -> Option<Fix> {
    static BEFORE: OnceLock<Regex> = OnceLock::new();
    static AFTER: OnceLock<Regex> = OnceLock::new();
    // nginx: `bind() to 0.0.0.0:80 failed (98: Address already in use)`.
    let before = re(
        &BEFORE,
        r"[:\]](\d{1,5})\b[^\n]{0,60}?[Aa]ddress already in use|\bport (\d{1,5})\b[^\n]{0,40}?(?:[Aa]ddress )?already in use",
    );
    // HAProxy: `cannot bind socket (Address already in use) [0.0.0.0:80]`;
    // Node: `EADDRINUSE: address already in use :::3000`.
    let after = re(
        &AFTER,
        r"[Aa]ddress already in use[^\n]{0,60}?(?:port |:)(\d{1,5})\b",
    );
    let port = before
        .captures_iter(output)
        .chain(after.captures_iter(output))
        .find_map(|c| {
            let port: u16 = c.get(1).or_else(|| c.get(2))?.as_str().parse().ok()?;
            (port != 0 && !KEEP_PORTS.contains(&port)).then_some(port)
        })?;
    Some(Fix {
        rule: "port-in-use",
        reason: format!("TCP port {port} was already in use by another process"),
        // Stops (and disables, so it stays stopped after a reboot) the unit
        // listening on the port, or the bare process when no unit owns it. A
        // unit's worker processes are gone by the time their turn comes.
        prepend: format!(
            "command -v ss >/dev/null 2>&1 || {{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; }}
for pid in $(ss -Htlnp 'sport = :{port}' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true); do
  unit=$(systemctl status \"$pid\" 2>/dev/null | awk 'NR == 1 {{print $2}}' || true)
  case \"$unit\" in
    *.service) systemctl disable --now \"$unit\" ;;
    *) kill \"$pid\" 2>/dev/null || true ;;
  esac
done
"
        ),
        append: String::new(),
    })
}

fn service_not_running(failure: &Failure) -> Option<Fix> {
    // Only when the code itself ran through: a failed step explains the rest.
    if !failure.step_ok {
        return None;
    }
    failure.checks.iter().find_map(|check| {
        if check.kind != "service" {
            return None;
        }
        let wants = |key: &str| check.expected.get(key) == Some(&serde_json::Value::Bool(true));
        let shows = |key: &str| check.actual.get(key) == Some(&serde_json::Value::Bool(true));
        let installed = check
            .actual
            .get("installed")
            .or_else(|| check.actual.get("exists"))
            .is_none_or(|v| v != &serde_json::Value::Bool(false));
        let off =
            (wants("running") && !shows("running")) || (wants("enabled") && !shows("enabled"));
        if !installed || !off {
            return None;
        }
        let unit = &check.subject;
        Some(Fix {
            rule: "service-not-running",
            reason: format!("{unit} is installed but not running or not enabled"),
            prepend: String::new(),
            append: format!("systemctl enable --now {unit}\n"),
        })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::failure::FailedCheck;

    fn failure(output: &str) -> Failure {
        Failure {
            step_ok: false,
            step_error: Some("exit 127".into()),
            timed_out: false,
            output: output.into(),
            checks: Vec::new(),
            journal: String::new(),
        }
    }

    #[test]
    fn command_not_found_installs_the_providing_package() {
        let f = failure("/tmp/step.sh: line 3: dig: command not found\n");
        let fix = diagnose("#!/bin/bash\nset -e\ndig example.org\n", &f).unwrap();
        assert_eq!(fix.rule, "command-not-found");
        assert!(fix.prepend.contains("apt-get install -y -qq dnsutils"));
        let fixed = fix.apply("#!/bin/bash\nset -e\ndig example.org\n");
        assert!(
            fixed.starts_with("#!/bin/bash\nset -e\ncommand -v dig"),
            "{fixed}"
        );
        assert!(fixed.ends_with("dig example.org\n"));
        // Once applied, the same rule does not fire again on the fixed code.
        assert_eq!(diagnose(&fixed, &f), None);
        // dash says it differently.
        let f = failure("/tmp/s: 4: jq: not found\n");
        assert!(diagnose("jq .", &f).unwrap().prepend.contains(" jq;"));
        // An unknown command is left to the model.
        assert_eq!(
            diagnose("x", &failure("frobnicate: command not found\n")),
            None
        );
    }

    #[test]
    fn other_signatures() {
        let fix = diagnose(
            "x",
            &failure("sh: 1: cannot create /etc/app/app.conf: Directory nonexistent\n"),
        )
        .unwrap();
        assert_eq!(fix.prepend, "mkdir -p /etc/app\n");
        let fix = diagnose(
            "x",
            &failure("tee: /srv/www/index.html: No such file or directory\n"),
        )
        .unwrap();
        assert_eq!(fix.prepend, "mkdir -p /srv/www\n");
        let fix = diagnose(
            "x",
            &failure(
                "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 12\n",
            ),
        )
        .unwrap();
        assert_eq!(fix.rule, "apt-lock");
        let fix = diagnose("x", &failure("chown: invalid user: ‘app:app’\n")).unwrap();
        assert!(fix
            .prepend
            .contains("useradd --system --no-create-home --shell /usr/sbin/nologin app\n"));
    }

    #[test]
    fn port_in_use_frees_the_port_before_the_code_runs() {
        let code = "#!/bin/bash\nset -euo pipefail\nnginx\n";
        let f =
            failure("nginx: [emerg] bind() to 0.0.0.0:8080 failed (98: Address already in use)\n");
        let fix = diagnose(code, &f).unwrap();
        assert_eq!(fix.rule, "port-in-use");
        assert!(fix.reason.contains("8080"), "{}", fix.reason);
        assert!(fix.prepend.contains("sport = :8080"), "{}", fix.prepend);
        assert!(fix.prepend.contains("systemctl disable --now"));
        assert!(
            crate::policy::scan(&fix.prepend).is_empty(),
            "the fix itself is nothing a reviewer needs to be warned of"
        );
        let fixed = fix.apply(code);
        assert!(fixed.starts_with("#!/bin/bash\nset -euo pipefail\ncommand -v ss"));
        assert_eq!(diagnose(&fixed, &f), None, "applied once");
        // HAProxy and Node name the port after the message.
        let haproxy = failure("[ALERT] (9) : Starting frontend web: cannot bind socket (Address already in use) [0.0.0.0:80]\n");
        assert!(diagnose("x", &haproxy)
            .unwrap()
            .prepend
            .contains("sport = :80'"));
        let node = failure("Error: listen EADDRINUSE: address already in use :::3000\n");
        assert!(diagnose("x", &node)
            .unwrap()
            .prepend
            .contains("sport = :3000'"));
        let sshd = failure("Bind to port 2222 on 0.0.0.0 failed: Address already in use.\n");
        assert!(diagnose("x", &sshd)
            .unwrap()
            .prepend
            .contains("sport = :2222'"));
        // No port named, or the port SSH answers on: left to the model.
        assert_eq!(
            diagnose(
                "x",
                &failure("OSError: [Errno 98] Address already in use\n")
            ),
            None
        );
        assert_eq!(
            diagnose(
                "x",
                &failure("bind to port 22 on 0.0.0.0 failed: Address already in use.\n")
            ),
            None
        );
    }

    #[test]
    fn port_in_use_is_found_in_a_failed_units_journal() {
        let mut f = failure(
            "Job for nginx.service failed because the control process exited with error code.\n",
        );
        assert!(diagnose("apt-get install -y nginx", &f).is_none());
        f.journal = "--- nginx.service on web1 ---\n\
             nginx: [emerg] bind() to 0.0.0.0:8080 failed (98: Address already in use)\n"
            .into();
        let fix = diagnose("apt-get install -y nginx", &f).expect("a fix");
        assert_eq!(fix.rule, "port-in-use");
        assert!(fix.prepend.contains("sport = :8080"), "{}", fix.prepend);
    }

    #[test]
    fn service_installed_but_stopped_is_started_and_enabled() {
        let f = Failure {
            step_ok: true,
            step_error: None,
            timed_out: false,
            output: String::new(),
            journal: String::new(),
            checks: vec![FailedCheck {
                node: "node1".into(),
                kind: "service".into(),
                subject: "nginx".into(),
                expected: json!({"running": true, "enabled": true}),
                actual: json!({"running": false, "enabled": false}),
                message: "expected running".into(),
            }],
        };
        let fix = diagnose("apt-get install -y nginx\n", &f).unwrap();
        assert_eq!(fix.append, "systemctl enable --now nginx\n");
    }
}
