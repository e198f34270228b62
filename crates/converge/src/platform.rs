//! Failures of the platform under the code, told apart from failures of the
//! code: a cluster that could not start (a node that did not boot, no free
//! subnet, a host command failing), the host's package cache not answering,
//! the host's disk full. Such a run says nothing about the code, so it is run
//! again on a fresh cluster without spending the iteration budget, and the
//! model is never told its code failed.

use std::path::Path;

use serde::Serialize;

use rehearse_scenario::RunReport;

/// Runs on a fresh cluster a converge run may repeat because the platform
/// failed, over the whole run. Past this the run ends as `platform_error`.
pub const PLATFORM_RETRIES: u32 = 2;

/// Free bytes under which the host's disk counts as full.
const DISK_FULL_BELOW: u64 = 256 * 1024 * 1024;

/// The address the nodes reach the host's package cache at.
fn cache_address() -> String {
    rehearse_sandbox::PackageCache::proxy_url()
        .trim_start_matches("http://")
        .to_owned()
}

/// What the platform did wrong, in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlatformFailure {
    /// The iteration whose run it spoiled (the iteration is run again).
    pub iteration: u32,
    /// `boot`, `cluster`, `package-cache` or `disk-full`.
    pub kind: &'static str,
    /// One sentence: what failed.
    pub cause: String,
    /// The evidence (an error, output lines), trimmed.
    pub detail: String,
}

/// What the platform is like now, asked only once a run's output hints at it.
pub trait HostProbe {
    /// Free bytes on the filesystem holding the clusters' disks.
    fn free_bytes(&self) -> Option<u64>;
}

/// The host itself.
pub struct Host<'a> {
    pub state_dir: &'a Path,
}

impl HostProbe for Host<'_> {
    fn free_bytes(&self) -> Option<u64> {
        let stat = nix::sys::statvfs::statvfs(self.state_dir).ok()?;
        Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
    }
}

/// The platform failure that spoiled `run`, if one did. A run that was
/// stopped on request is not one.
pub fn classify(run: &RunReport, host: &dyn HostProbe) -> Option<(&'static str, String, String)> {
    let output: String = run
        .steps
        .iter()
        .flat_map(|s| s.nodes.iter())
        .map(|n| format!("{}{}", n.stdout, n.stderr))
        .collect();
    classify_parts(
        run.cluster.is_some(),
        run.error.as_deref().unwrap_or_default(),
        &output,
        host,
    )
}

/// [`classify`] from the parts of a run it looks at: whether a cluster
/// started, the run's error, and the code's output.
fn classify_parts(
    started: bool,
    error: &str,
    output: &str,
    host: &dyn HostProbe,
) -> Option<(&'static str, String, String)> {
    if error == rehearse_scenario::STOPPED {
        return None;
    }
    let disk_full = || host.free_bytes().is_some_and(|free| free < DISK_FULL_BELOW);
    if !started && !error.is_empty() {
        // The code never ran: whatever stopped the cluster is the platform's.
        let first = error.lines().next().unwrap_or(error);
        let (kind, cause) = if error.contains("No space left on device") || disk_full() {
            (
                "disk-full",
                "the host's disk is full, so the cluster could not start",
            )
        } else if error.contains("failed to boot") {
            ("boot", "a node did not boot")
        } else {
            ("cluster", "the cluster could not start")
        };
        return Some((kind, cause.to_owned(), trim(first)));
    }
    let cache = cache_address();
    let cache_lines: Vec<&str> = output
        .lines()
        .filter(|l| {
            let l = l.trim();
            (l.contains(&cache) && (l.contains("Could not connect") || l.contains("Connection refused") || l.contains("Unable to connect")))
                // The cache answered but could not reach the mirror behind it.
                || (l.starts_with("E: Failed to fetch") || l.starts_with("Err:") || l.starts_with("W: Failed to fetch"))
                    && [" 502 ", " 503 ", " 504 ", "Connection timeout", "Connection timed out"]
                        .iter()
                        .any(|s| l.contains(s))
        })
        .collect();
    if !cache_lines.is_empty() {
        return Some((
            "package-cache",
            "the host's package cache did not deliver packages".to_owned(),
            trim(&cache_lines.join("\n")),
        ));
    }
    let no_space: Vec<&str> = output
        .lines()
        .chain(error.lines())
        .filter(|l| l.contains("No space left on device"))
        .collect();
    if !no_space.is_empty() && disk_full() {
        return Some((
            "disk-full",
            "the host's disk is full".to_owned(),
            trim(&no_space.join("\n")),
        ));
    }
    None
}

