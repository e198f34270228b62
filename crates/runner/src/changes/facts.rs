//! Changes folded into what they mean: packages installed or removed, users and
//! groups added, units enabled or disabled.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Change, ChangeKind};

const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// A path's whole text before and after, when both are text.
pub(crate) type Texts<'a> = &'a dyn Fn(&str) -> Option<(Arc<str>, Arc<str>)>;

/// Rewrites file changes that have a meaning of their own.
/// `texts` gives a path's whole text before and after, when both are text.
pub(crate) fn fold(node: &str, changes: Vec<Change>, texts: Texts<'_>) -> Vec<Change> {
    let packages = changes
        .iter()
        .find(|c| c.path == DPKG_STATUS && c.kind == ChangeKind::Modified)
        .and_then(|c| texts(&c.path))
        .and_then(|(b, a)| package_changes(&b, &a));
    let mut out = Vec::new();
    for mut c in changes {
        if c.path.starts_with("/var/lib/dpkg/") && packages.is_some() {
            // Folded into the package line below.
            continue;
        }
        match c.path.as_str() {
            "/etc/passwd" | "/etc/group" if c.kind == ChangeKind::Modified => {
                let (kind, what) = if c.path == "/etc/passwd" {
                    (ChangeKind::Users, "user")
                } else {
                    (ChangeKind::Groups, "group")
                };
                if let Some(summary) =
                    texts(&c.path).and_then(|(b, a)| account_changes(&b, &a, what))
                {
                    c.kind = kind;
                    c.summary = summary;
                }
            }
            _ => {}
        }
        if let Some(unit) = unit_link(&c.path) {
            match c.kind {
                ChangeKind::Added => {
                    c.kind = ChangeKind::Unit;
                    c.summary = format!("unit enabled: {unit}");
                }
                ChangeKind::Removed => {
                    c.kind = ChangeKind::Unit;
                    c.summary = format!("unit disabled: {unit}");
                }
                _ => {}
            }
        }
        out.push(c);
    }
    if let Some(summary) = packages {
        out.push(Change {
            node: node.to_string(),
            path: DPKG_STATUS.into(),
            kind: ChangeKind::Packages,
            summary,
            diff: None,
            allowed_by: None,
        });
    }
    out
}

/// `nginx.service (wanted by multi-user.target)` for a link in a `.wants` folder.
fn unit_link(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/etc/systemd/system/")?;
    let (dir, unit) = rest.split_once('/')?;
    let (target, how) = dir
        .strip_suffix(".wants")
        .map(|t| (t, "wanted"))
        .or_else(|| dir.strip_suffix(".requires").map(|t| (t, "required")))?;
    Some(format!("{unit} ({how} by {target})"))
}

/// Installed packages and versions in a dpkg status text.
fn installed(status: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stanza in status.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim))
        };
        if let (Some(pkg), Some(st)) = (field("Package:"), field("Status:")) {
            if st.ends_with(" installed") {
                out.insert(pkg.to_string(), field("Version:").unwrap_or("").to_string());
            }
        }
    }
    out
}

fn package_changes(before: &str, after: &str) -> Option<String> {
    let (b, a) = (installed(before), installed(after));
    let mut parts = Vec::new();
    for (pkg, v) in &a {
        match b.get(pkg) {
            None => parts.push(format!("installed {pkg} {v}")),
            Some(old) if old != v => parts.push(format!("upgraded {pkg} {old} → {v}")),
            _ => {}
        }
    }
    for pkg in b.keys().filter(|p| !a.contains_key(*p)) {
        parts.push(format!("removed {pkg}"));
    }
    (!parts.is_empty()).then(|| format!("packages: {}", parts.join(", ")))
}

fn account_changes(before: &str, after: &str, what: &str) -> Option<String> {
    let names = |text: &str| -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(n, _)| (n.to_string(), l.to_string()))
            })
            .collect()
    };
    let (b, a) = (names(before), names(after));
    let mut parts = Vec::new();
    for (n, line) in &a {
        match b.get(n) {
            None => parts.push(format!("{what} added: {n}")),
            Some(old) if old != line => parts.push(format!("{what} changed: {n}")),
            _ => {}
        }
    }
    for n in b.keys().filter(|n| !a.contains_key(*n)) {
        parts.push(format!("{what} removed: {n}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_links_name_the_unit_and_its_target() {
        assert_eq!(
            unit_link("/etc/systemd/system/multi-user.target.wants/nginx.service").as_deref(),
            Some("nginx.service (wanted by multi-user.target)")
        );
        assert_eq!(unit_link("/etc/systemd/system/nginx.service"), None);
    }

    #[test]
    fn accounts_added_and_changed_are_named() {
        let before = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n";
        let after = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/srv:/bin/bash\ndb:x:1001:1001::/var/lib/db:/bin/sh\n";
        assert_eq!(
            account_changes(before, after, "user").as_deref(),
            Some("user changed: app, user added: db")
        );
    }
}

#[cfg(test)]
mod package_tests {
    use super::*;

    #[test]
    fn packages_installed_upgraded_and_removed_are_named() {
        let stanza = |p: &str, v: &str| {
            format!(
                "Package: {p}\nStatus: install ok installed\nPriority: optional\nVersion: {v}\n"
            )
        };
        let before = format!("{}\n{}", stanza("jq", "1.6"), stanza("curl", "7"));
        let after = format!("{}\n{}", stanza("jq", "1.7"), stanza("nginx", "1.22"));
        assert_eq!(
            package_changes(&before, &after).as_deref(),
            Some("packages: upgraded jq 1.6 → 1.7, installed nginx 1.22, removed curl")
        );
        assert_eq!(package_changes(&before, &before), None);
    }
}
