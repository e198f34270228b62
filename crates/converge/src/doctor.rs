//! The rules doctor: deterministic fixes for failure signatures common enough
//! that no model is needed to recognise them. It runs before a model is asked,
//! and is the whole engine when none is configured.
//!
//! A fix is a few lines of bash put where they can work: before the code
//! (preparation), right before a line of it (after what that line needs was
//! installed), or after it (service start), so the fixed script still works
//! from zero and is proven like any other. Bash only: a playbook is not
//! patched by text. Which package provides a command comes from Debian's
//! Contents index ([`crate::contents`]).

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use crate::contents::CommandIndex;
use crate::failure::Failure;

/// A change the doctor makes to the code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// `command-not-found`, `missing-directory`, `service-not-running`,
    /// `apt-lock`, `apt-update`, `missing-user`, `missing-group`,
    /// `daemon-reload`, `port-in-use`.
    pub rule: &'static str,
    /// The signature that was recognised, in a sentence.
    pub reason: String,
    /// Lines put after the shebang and `set` lines.
    pub prepend: String,
    /// Lines put at the end.
    pub append: String,
    /// Lines put right before a line of the code, where they can work (after
    /// the line that installs what they act on, before the one that needs it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inserts: Vec<Insert>,
}

/// Lines put before a line of the code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Insert {
    /// The line of the code (as written, trimmed) they go before; the first
    /// line equal to it.
    pub before: String,
    pub lines: String,
}

impl Fix {
    fn new(rule: &'static str, reason: String) -> Fix {
        Fix {
            rule,
            reason,
            prepend: String::new(),
            append: String::new(),
            inserts: Vec::new(),
        }
    }

    fn prepend(mut self, lines: String) -> Fix {
        self.prepend = lines;
        self
    }

    /// The code with the fix in place.
    pub fn apply(&self, code: &str) -> String {
        let mut code = code.to_owned();
        for insert in &self.inserts {
            let mut out = String::new();
            let mut done = false;
            for line in code.split_inclusive('\n') {
                if !done && line.trim() == insert.before {
                    let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
                    for added in insert.lines.lines() {
                        out.push_str(&indent);
                        out.push_str(added);
                        out.push('\n');
                    }
                    done = true;
                }
                out.push_str(line);
            }
            code = out;
        }
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

    /// Whether the fix is already in `code` (a rule does not fire twice).
    fn applied_to(&self, code: &str) -> bool {
        let has = |lines: &str| !lines.trim().is_empty() && code.contains(lines.trim());
        has(&self.prepend) || has(&self.append) || self.inserts.iter().any(|i| has(&i.lines))
    }
}

/// What the doctor knows beyond the failure: which package provides a command.
pub struct Knowledge<'a> {
    pub commands: &'a CommandIndex,
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("doctor patterns are valid"))
}

/// The first rule that recognises the failure and has not already been applied
/// to `code`.
pub fn diagnose(code: &str, failure: &Failure, know: &Knowledge<'_>) -> Option<Fix> {
    // A service that failed to start says why in its journal, not in the code's output.
    let output = &format!("{}\n{}", failure.output, failure.journal);
    let candidates = [
        apt_lock(output),
        apt_update(code, output, know),
        command_not_found(output, know),
        missing_directory(output),
        missing_account(code, output),
        daemon_reload(code, output),
        port_in_use(code, failure, output),
        service_not_running(failure),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|fix| !fix.applied_to(code))
}

/// The install line apt-get needs, quiet and non-interactive.
fn install(package: &str) -> String {
    format!("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}")
}

fn command_not_found(output: &str, know: &Knowledge<'_>) -> Option<Fix> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = re(
        &RE,
        r"(?m)(?:^|: )([A-Za-z0-9_.+-]+): (?:command not found|not found)$",
    );
    re.captures_iter(output).find_map(|c| {
        let command = c.get(1)?.as_str();
        let package = know
            .commands
            .package_for(command)
            .or_else(|| crate::contents::alternative(know.commands, command))?;
        Some(
            Fix::new(
                "command-not-found",
                format!(
                    "`{command}` is not installed; the package {package} provides it (from {})",
                    know.commands.provenance()
                ),
            )
            .prepend(format!(
                "command -v {command} >/dev/null 2>&1 || {{ {}; }}\n",
                install(package)
            )),
        )
    })
}

