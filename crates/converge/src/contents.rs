//! Which Debian package provides a command, from the archive's Contents
//! indexes (what `apt-file` reads): every file of every package of a suite's
//! `main`, of which the doctor keeps the commands (`bin/` and `sbin/` files).
//!
//! The indexes are fetched once per suite through the host's package cache
//! when it runs (straight from the archive otherwise) and kept under the
//! state directory as a small command → package table. When they cannot be
//! had, a short built-in table stands in, and the doctor says so.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The archive the indexes come from.
const ARCHIVE: &str = "http://deb.debian.org/debian";
/// The suite of the default image.
pub const DEFAULT_SUITE: &str = "bookworm";

/// Commands minbase images lack, for when no index can be had.
const FALLBACK: &[(&str, &str)] = &[
    ("curl", "curl"),
    ("dig", "bind9-dnsutils"),
    ("gpg", "gnupg"),
    ("ip", "iproute2"),
    ("jq", "jq"),
    ("mkpasswd", "whois"),
    ("nc", "netcat-openbsd"),
    ("ss", "iproute2"),
    ("sudo", "sudo"),
    ("wget", "wget"),
];

/// Where the answers come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Debian's Contents indexes of this suite.
    Contents { suite: String },
    /// The built-in table, because the indexes could not be had.
    Fallback { why: String },
}

/// A command → package table.
#[derive(Clone, Debug)]
pub struct CommandIndex {
    commands: HashMap<String, String>,
    /// Every package name the indexes mention.
    packages: std::collections::HashSet<String>,
    pub source: Source,
}

impl CommandIndex {
    /// The built-in table, with why the indexes are not used.
    pub fn fallback(why: impl Into<String>) -> CommandIndex {
        CommandIndex {
            commands: FALLBACK
                .iter()
                .map(|(c, p)| (c.to_string(), p.to_string()))
                .collect(),
            packages: FALLBACK.iter().map(|(_, p)| p.to_string()).collect(),
            source: Source::Fallback { why: why.into() },
        }
    }

    /// A table from `(command, package)` pairs, for tests and the cache file.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        suite: &str,
    ) -> CommandIndex {
        let mut index = CommandIndex {
            commands: HashMap::new(),
            packages: Default::default(),
            source: Source::Contents {
                suite: suite.into(),
            },
        };
        for (command, package) in pairs {
            if command.is_empty() {
                index.packages.insert(package.to_owned());
            } else {
                index.packages.insert(package.to_owned());
                index
                    .commands
                    .insert(command.to_owned(), package.to_owned());
            }
        }
        index
    }

    /// The package that provides `command`.
    pub fn package_for(&self, command: &str) -> Option<&str> {
        self.commands.get(command).map(String::as_str)
    }

    /// Whether the suite has a package of this name (with files).
    pub fn has_package(&self, package: &str) -> bool {
        self.packages.contains(package)
    }

    /// How the answers were had, for a fix's reason.
    pub fn provenance(&self) -> String {
        match &self.source {
            Source::Contents { suite } => format!("Debian {suite}'s Contents index"),
            Source::Fallback { why } => {
                format!("the doctor's built-in fallback table, since Debian's Contents index is unavailable ({why})")
            }
        }
    }

    /// The index of `suite`, from the cache under `state_dir` or fetched
    /// (once per process and suite); the fallback when neither works.
    pub fn load(state_dir: &Path, suite: &str) -> Arc<CommandIndex> {
        static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<CommandIndex>>>> = OnceLock::new();
        let key = state_dir.join(suite);
        let mut loaded = LOADED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(index) = loaded.get(&key) {
            return Arc::clone(index);
        }
        let index = Arc::new(match load_or_fetch(state_dir, suite) {
            Ok(index) => index,
            Err(why) => {
                tracing::warn!(suite, "Debian's Contents index is unavailable: {why}");
                CommandIndex::fallback(why)
            }
        });
        loaded.insert(key, Arc::clone(&index));
        index
    }
}

fn cache_file(state_dir: &Path, suite: &str) -> PathBuf {
    state_dir
        .join("doctor")
        .join(format!("commands-{suite}-amd64.tsv"))
}

fn load_or_fetch(state_dir: &Path, suite: &str) -> Result<CommandIndex, String> {
    if !suite.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || suite.is_empty() {
        return Err(format!("{suite:?} is not a Debian suite name"));
    }
    let file = cache_file(state_dir, suite);
    if let Ok(text) = std::fs::read_to_string(&file) {
        let index =
            CommandIndex::from_pairs(text.lines().filter_map(|l| l.split_once('\t')), suite);
        if !index.packages.is_empty() {
            return Ok(index);
        }
    }
    let mut pairs: HashMap<String, String> = HashMap::new();
    let mut packages = std::collections::HashSet::new();
    for part in ["Contents-amd64.gz", "Contents-all.gz"] {
        let url = format!("{ARCHIVE}/dists/{suite}/main/{part}");
        let body = fetch(&url)?;
        read_contents(
            flate2::read::GzDecoder::new(body),
            &mut pairs,
            &mut packages,
        )
        .map_err(|e| format!("reading {url}: {e}"))?;
    }
    if pairs.is_empty() {
        return Err(format!("the {suite} Contents index lists no commands"));
    }
    // Saved whole-or-nothing: a half-written table must never be read.
    let mut text = String::new();
    let mut sorted: Vec<_> = pairs.iter().collect();
    sorted.sort();
    for (command, package) in sorted {
        text.push_str(&format!("{command}\t{package}\n"));
    }
    let mut listed: Vec<_> = packages.iter().collect();
    listed.sort();
    for package in listed {
        text.push_str(&format!("\t{package}\n"));
    }
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let partial = file.with_extension(format!("tsv.{}", std::process::id()));
    if std::fs::write(&partial, &text).is_ok() {
        let _ = std::fs::rename(&partial, &file);
    }
    Ok(CommandIndex::from_pairs(
        text.lines().filter_map(|l| l.split_once('\t')),
        suite,
    ))
}

