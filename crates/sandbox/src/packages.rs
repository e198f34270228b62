//! The host packages rehearse needs, from `host-packages.txt`: the list
//! `scripts/setup.sh` installs and verifies, built into `rehearse doctor`.
//!
//! A package counts as present only when dpkg has it installed and every
//! tool it provides is on PATH. When one is missing, the check says why where
//! apt knows: the install that removed it (apt's history) and what installing
//! it again would remove (apt's simulation).

use std::process::Command;

use serde::Serialize;

/// The list, as shipped with this build.
pub const LIST: &str = include_str!("../host-packages.txt");

/// What a package is needed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Need {
    /// Clusters cannot start without it.
    Cluster,
    /// Ansible steps.
    Steps,
    /// Link impairments on kernels without netem.
    Faults,
    /// VM nodes.
    Vm,
    /// Importing OCI images (`rehearse image import`).
    Import,
    /// The run store on a PostgreSQL server.
    Store,
    /// Building rehearse from source.
    Build,
    /// The test suite only.
    Test,
}

impl Need {
    fn parse(s: &str) -> Option<Need> {
        Some(match s {
            "cluster" => Need::Cluster,
            "steps" => Need::Steps,
            "faults" => Need::Faults,
            "vm" => Need::Vm,
            "import" => Need::Import,
            "store" => Need::Store,
            "build" => Need::Build,
            "test" => Need::Test,
            _ => return None,
        })
    }

    /// What goes without it, for a warning.
    fn without(self) -> &'static str {
        match self {
            Need::Cluster => "clusters cannot start",
            Need::Steps => "Ansible steps fail",
            Need::Faults => "link latency falls back or is refused on kernels without netem",
            Need::Vm => "VM nodes (backend: vm) cannot start",
            Need::Import => "OCI images cannot be imported",
            Need::Store => "the run store cannot live on PostgreSQL",
            Need::Build => "rehearse cannot be built from source",
            Need::Test => "the test suite cannot run",
        }
    }
}

/// One line of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    pub need: Need,
    pub tools: Vec<String>,
    pub why: String,
}

/// Every package of the list, in its order.
pub fn all() -> Vec<Package> {
    parse(LIST).expect("host-packages.txt is well-formed (a unit test checks it)")
}

/// Parses the list; an error names the line.
pub fn parse(text: &str) -> Result<Vec<Package>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(name), Some(need), Some(tools)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "line {}: expected `package need tools why`, found `{line}`",
                n + 1
            ));
        };
        let need = Need::parse(need).ok_or_else(|| {
            format!(
                "line {}: need `{need}` is none of cluster, steps, faults, vm, import, store, build, test",
                n + 1
            )
        })?;
        let tools = if tools == "-" {
            Vec::new()
        } else {
            tools.split(',').map(str::to_string).collect()
        };
        out.push(Package {
            name: name.to_string(),
            need,
            tools,
            why: fields.collect::<Vec<_>>().join(" "),
        });
    }
    Ok(out)
}

/// The package a host tool comes from, for "install X" hints.
pub fn package_of(tool: &str) -> Option<String> {
    all()
        .into_iter()
        .find(|p| p.tools.iter().any(|t| t == tool))
        .map(|p| p.name)
}

/// What was found for one package.
#[derive(Debug, Clone, Serialize)]
pub struct Presence {
    pub package: Package,
    /// The installed version, when dpkg has it installed.
    pub version: Option<String>,
    /// Tools of the package that are not on PATH.
    pub missing_tools: Vec<String>,
    /// Why it is missing, where apt can tell.
    pub why_missing: Option<String>,
}

impl Presence {
    pub fn ok(&self) -> bool {
        self.version.is_some() && self.missing_tools.is_empty()
    }

    pub fn detail(&self) -> String {
        let tools = self.package.tools.join(", ");
        match (&self.version, self.missing_tools.is_empty()) {
            (Some(v), true) if tools.is_empty() => v.clone(),
            (Some(v), true) => format!("{v}: {tools}"),
            (Some(v), false) => format!(
                "{v} installed, but {} not on PATH ({})",
                self.missing_tools.join(", "),
                self.package.why
            ),
            (None, _) => {
                let mut d = format!(
                    "not installed: {} ({})",
                    self.package.need.without(),
                    self.package.why
                );
                if let Some(why) = &self.why_missing {
                    d.push_str("; ");
                    d.push_str(why);
                }
                d
            }
        }
    }