/// `apt-get install` before any `apt-get update` on a fresh node, whose
/// package lists are empty: the package exists, apt just does not know it yet.
fn apt_update(code: &str, output: &str, know: &Knowledge<'_>) -> Option<Fix> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = re(
        &RE,
        r"(?m)^E: (?:Unable to locate package |Package '?)([a-z0-9][a-z0-9+.-]+)",
    );
    let package = re.captures_iter(output).find_map(|c| {
        let p = c.get(1)?.as_str();
        know.commands.has_package(p).then_some(p)
    })?;
    // Lists fetched earlier in the code would have known a real package.
    if code.contains("apt-get update") || code.contains("apt update") {
        return None;
    }
    Some(
        Fix::new(
            "apt-update",
            format!("package {package} exists but apt's package lists were never fetched on the fresh node"),
        )
        .prepend("apt-get update -qq\n".into()),
    )
}

fn missing_directory(output: &str) -> Option<Fix> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = re(
        &RE,
        r"(?m)(?:can't create |cannot create (?:regular file |directory )?[‘']?|: )(/[^\s:'`’]+)(?:[’']: |: )(?:No such file or directory|nonexistent directory|Directory nonexistent)",
    );
    re.captures_iter(output).find_map(|c| {
        let path = c.get(1)?.as_str();
        let parent = std::path::Path::new(path).parent()?.to_str()?;
        if parent == "/" || parent.is_empty() {
            return None;
        }
        Some(
            Fix::new(
                "missing-directory",
                format!("{path} could not be written because {parent} does not exist"),
            )
            .prepend(format!("mkdir -p {parent}\n")),
        )
    })
}

fn apt_lock(output: &str) -> Option<Fix> {
    if !output.contains("Could not get lock") && !output.contains("Unable to acquire the dpkg") {
        return None;
    }
    Some(
        Fix::new(
            "apt-lock",
            "another apt or dpkg process held the package lock".into(),
        )
        .prepend(
            "echo 'DPkg::Lock::Timeout \"300\";' > /etc/apt/apt.conf.d/90rehearse-lock-wait\n"
                .into(),
        ),
    )
}

/// A user or group that does not exist, in the wording of each tool that
/// says so: chown, chgrp, install, usermod, useradd, gpasswd, passwd, su,
/// runuser, sudo, id, adduser, crontab, systemd's `User=`/`Group=`.
fn missing_account(code: &str, output: &str) -> Option<Fix> {
    static USER: OnceLock<Regex> = OnceLock::new();
    static GROUP: OnceLock<Regex> = OnceLock::new();
    const Q: &str = r"[‘’'`\x22]?";
    const NAME: &str = r"([a-z_][a-z0-9_-]*\$?)";
    let user = USER.get_or_init(|| {
        let patterns = [
            // chown, install: `invalid user: ‘app:app’`, `invalid user ‘app’`
            format!(r"invalid (?:user|owner):? {Q}{NAME}"),
            // usermod, gpasswd, passwd, chage, userdel: `user 'app' does not exist`
            format!(r"\buser {Q}{NAME}{Q} does not exist"),
            // su, runuser: `user app does not exist or the user entry ...`
            // sudo: `unknown user app`; crontab: `user `app' unknown`
            format!(r"\bunknown user:? {Q}{NAME}"),
            format!(r"\buser {Q}{NAME}{Q} unknown"),
            // id, getent-style: `id: ‘app’: no such user`
            format!(r"{Q}{NAME}{Q}: no such user"),
            format!(r"no such user:? {Q}{NAME}"),
            // systemd: `Failed to determine user credentials: No such process` is
            // named by the unit's User= line, read from the journal header.
            format!(r"\bUser=({NAME})"),
        ];
        Regex::new(&patterns.join("|")).expect("valid")
    });
    let group = GROUP.get_or_init(|| {
        let patterns = [
            // chown `invalid group: ‘app:web’`, chgrp/install `invalid group: ‘web’`
            format!(r"invalid group:? {Q}(?:[a-z_][a-z0-9_-]*:)?{NAME}"),
            // usermod -aG, useradd -G, gpasswd: `group 'web' does not exist`
            format!(r"\bgroup {Q}{NAME}{Q} does not exist"),
            // adduser: `The group `web' does not exist.`
            format!(r"\bunknown group:? {Q}{NAME}"),
        ];
        Regex::new(&patterns.join("|")).expect("valid")
    });
    let first = |re: &Regex| {
        re.captures_iter(output).find_map(|c| {
            c.iter()
                .skip(1)
                .flatten()
                .next()
                .map(|m| m.as_str().to_owned())
        })
    };
    // `chown app:web` with neither: chown names the user; the group follows.
    let (kind, name) = match (first(user), first(group)) {
        (Some(u), _) => ("user", u),
        (None, Some(g)) => ("group", g),
        (None, None) => return None,
    };
    if matches!(name.as_str(), "root" | "nobody") {
        return None;
    }
    // Code that creates the account itself, only too late, needs reordering,
    // which a prepended line would not give: left to the model.
    let creates = Regex::new(&format!(
        r"(?m)\b(?:useradd|adduser|groupadd|addgroup)\b[^\n]*\b{}\b",
        regex::escape(&name)
    ))
    .expect("valid");
    if creates.is_match(code) {
        return None;
    }
    Some(match kind {
        "user" => Fix::new("missing-user", format!("user {name} does not exist"))
            .prepend(format!(
                "id -u {name} >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin {name}\n"
            )),
        _ => Fix::new("missing-group", format!("group {name} does not exist"))
            .prepend(format!(
                "getent group {name} >/dev/null || groupadd --system {name}\n"
            )),
    })
}

