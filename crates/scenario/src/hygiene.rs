//! Hygiene: what infrastructure code leaves behind that a careful engineer would
//! not — stray files in temporary and home folders, private keys in odd places,
//! failed units — and forceful commands in the code itself.
//!
//! Files are found by the change detector that judges idempotence: a
//! snapshot before the first step, one at the end, compared by content. Nodes
//! whose disk the host cannot read are scanned on the node by modification
//! time instead.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};

use rehearse_runner::changes::{compare, ChangeKind, Detector, Scope, Snapshot};
use rehearse_sandbox::{ClusterState, Engine, ExecRequest};
use rehearse_spec::scenario::{Scenario, StepAction};

/// Where the run leaves its marker before the first step: files newer than it
/// were written by the steps.
pub const MARKER: &str = "/run/rehearse/run-started";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    LeftoverFile,
    PrivateKey,
    FailedUnit,
    ForcefulCommand,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The node, or empty for findings in the scenario's code.
    pub node: String,
    /// The file (on the node, or `path:line` in the scenario).
    pub location: String,
    pub detail: String,
}

/// The on-node scan for nodes the host cannot read: one shell script, one exec per node.
const NODE_SCAN: &str = r#"
m=/run/rehearse/run-started
[ -e "$m" ] || exit 0
find /tmp /var/tmp /root /home -xdev -newer "$m" \( -type f -o -type l \) 2>/dev/null \
  | grep -v -E '^/root/\.ssh/known_hosts$|^/root/\.ansible/|^/root/\.cache/' | sed 's/^/LEFTOVER /'
for d in /etc /root /home /srv /opt /var /tmp /usr/local; do [ -d "$d" ] && echo "$d"; done \
  | xargs -r -I{} find {} -xdev \( -path /var/lib/dpkg -o -path /var/cache -o -path /var/lib/apt -o -path /var/log/journal \) -prune \
    -o -type f -newer "$m" -size -64k -print 2>/dev/null \
  | xargs -r grep -l -s -I -E -- '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' 2>/dev/null \
  | grep -v -E '^/etc/ssh/ssh_host_[a-z0-9]+_key$|^/root/\.ssh/id_[a-z0-9]+$|^/home/[^/]+/\.ssh/id_[a-z0-9]+$|^/etc/ssl/private/' \
  | sed 's/^/KEY /'
systemctl --failed --no-legend --plain 2>/dev/null | awk '{print "FAILED " $1}'
"#;

/// Creates the marker on a node (before the first step).
pub fn mark(
    engine: &Engine,
    cluster: &str,
    node: &str,
) -> Result<(), rehearse_sandbox::SandboxError> {
    engine.exec_capture(
        cluster,
        node,
        &ExecRequest::shell(&format!("mkdir -p /run/rehearse && touch {MARKER}")),
    )?;
    Ok(())
}

/// Where hygiene looks for files: temporary and home folders, and where keys
/// should not be.
const SCOPE: &[&str] = &[
    "/tmp",
    "/var/tmp",
    "/root",
    "/home",
    "/etc",
    "/srv",
    "/opt",
    "/var",
    "/usr/local",
];
const LEFTOVER_ROOTS: &[&str] = &["/tmp/", "/var/tmp/", "/root/", "/home/"];

/// Files as they were before the first step.
pub fn baseline(engine: &Engine, cluster: &ClusterState) -> Snapshot {
    Detector::new(engine, cluster).snapshot(None, &Scope::under(SCOPE))
}