    pub fn fix(&self) -> Option<String> {
        let name = &self.package.name;
        match (&self.version, self.missing_tools.is_empty()) {
            (Some(_), true) => None,
            (Some(_), false) => Some(format!(
                "put the folder of {} on PATH, or reinstall it: apt-get install --reinstall {name}",
                self.missing_tools.join(", ")
            )),
            (None, _) => Some(format!("apt-get install {name}")),
        }
    }
}

/// Checks the packages of the list whose need `include` accepts.
pub fn check(include: impl Fn(Need) -> bool) -> Vec<Presence> {
    let wanted: Vec<Package> = all().into_iter().filter(|p| include(p.need)).collect();
    let versions = installed_versions(wanted.iter().map(|p| p.name.as_str()));
    let mut history = None;
    wanted
        .into_iter()
        .map(|package| {
            let version = versions
                .iter()
                .find(|(n, _)| *n == package.name)
                .map(|(_, v)| v.clone());
            let missing_tools = package
                .tools
                .iter()
                .filter(|t| crate::host::which(t).is_none())
                .cloned()
                .collect();
            let why_missing = version.is_none().then(|| {
                let history = history.get_or_insert_with(|| {
                    std::fs::read_to_string(APT_HISTORY).unwrap_or_default()
                });
                why_missing(&package.name, history)
            });
            Presence {
                package,
                version,
                missing_tools,
                why_missing: why_missing.flatten(),
            }
        })
        .collect()
}

const APT_HISTORY: &str = "/var/log/apt/history.log";

/// dpkg's and apt's own tools, from PATH or where Debian puts them: whether a
/// package is installed does not depend on the caller's PATH.
fn debian_tool(name: &str) -> std::path::PathBuf {
    crate::host::which(name).unwrap_or_else(|| std::path::Path::new("/usr/bin").join(name))
}

/// (package, version) of every named package dpkg has installed.
fn installed_versions<'a>(names: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    let Ok(out) = Command::new(debian_tool("dpkg-query"))
        .arg("-W")
        .arg("-f=${Package}\t${Status}\t${Version}\n")
        .args(names)
        .output()
    else {
        return Vec::new();
    };
    // dpkg-query exits 1 when some package is unknown; what it printed holds.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (name, status, version) = (f.next()?, f.next()?, f.next()?);
            status
                .ends_with(" installed")
                .then(|| (name.to_string(), version.to_string()))
        })
        .collect()
}

/// Why a package is not installed: the last removal apt or dpkg logged,
/// and what installing it now would remove.
fn why_missing(package: &str, apt_history: &str) -> Option<String> {
    let mut reasons = Vec::new();
    let dpkg_log = std::fs::read_to_string(DPKG_LOG).unwrap_or_default();
    if let Some(removed) = last_removal(package, apt_history, &dpkg_log) {
        reasons.push(removed);
    }
    if let Some(conflict) = install_would_remove(package) {
        reasons.push(conflict);
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

const DPKG_LOG: &str = "/var/log/dpkg.log";

/// The last removal of `package`: apt's run that removed it (from apt's
/// history.log), or, when dpkg's log has a later one, dpkg's.
pub fn last_removal(package: &str, apt_history: &str, dpkg_log: &str) -> Option<String> {
    let by_apt = removed_by(package, apt_history);
    let by_dpkg = dpkg_log
        .lines()
        .rev()
        .find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 4
                && (f[2] == "remove" || f[2] == "purge")
                && f[3].split(':').next() == Some(package)
        })
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
    match (by_apt, by_dpkg) {
        // dpkg logs apt's own removals too, between its run's start and end.
        (Some((apt_end, _)), Some(dpkg_date)) if dpkg_date > apt_end => {
            Some(dpkg_removed(&dpkg_date))
        }
        (Some((_, apt)), _) => Some(apt),
        (None, Some(dpkg_date)) => Some(dpkg_removed(&dpkg_date)),
        (None, None) => None,
    }
}

fn dpkg_removed(date: &str) -> String {
    format!("dpkg removed it on {date}, outside any apt run in apt's history (a `dpkg --remove`, a maintainer script or an apt hook)")
}