/// systemd's warning that a unit changed on disk after it was loaded: the
/// old definition is what runs. `systemctl daemon-reload` goes right before
/// the first line that acts on the unit after the code wrote it.
fn daemon_reload(code: &str, output: &str) -> Option<Fix> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = re(
        &RE,
        r"(?:unit file, source configuration file or drop-ins of |unit file of )([A-Za-z0-9@_.:-]+?)(?:\.service)? changed on disk",
    );
    let unit = re.captures(output)?.get(1)?.as_str().to_owned();
    let acts = Regex::new(&format!(
        r"^\s*(?:sudo\s+)?systemctl\s+(?:[a-z-]+\s+)*(?:start|restart|reload|enable|try-restart|reload-or-restart)\b[^\n]*\b{}\b",
        regex::escape(&unit)
    ))
    .expect("valid");
    let line = code.lines().find(|l| acts.is_match(l))?.trim().to_owned();
    Some(Fix {
        inserts: vec![Insert {
            before: line,
            lines: "systemctl daemon-reload\n".into(),
        }],
        ..Fix::new(
            "daemon-reload",
            format!(
                "{unit}.service changed on disk but systemd was not told (systemctl daemon-reload)"
            ),
        )
    })
}

/// Ports the doctor never frees: the way into the node.
const KEEP_PORTS: &[u16] = &[22];

/// The port a bind failure names, and the program that failed to bind.
fn bind_failure(output: &str) -> Option<(u16, Option<String>)> {
    static BEFORE: OnceLock<Regex> = OnceLock::new();
    static AFTER: OnceLock<Regex> = OnceLock::new();
    // nginx: `nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)`.
    let before = re(
        &BEFORE,
        r"(?m)^(?:[^\n]*?\b([a-z][a-z0-9_-]+)(?:\[\d+\])?: )?[^\n]*?(?:[:\]](\d{1,5})\b[^\n]{0,60}?[Aa]ddress already in use|\bport (\d{1,5})\b[^\n]{0,40}?(?:[Aa]ddress )?already in use)",
    );
    // HAProxy: `cannot bind socket (Address already in use) [0.0.0.0:80]`;
    // Node: `EADDRINUSE: address already in use :::3000`.
    let after = re(
        &AFTER,
        r"[Aa]ddress already in use[^\n]{0,60}?(?:port |:)(\d{1,5})\b",
    );
    let from_before = before.captures_iter(output).find_map(|c| {
        let port: u16 = c.get(2).or_else(|| c.get(3))?.as_str().parse().ok()?;
        (port != 0 && !KEEP_PORTS.contains(&port))
            .then(|| (port, c.get(1).map(|m| m.as_str().to_owned())))
    });
    from_before.or_else(|| {
        after.captures_iter(output).find_map(|c| {
            let port: u16 = c.get(1)?.as_str().parse().ok()?;
            (port != 0 && !KEEP_PORTS.contains(&port)).then_some((port, None))
        })
    })
}