fn trim(text: &str) -> String {
    let text = text.trim();
    if text.len() <= 600 {
        return text.to_owned();
    }
    let mut end = 600;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Free(u64);
    impl HostProbe for Free {
        fn free_bytes(&self) -> Option<u64> {
            Some(self.0)
        }
    }
    const ROOMY: Free = Free(50 << 30);

    fn run(cluster: Option<&str>, error: Option<&str>, output: &str) -> (bool, String, String) {
        (
            cluster.is_some(),
            error.unwrap_or_default().to_owned(),
            output.to_owned(),
        )
    }

    fn classify(
        (started, error, output): &(bool, String, String),
        host: &dyn HostProbe,
    ) -> Option<(&'static str, String, String)> {
        classify_parts(*started, error, output, host)
    }

    #[test]
    fn a_cluster_that_never_started_is_the_platforms_fault() {
        let r = run(
            None,
            Some("could not start the cluster: node node1 of cluster ab12 failed to boot: systemd-nspawn exited before the node finished booting (the cluster was removed)\n--- last lines ---\nx"),
            "",
        );
        let (kind, cause, detail) = classify(&r, &ROOMY).unwrap();
        assert_eq!(kind, "boot");
        assert_eq!(cause, "a node did not boot");
        assert!(detail.contains("failed to boot") && !detail.contains("last lines"));
        let stopped = run(None, Some(rehearse_scenario::STOPPED), "");
        assert_eq!(classify(&stopped, &ROOMY), None);
    }

    #[test]
    fn apt_failing_to_reach_the_cache_is_the_platforms_fault() {
        let out = format!(
            "Err:1 http://deb.debian.org/debian bookworm InRelease\n  Could not connect to {0} ({1}). - connect (111: Connection refused)\nE: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Could not connect to {0}\n",
            cache_address(),
            cache_address().split(':').next().unwrap()
        );
        let (kind, _, detail) = classify(&run(Some("c1"), None, &out), &ROOMY).unwrap();
        assert_eq!(kind, "package-cache");
        assert!(detail.contains("Connection refused"));
        let upstream = "E: Failed to fetch http://deb.debian.org/debian/pool/main/n/nginx/nginx_1.22.1-9_amd64.deb  503  Connection timeout [IP: 10.213.255.254 3149]\n";
        assert_eq!(
            classify(&run(Some("c1"), None, upstream), &ROOMY)
                .unwrap()
                .0,
            "package-cache"
        );
        // A package that does not exist is the code's business.
        let missing = "E: Unable to locate package nginxx\n";
        assert_eq!(classify(&run(Some("c1"), None, missing), &ROOMY), None);
        // So is a mirror the code chose itself.
        let own = "Err:1 http://mirror.example.org/debian bookworm InRelease\n  Could not resolve 'mirror.example.org'\n";
        assert_eq!(classify(&run(Some("c1"), None, own), &ROOMY), None);
    }

    #[test]
    fn no_space_left_counts_only_when_the_host_is_full() {
        let out = "dd: error writing '/var/big': No space left on device\n";
        assert_eq!(classify(&run(Some("c1"), None, out), &ROOMY), None);
        let (kind, ..) = classify(&run(Some("c1"), None, out), &Free(10 << 20)).unwrap();
        assert_eq!(kind, "disk-full");
    }
}