/// The last apt run in `history` (apt's history.log) that removed or purged
/// `package`: its end (as `YYYY-MM-DD HH:MM:SS`) and "apt removed it on
/// DATE while running `COMMAND`".
fn removed_by(package: &str, history: &str) -> Option<(String, String)> {
    let names_it = |list: &str| {
        list.split("), ").any(|item| {
            let name = item.trim().split([':', ' ']).next().unwrap_or("");
            name == package
        })
    };
    history
        .split("\n\n")
        .filter(|entry| {
            entry.lines().any(|l| {
                l.strip_prefix("Remove: ")
                    .or_else(|| l.strip_prefix("Purge: "))
                    .is_some_and(names_it)
            })
        })
        .last()
        .map(|entry| {
            let field = |key: &str| {
                entry
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(str::trim)
                    .unwrap_or("?")
                    .to_string()
            };
            let date = |key: &str| field(key).split_whitespace().collect::<Vec<_>>().join(" ");
            let told = format!(
                "apt removed it on {} while running `{}`",
                date("Start-Date:"),
                field("Commandline:")
            );
            (date("End-Date:"), told)
        })
}

/// What `apt-get install PACKAGE` would remove, or why it cannot install it,
/// from apt's simulation (which changes nothing).
fn install_would_remove(package: &str) -> Option<String> {
    let out = Command::new(debian_tool("apt-get"))
        .args(["install", "-s", "-qq", "--no-install-recommends", package])
        .env("LC_ALL", "C")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let removed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let why: Vec<&str> = text
            .lines()
            .chain(err.lines())
            .map(str::trim)
            .filter(|l| {
                l.contains("Depends:")
                    || l.contains("Conflicts:")
                    || l.contains("Breaks:")
                    || l.starts_with("E:")
            })
            .collect();
        return (!why.is_empty()).then(|| format!("apt cannot install it: {}", why.join(" ")));
    }
    (!removed.is_empty()).then(|| {
        format!(
            "installing it would remove {} (they conflict)",
            removed.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_list_parses_and_names_each_package_once() {
        let list = parse(LIST).unwrap();
        assert!(list.len() > 10);
        let mut names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), list.len(), "a package is listed twice");
        for tool in ["systemd-nspawn", "qemu-img", "nft", "mmdebstrap"] {
            assert!(package_of(tool).is_some(), "no package provides {tool}");
        }
        assert_eq!(package_of("qemu-img").as_deref(), Some("qemu-utils"));
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = parse("# c\nfoo cluster\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("foo sometimes bar why\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("sometimes"), "{e}");
    }

    #[test]
    fn apt_history_tells_which_install_removed_a_package() {
        let history = "Start-Date: 2026-09-22  04:51:26\nCommandline: apt-get install qemu-utils\nInstall: qemu-utils:amd64 (1:10.0.2)\nEnd-Date: 2026-09-22  04:51:29\n\n\
Start-Date: 2026-12-03  23:41:50\nCommandline: apt-get install -y qemu-system-x86 kmod\nInstall: kmod:amd64 (30), qemu-system-x86:amd64 (1:7.2)\nRemove: qemu-utils:amd64 (1:10.0.2+ds-2)\nEnd-Date: 2026-12-03  23:42:02\n";
        let why = last_removal("qemu-utils", history, "").unwrap();
        assert!(
            why.contains("2026-12-03 23:41:50")
                && why.contains("apt-get install -y qemu-system-x86 kmod"),
            "{why}"
        );
        assert_eq!(last_removal("qemu", history, ""), None);
        assert_eq!(last_removal("kmod", history, ""), None);
        // dpkg logs apt's removals too: the same one is apt's.
        let dpkg = "2026-12-03 23:41:55 remove qemu-utils:amd64 1:10.0.2 <none>\n";
        let why = last_removal("qemu-utils", history, dpkg).unwrap();
        assert!(why.starts_with("apt removed it"), "{why}");
        // A later removal outside apt is the one told.
        let dpkg = "2026-12-03 23:41:55 remove qemu-utils:amd64 1:10.0.2 <none>\n\
2026-12-04 00:10:00 status installed qemu-utils:amd64 1:7.2\n\
2026-12-04 00:12:13 remove qemu-utils:amd64 1:7.2 <none>\n";
        let why = last_removal("qemu-utils", history, dpkg).unwrap();
        assert!(
            why.contains("dpkg removed it on 2026-12-04 00:12:13"),
            "{why}"
        );
    }
}