/// A port another process holds. The fix frees it right before the line of
/// the code that installs or starts the service that failed to bind, that
/// is after whatever the code installed or started earlier holds it; before
/// the code only when no such line is found (the holder came with the node).
fn port_in_use(code: &str, failure: &Failure, output: &str) -> Option<Fix> {
    let (port, program) = bind_failure(output)?;
    let mut services: Vec<String> = failure.failed_units();
    if let Some(p) = program {
        if !matches!(p.as_str(), "error" | "alert" | "emerg" | "warning") {
            services.push(p);
        }
    }
    let anchor = services.iter().find_map(|service| {
        let word = Regex::new(&format!(r"\b{}\b", regex::escape(service))).expect("valid");
        let acts = Regex::new(
            r"\b(?:apt-get|apt)\s[^\n]*\binstall\b|\bsystemctl\s[^\n]*\b(?:start|restart|enable|reload)\b|\bservice\s+\S+\s+(?:start|restart)\b",
        )
        .expect("valid");
        let starts = Regex::new(r"\bsystemctl\s[^\n]*\b(?:start|restart|enable|reload)\b|\bservice\s+\S+\s+(?:start|restart)\b")
            .expect("valid");
        let found = |pattern: &Regex| {
            code.lines()
                .find(|l| word.is_match(l) && pattern.is_match(l) && !l.trim_start().starts_with('#'))
                .map(|l| (service.clone(), l.trim().to_owned()))
        };
        // A line that starts the service beats the one that installs it: an
        // install line may install the holder of the port too.
        found(&starts).or_else(|| found(&acts))
    });
    // Stops (and disables, so it stays stopped after a reboot) the unit
    // listening on the port, or the bare process when no unit owns it.
    let free = format!(
        "command -v ss >/dev/null 2>&1 || {{ {}; }}
for pid in $(ss -Htlnp 'sport = :{port}' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true); do
  unit=$(systemctl status \"$pid\" 2>/dev/null | awk 'NR == 1 {{print $2}}' || true)
  case \"$unit\" in
    *.service) systemctl disable --now \"$unit\" ;;
    *) kill \"$pid\" 2>/dev/null || true ;;
  esac
done
",
        install("iproute2")
    );
    let reason = format!("TCP port {port} was already in use by another process");
    Some(match anchor {
        Some((service, line)) => Fix {
            inserts: vec![Insert {
                before: line,
                lines: free,
            }],
            ..Fix::new(
                "port-in-use",
                format!("{reason}: freed right before the code installs or starts {service}"),
            )
        },
        None => Fix::new("port-in-use", reason).prepend(free),
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
            append: format!("systemctl enable --now {unit}\n"),
            ..Fix::new(
                "service-not-running",
                format!("{unit} is installed but not running or not enabled"),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::failure::FailedCheck;

    fn diagnose_t(code: &str, failure: &Failure) -> Option<Fix> {
        static INDEX: OnceLock<CommandIndex> = OnceLock::new();
        let commands = INDEX.get_or_init(|| {
            CommandIndex::from_pairs(
                [
                    ("dig", "dnsutils"),
                    ("jq", "jq"),
                    ("mkpasswd", "whois"),
                    ("", "nginx"),
                ],
                "bookworm",
            )
        });
        diagnose(code, failure, &Knowledge { commands })
    }

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
        let fix = diagnose_t("#!/bin/bash\nset -e\ndig example.org\n", &f).unwrap();
        assert_eq!(fix.rule, "command-not-found");
        assert!(fix.prepend.contains("apt-get install -y -qq dnsutils"));
        let fixed = fix.apply("#!/bin/bash\nset -e\ndig example.org\n");
        assert!(
            fixed.starts_with("#!/bin/bash\nset -e\ncommand -v dig"),
            "{fixed}"
        );
        assert!(fixed.ends_with("dig example.org\n"));
        // Once applied, the same rule does not fire again on the fixed code.
        assert_eq!(diagnose_t(&fixed, &f), None);
        // dash says it differently.
        let f = failure("/tmp/s: 4: jq: not found\n");
        assert!(diagnose_t("jq .", &f).unwrap().prepend.contains(" jq;"));
        // An unknown command is left to the model.
        assert_eq!(
            diagnose_t("x", &failure("frobnicate: command not found\n")),
            None
        );
    }

    #[test]
    fn other_signatures() {
        let fix = diagnose_t(
            "x",
            &failure("sh: 1: cannot create /etc/app/app.conf: Directory nonexistent\n"),
        )
        .unwrap();
        assert_eq!(fix.prepend, "mkdir -p /etc/app\n");
        let fix = diagnose_t(
            "x",
            &failure("tee: /srv/www/index.html: No such file or directory\n"),
        )
        .unwrap();
        assert_eq!(fix.prepend, "mkdir -p /srv/www\n");
        let fix = diagnose_t(
            "x",
            &failure(
                "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 12\n",
            ),
        )
        .unwrap();
        assert_eq!(fix.rule, "apt-lock");
        let fix = diagnose_t("x", &failure("chown: invalid user: ‘app:app’\n")).unwrap();
        assert!(fix
            .prepend
            .contains("useradd --system --no-create-home --shell /usr/sbin/nologin app\n"));
    }

    #[test]
    fn port_in_use_frees_the_port_before_the_code_runs() {
        let code = "#!/bin/bash\nset -euo pipefail\nnginx\n";
        let f =
            failure("nginx: [emerg] bind() to 0.0.0.0:8080 failed (98: Address already in use)\n");
        let fix = diagnose_t(code, &f).unwrap();
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
        assert_eq!(diagnose_t(&fixed, &f), None, "applied once");
        // HAProxy and Node name the port after the message.
        let haproxy = failure("[ALERT] (9) : Starting frontend web: cannot bind socket (Address already in use) [0.0.0.0:80]\n");
        assert!(diagnose_t("x", &haproxy)
            .unwrap()
            .prepend
            .contains("sport = :80'"));
        let node = failure("Error: listen EADDRINUSE: address already in use :::3000\n");
        assert!(diagnose_t("x", &node)
            .unwrap()
            .prepend
            .contains("sport = :3000'"));
        let sshd = failure("Bind to port 2222 on 0.0.0.0 failed: Address already in use.\n");
        assert!(diagnose_t("x", &sshd)
            .unwrap()
            .prepend
            .contains("sport = :2222'"));
        // No port named, or the port SSH answers on: left to the model.
        assert_eq!(
            diagnose_t(
                "x",
                &failure("OSError: [Errno 98] Address already in use\n")
            ),
            None
        );
        assert_eq!(
            diagnose_t(
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
        assert!(diagnose_t("apt-get install -y nginx", &f).is_none());
        f.journal = "--- nginx.service on web1 ---\n\
             nginx: [emerg] bind() to 0.0.0.0:8080 failed (98: Address already in use)\n"
            .into();
        let code = "apt-get install -y nginx\n";
        let fix = diagnose_t(code, &f).expect("a fix");
        assert_eq!(fix.rule, "port-in-use");
        // Freed right before the line that installs the failing service.
        assert!(fix.prepend.is_empty(), "{}", fix.prepend);
        assert_eq!(fix.inserts[0].before, "apt-get install -y nginx");
        let fixed = fix.apply(code);
        assert!(fixed.contains("sport = :8080"), "{fixed}");
        assert!(
            fixed.ends_with("done\napt-get install -y nginx\n"),
            "{fixed}"
        );
        assert_eq!(diagnose_t(&fixed, &f), None, "applied once");
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
        let fix = diagnose_t("apt-get install -y nginx\n", &f).unwrap();
        assert_eq!(fix.append, "systemctl enable --now nginx\n");
    }
}