/// What the steps left behind: files by comparing with `base`, failed units
/// by asking each node; nodes `base` could not see are scanned on the node.
pub fn scan(engine: &Engine, cluster: &ClusterState, base: Option<&Snapshot>) -> Vec<Finding> {
    let empty = Snapshot::default();
    let (base, end) = match base {
        Some(base) => (
            base,
            Detector::new(engine, cluster).snapshot(Some(base), &Scope::under(SCOPE)),
        ),
        None => (&empty, Snapshot::default()),
    };
    let changes = compare(base, &end);
    let allowed_key = Regex::new(
        r"^/etc/ssh/ssh_host_[a-z0-9]+_key$|^/root/\.ssh/id_[a-z0-9]+$|^/home/[^/]+/\.ssh/id_[a-z0-9]+$|^/etc/ssl/private/",
    )
    .expect("valid pattern");
    let per_node: Vec<Vec<Finding>> = std::thread::scope(|s| {
        let handles: Vec<_> = cluster
            .nodes
            .iter()
            .map(|n| {
                let (changes, end, allowed_key, base) = (&changes, &end, &allowed_key, base);
                s.spawn(move || {
                    if !end.covers(&n.name) || !base.covers(&n.name) {
                        return scan_node(engine, &cluster.id, &n.name, NODE_SCAN);
                    }
                    let keys = end.private_keys(&n.name);
                    let mut findings = Vec::new();
                    for c in changes.iter().filter(|c| {
                        c.node == n.name
                            && matches!(c.kind, ChangeKind::Added | ChangeKind::Modified)
                            && !c.summary.starts_with("folder")
                    }) {
                        if LEFTOVER_ROOTS.iter().any(|r| c.path.starts_with(r)) {
                            findings.push(finding(FindingKind::LeftoverFile, &n.name, &c.path));
                        }
                        if keys.contains(&c.path) && !allowed_key.is_match(&c.path) {
                            findings.push(finding(FindingKind::PrivateKey, &n.name, &c.path));
                        }
                    }
                    findings.extend(scan_node(engine, &cluster.id, &n.name, UNITS_SCAN));
                    findings
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    per_node.into_iter().flatten().collect()
}

const UNITS_SCAN: &str =
    "systemctl --failed --no-legend --plain 2>/dev/null | awk '{print \"FAILED \" $1}'";

fn finding(kind: FindingKind, node: &str, path: &str) -> Finding {
    let detail = match kind {
        FindingKind::LeftoverFile => "left in a temporary or home folder",
        FindingKind::PrivateKey => "private key written outside the usual key locations",
        FindingKind::FailedUnit => "systemd unit failed",
        FindingKind::ForcefulCommand => "",
    };
    Finding {
        kind,
        node: node.to_string(),
        location: path.to_string(),
        detail: detail.to_string(),
    }
}

/// Scans a node for what the steps left behind, on the node.
fn scan_node(engine: &Engine, cluster: &str, node: &str, script: &str) -> Vec<Finding> {
    let mut req = ExecRequest::shell(script);
    req.timeout = Some(std::time::Duration::from_secs(60));
    let Ok((_, out, _)) = engine.exec_capture(cluster, node, &req) else {
        return Vec::new();
    };
    out.lines()
        .filter_map(|line| {
            let (tag, rest) = line.split_once(' ')?;
            let (kind, detail) = match tag {
                "LEFTOVER" => (
                    FindingKind::LeftoverFile,
                    "left in a temporary or home folder",
                ),
                "KEY" => (
                    FindingKind::PrivateKey,
                    "private key written outside the usual key locations",
                ),
                "FAILED" => (FindingKind::FailedUnit, "systemd unit failed"),
                _ => return None,
            };
            Some(Finding {
                kind,
                node: node.to_string(),
                location: rest.to_string(),
                detail: detail.to_string(),
            })
        })
        .collect()
}

/// Patterns of forceful commands, and why each is worth a look.
fn forceful_patterns() -> Vec<(Regex, &'static str)> {
    [
        (r"\brm\s+(-[a-zA-Z]*r[a-zA-Z]*f|-[a-zA-Z]*f[a-zA-Z]*r|-r\s+-f|-f\s+-r)\b", "rm -rf: deletes without asking; is the path always what you think?"),
        (r"\bkill\s+(-9|-KILL|-s\s+KILL)\b|\bSIGKILL\b|\bpkill\s+-9\b|\bkillall\s+-9\b", "kill -9: no clean shutdown; stop the service instead"),
        (r"(^|\s)--force(\s|$|=)|\s-f\s+--yes\b|--force-yes", "--force: overrides a safety check"),
        (r"\biptables\s+(-F|--flush)\b|\bnft\s+flush\s+ruleset\b|\bufw\s+(--force\s+)?reset\b|\bufw\s+disable\b", "firewall flush: removes every rule, including ones you did not write"),
        (r"\bchmod\s+(-R\s+)?0?777\b", "chmod 777: world-writable"),
        (r"\bcurl\b[^|\n]*\|\s*(sudo\s+)?(ba|z)?sh\b|\bwget\b[^|\n]*\|\s*(sudo\s+)?(ba)?sh\b", "pipes a download into a shell"),
    ]
    .into_iter()
    .map(|(re, why)| (Regex::new(re).expect("valid pattern"), why))
    .collect()
}

/// Scans the scenario's own code (scripts, playbooks and what sits beside them).
pub fn scan_code(scenario: &Scenario) -> Vec<Finding> {
    let patterns = forceful_patterns();
    let mut findings = Vec::new();
    let mut files: Vec<(String, String)> = Vec::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        match &step.action {
            StepAction::Shell { script, file } => {
                let name = file
                    .as_ref()
                    .map(|f| display(f, &scenario.dir))
                    .unwrap_or_else(|| format!("steps[{i}] (inline)"));
                files.push((name, script.clone()));
            }
            StepAction::Ansible { playbook, .. } => {
                let root = playbook.parent().unwrap_or(&scenario.dir).to_path_buf();
                for path in walk(&root) {
                    let ext = path
                        .extension()
                        .and_then(|e| e.to_str())
                        .unwrap_or_default();
                    if matches!(ext, "yml" | "yaml" | "j2" | "sh") {
                        if let Ok(text) = std::fs::read_to_string(&path) {
                            files.push((display(&path, &scenario.dir), text));
                        }
                    }
                }
            }
            StepAction::Copy { .. } => {}
        }
    }
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    for (name, text) in files {
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            for (re, why) in &patterns {
                if re.is_match(line) {
                    findings.push(Finding {
                        kind: FindingKind::ForcefulCommand,
                        node: String::new(),
                        location: format!("{name}:{}", n + 1),
                        detail: format!("{}: {why}", line.trim()),
                    });
                }
            }
        }
    }
    findings
}

fn display(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if out.len() < 2000 {
                    stack.push(path);
                }
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forceful_patterns_catch_the_usual_suspects_and_not_their_neighbours() {
        let p = forceful_patterns();
        let hit = |line: &str| p.iter().any(|(re, _)| re.is_match(line));
        for bad in [
            "rm -rf /var/www",
            "rm -fr x",
            "kill -9 1234",
            "apt-get install --force-yes x",
            "iptables -F",
            "nft flush ruleset",
            "curl -fsSL x | sh",
            "chmod -R 777 /srv",
        ] {
            assert!(hit(bad), "{bad} not flagged");
        }
        for fine in [
            "rm -f /etc/nginx/sites-enabled/default",
            "kill -HUP 12",
            "systemctl restart nginx",
            "nft -f /etc/nftables.conf",
            "curl -fsS http://lb/",
        ] {
            assert!(!hit(fine), "{fine} flagged");
        }
    }
}