/// The body of `url`, through the host's package cache when it answers.
fn fetch(url: &str) -> Result<Box<dyn Read + Send>, String> {
    let cache = rehearse_sandbox::PackageCache::proxy_url();
    let cache_addr: Option<std::net::SocketAddr> = cache.trim_start_matches("http://").parse().ok();
    let through_cache = cache_addr.is_some_and(|a| {
        std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
    });
    let mut client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .connect_timeout(Duration::from_secs(10));
    client = if through_cache {
        client.proxy(reqwest::Proxy::http(&cache).map_err(|e| e.to_string())?)
    } else {
        client.no_proxy()
    };
    let response = client
        .build()
        .map_err(|e| e.to_string())?
        .get(url)
        .send()
        .map_err(|e| format!("fetching {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("fetching {url}: HTTP {}", response.status()));
    }
    Ok(Box::new(response))
}

/// Reads a Contents index (`path<spaces>section/package,section/package`),
/// keeping, per command, the package the doctor should install.
fn read_contents(
    reader: impl Read,
    pairs: &mut HashMap<String, String>,
    packages: &mut std::collections::HashSet<String>,
) -> std::io::Result<()> {
    // Per command: (rank of the path, package). Lower rank wins.
    let mut best: HashMap<String, (u8, String)> =
        pairs.drain().map(|(c, p)| (c, (u8::MAX - 1, p))).collect();
    for line in BufReader::new(reader).lines() {
        let line = line?;
        let Some((path, owners)) = line.rsplit_once(|c: char| c.is_whitespace()) else {
            continue;
        };
        let path = path.trim_end();
        for owner in owners.split(',') {
            let package = owner.rsplit('/').next().unwrap_or(owner);
            if !packages.contains(package) {
                packages.insert(package.to_owned());
            }
        }
        let Some((dir, name)) = path.rsplit_once('/') else {
            continue;
        };
        let rank = match dir {
            "usr/bin" | "bin" => 0,
            "usr/sbin" | "sbin" => 1,
            "usr/games" => 3,
            _ => continue,
        };
        for owner in owners.split(',') {
            let package = owner.rsplit('/').next().unwrap_or(owner);
            // A command of a package named after it beats others; then the
            // shorter package name (the plain tool, not an add-on).
            let rank = if package == name { rank } else { rank + 4 };
            let entry = best
                .entry(name.to_owned())
                .or_insert_with(|| (u8::MAX, String::new()));
            if (rank, package.len(), package) < (entry.0, entry.1.len(), entry.1.as_str()) {
                *entry = (rank, package.to_owned());
            }
        }
    }
    pairs.extend(best.into_iter().map(|(c, (_, p))| (c, p)));
    Ok(())
}

/// The package for a command a Debian alternative provides under another
/// name (`nc` is `nc.openbsd`): the variants' package, when there is one.
pub fn alternative<'a>(index: &'a CommandIndex, command: &str) -> Option<&'a str> {
    let prefix = format!("{command}.");
    let mut variants: Vec<(&String, &String)> = index
        .commands
        .iter()
        .filter(|(c, _)| c.starts_with(&prefix))
        .collect();
    variants.sort();
    variants.first().map(|(_, p)| p.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contents_index_gives_each_command_its_package() {
        let contents = "\
usr/bin/mkpasswd                                        net/whois
usr/bin/dig                                             net/bind9-dnsutils
usr/bin/nc.openbsd                                      net/netcat-openbsd
bin/nc.traditional                                      net/netcat-traditional
usr/sbin/nginx                                          httpd/nginx-core,httpd/nginx-light
usr/share/doc/jq/copyright                              utils/jq
usr/bin/jq                                              utils/jq
usr/bin/jq                                              utils/jq-extra
";
        let mut pairs = HashMap::new();
        let mut packages = Default::default();
        read_contents(contents.as_bytes(), &mut pairs, &mut packages).unwrap();
        let index = CommandIndex::from_pairs(
            pairs.iter().map(|(c, p)| (c.as_str(), p.as_str())),
            "bookworm",
        );
        assert_eq!(index.package_for("mkpasswd"), Some("whois"));
        assert_eq!(index.package_for("dig"), Some("bind9-dnsutils"));
        assert_eq!(index.package_for("jq"), Some("jq"));
        assert_eq!(index.package_for("nginx"), Some("nginx-core"));
        assert_eq!(index.package_for("copyright"), None);
        assert_eq!(alternative(&index, "nc"), Some("netcat-openbsd"));
        assert!(index.provenance().contains("bookworm"));
        let fallback = CommandIndex::fallback("no network");
        assert_eq!(fallback.package_for("mkpasswd"), Some("whois"));
        assert!(fallback.provenance().contains("no network"));
    }
}
