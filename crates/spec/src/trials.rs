//! The trials a live cluster is put through: faults rehearse injects, load it
//! drives and attack probes it runs. A scenario runs them in its confidence
//! phase (`faults:`, `load:`, `probes:`); the CLI and the MCP tools run them one
//! at a time. The same types serve all three.
//!
//! ```yaml
//! faults:
//!   - name: web1 loses nginx
//!     stop_service: {node: web1, service: nginx}
//!     at: 2s                    # into the confidence phase (loads start at 0)
//!     heal_after: 4s            # default: right after `expect`
//!     expect:                   # checks that must hold while the fault is on
//!       - http: http://lb/
//!         on: client
//! load:
//!   - from: client
//!     url: http://lb/
//!     duration: 8s
//!     concurrency: 4
//!     expect: {error_rate: 1, p99: 500ms}
//! probes:
//!   - ports: {target: web1, from: client, open: [22, 80]}
//! ```

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest a load may run.
pub const MAX_LOAD_DURATION: Duration = Duration::from_secs(10 * 60);
/// Most requests a load may send.
pub const MAX_LOAD_REQUESTS: u64 = 1_000_000;
/// Most concurrent connections a load may open.
pub const MAX_LOAD_CONCURRENCY: u32 = 256;
/// Length of a load given only a request count.
pub const DEFAULT_LOAD_DURATION: Duration = Duration::from_secs(60);

/// A duration written with a unit (`250ms`, `5s`, `2m`); a bare number is
/// milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span(pub Duration);

impl Span {
    pub fn ms(self) -> u64 {
        self.0.as_millis() as u64
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Ms(ms) => Ok(Span(Duration::from_millis(ms))),
            Raw::Text(t) => humantime::parse_duration(t.trim()).map(Span).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration \"{t}\": {e}; write it with a unit, such as 250ms, 5s or 2m"
                ))
            }),
        }
    }
}

impl JsonSchema for Span {
    fn schema_name() -> Cow<'static, str> {
        "Span".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration with a unit, e.g. \"250ms\", \"5s\", \"2m\"",
        })
    }
}

/// The JSON Schema of `T` with every subschema inlined, for embedding in
/// another document (the MCP tools' input schemas).
pub fn inline_schema<T: JsonSchema>() -> serde_json::Value {
    let settings = crate::schema_settings().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// What goes wrong. Nodes are named by node name; partition sides also take
/// group names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Kill the node's PID 1 (the node is down until healed, which boots it
    /// again from its disk).
    Crash { node: String },
    /// Reboot the node cleanly (done when it is back; nothing to heal).
    Reboot { node: String },
    /// Cut the network between groups of nodes: no node of one side reaches a
    /// node of another until healed. Each side lists node or group names.
    Partition { sides: Vec<Vec<String>> },
    /// Impair what leaves a node (towards `peers` only, when given): packet
    /// loss in percent, added latency with jitter, and a bandwidth cap.
    Link {
        node: String,
        #[serde(default)]
        peers: Vec<String>,
        #[serde(default)]
        loss: Option<u8>,
        #[serde(default)]
        delay: Option<Span>,
        #[serde(default)]
        jitter: Option<Span>,
        /// Bandwidth cap in kbit/s (the whole interface, whatever `peers` says).
        #[serde(default)]
        rate_kbit: Option<u32>,
    },
    /// Fill the filesystem holding `path` on the node so writes there fail with
    /// "No space left on device" (a small filesystem is laid over `path`,
    /// keeping its files; the host's disk is not touched).
    DiskFull {
        node: String,
        path: String,
        /// Size of the filesystem laid over `path`, in MiB. Default 8.
        #[serde(default)]
        size_mb: Option<u32>,
    },
    /// `systemctl stop` a unit (healed by starting it).
    StopService { node: String, service: String },
    /// SIGKILL every process of a unit (healed by starting it, if it is down).
    KillService { node: String, service: String },
}

impl FaultAction {
    /// The kind as written in files: `crash`, `link`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            FaultAction::Crash { .. } => "crash",
            FaultAction::Reboot { .. } => "reboot",
            FaultAction::Partition { .. } => "partition",
            FaultAction::Link { .. } => "link",
            FaultAction::DiskFull { .. } => "disk_full",
            FaultAction::StopService { .. } => "stop_service",
            FaultAction::KillService { .. } => "kill_service",
        }
    }

    /// The nodes (or groups) the fault names.
    pub fn targets(&self) -> Vec<&str> {
        match self {
            FaultAction::Crash { node }
            | FaultAction::Reboot { node }
            | FaultAction::DiskFull { node, .. }
            | FaultAction::StopService { node, .. }
            | FaultAction::KillService { node, .. } => vec![node],
            FaultAction::Link { node, peers, .. } => std::iter::once(node.as_str())
                .chain(peers.iter().map(String::as_str))
                .collect(),
            FaultAction::Partition { sides } => {
                sides.iter().flatten().map(String::as_str).collect()
            }
        }
    }

    /// One line for reports: `crash web1`, `link web1 loss 30% delay 100ms`.
    pub fn describe(&self) -> String {
        match self {
            FaultAction::Crash { node } => format!("crash {node}"),
            FaultAction::Reboot { node } => format!("reboot {node}"),
            FaultAction::Partition { sides } => format!(
                "partition {}",
                sides
                    .iter()
                    .map(|s| format!("[{}]", s.join(", ")))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ),
            FaultAction::Link {
                node,
                peers,
                loss,
                delay,
                jitter,
                rate_kbit,
            } => {
                let mut s = format!("link {node}");
                if !peers.is_empty() {
                    s += &format!(" → {}", peers.join(", "));
                }
                if let Some(l) = loss {
                    s += &format!(" loss {l}%");
                }
                if let Some(d) = delay {
                    s += &format!(" delay {d}");
                }
                if let Some(j) = jitter {
                    s += &format!(" ±{j}");
                }
                if let Some(r) = rate_kbit {
                    s += &format!(" rate {r}kbit");
                }
                s
            }
            FaultAction::DiskFull { node, path, .. } => format!("disk full {node}:{path}"),
            FaultAction::StopService { node, service } => format!("stop {service} on {node}"),
            FaultAction::KillService { node, service } => format!("kill {service} on {node}"),
        }
    }

    /// Checks that do not need the cluster: numbers in range, something to do.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            FaultAction::Partition { sides } => {
                if sides.len() < 2 || sides.iter().any(|s| s.is_empty()) {
                    return Err("a partition needs at least two non-empty sides, e.g. sides: [[lb], [web1, web2]]".into());
                }
            }
            FaultAction::Link {
                loss,
                delay,
                jitter,
                rate_kbit,
                ..
            } => {
                if loss.is_none() && delay.is_none() && rate_kbit.is_none() {
                    return Err(
                        "a link fault needs at least one of loss, delay or rate_kbit".into(),
                    );
                }
                if loss.is_some_and(|l| l == 0 || l > 100) {
                    return Err("loss is a percentage from 1 to 100".into());
                }
                if jitter.is_some() && delay.is_none() {
                    return Err("jitter varies a delay: set delay too".into());
                }
                if delay.is_some_and(|d| d.0 > Duration::from_secs(10)) {
                    return Err("delay is at most 10s".into());
                }
                if let (Some(j), Some(d)) = (jitter, delay) {
                    if j.0 > d.0 {
                        return Err("jitter may not exceed delay".into());
                    }
                }
                if rate_kbit.is_some_and(|r| r < 8) {
                    return Err("rate_kbit is at least 8".into());
                }
            }
            FaultAction::DiskFull { path, size_mb, .. } => {
                if !path.starts_with('/') || path == "/" || path.contains("..") {
                    return Err(format!("path \"{path}\" must be an absolute folder other than / (e.g. /var/lib/app)"));
                }
                if size_mb.is_some_and(|s| s == 0 || s > 1024) {
                    return Err("size_mb is from 1 to 1024".into());
                }
            }
            FaultAction::StopService { service, .. } | FaultAction::KillService { service, .. } => {
                if service.is_empty()
                    || !service
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "@._-:".contains(c))
                {
                    return Err(format!("\"{service}\" is not a unit name"));
                }
            }
            FaultAction::Crash { .. } | FaultAction::Reboot { .. } => {}
        }
        Ok(())
    }
}

/// A fault in a scenario: what, when, what must hold meanwhile, when healed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScenarioFault {
    pub name: String,
    pub action: FaultAction,
    /// When to inject it, from the start of the confidence phase.
    #[serde(with = "crate::scenario::check_duration_ms")]
    pub at: Duration,
    /// How long after injection to heal it; `None`: right after `expect`.
    pub heal_after: Option<u64>,
    /// Checks that must hold while the fault is on.
    pub expect: Vec<crate::scenario::Check>,
}

/// What a load must show; each stated bound becomes a check.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadExpect {
    /// Highest share of failed requests, in percent (`1` = 1 %).
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Highest median latency.
    #[serde(default)]
    pub p50: Option<Span>,
    /// Highest 99th-percentile latency.
    #[serde(default)]
    pub p99: Option<Span>,
    /// Fewest requests that must have been answered successfully.
    #[serde(default)]
    pub min_ok: Option<u64>,
}

/// HTTP load from one node against a URL, bounded in time and count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Name shown in reports. Default: `load <url> from <node>`.
    #[serde(default)]
    pub name: Option<String>,
    /// The node the load runs on (latencies are measured there).
    pub from: String,
    /// An http:// URL; node names resolve inside the cluster.
    pub url: String,
    /// How long to send requests. Default 60s when only `requests` is given.
    #[serde(default)]
    pub duration: Option<Span>,
    /// How many requests to send at most.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Connections sending requests at once. Default 4.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Longest one request may take before it counts as an error. Default 5s.
    #[serde(default)]
    pub timeout: Option<Span>,
    #[serde(default)]
    pub expect: LoadExpect,
}

impl LoadSpec {
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("load {} from {}", self.url, self.from))
    }

    pub fn duration(&self) -> Duration {
        match (self.duration, self.requests) {
            (Some(d), _) => d.0,
            (None, _) => DEFAULT_LOAD_DURATION,
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.unwrap_or(MAX_LOAD_REQUESTS)
    }

    pub fn concurrency(&self) -> u32 {
        self.concurrency.unwrap_or(4)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.map(|t| t.0).unwrap_or(Duration::from_secs(5))
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.url.starts_with("http://") || self.url.len() <= "http://".len() {
            return Err(format!(
                "url \"{}\" must be an http:// URL, e.g. http://lb/",
                self.url
            ));
        }
        if self.duration.is_none() && self.requests.is_none() {
            return Err(
                "say how long the load runs: `duration` (e.g. 10s), `requests` (a count), or both"
                    .into(),
            );
        }
        if self
            .duration
            .is_some_and(|d| d.0.is_zero() || d.0 > MAX_LOAD_DURATION)
        {
            return Err("duration is more than 0 and at most 10m".into());
        }
        if self
            .requests
            .is_some_and(|r| r == 0 || r > MAX_LOAD_REQUESTS)
        {
            return Err(format!("requests is from 1 to {MAX_LOAD_REQUESTS}"));
        }
        if self
            .concurrency
            .is_some_and(|c| c == 0 || c > MAX_LOAD_CONCURRENCY)
        {
            return Err(format!("concurrency is from 1 to {MAX_LOAD_CONCURRENCY}"));
        }
        if self.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err("timeout must be more than 0".into());
        }
        if self
            .expect
            .error_rate
            .is_some_and(|e| !(0.0..=100.0).contains(&e))
        {
            return Err("expect.error_rate is a percentage from 0 to 100".into());
        }
        Ok(())
    }
}

/// An attack probe: a check of what an attacker on the cluster's network, or
/// on the node, would find.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProbeSpec {
    /// Scan every TCP port of `target` from `from`: exactly the `open` ports
    /// may answer; any other open port fails the probe.
    Ports {
        target: String,
        from: String,
        open: Vec<u16>,
    },
    /// SSH on `target` must refuse password (and keyboard-interactive) login.
    SshPassword { target: String, from: String },
    /// `port` of `target` must be unreachable from every node outside
    /// `network` (or from `from`, when given), on every address of `target`.
    Internal {
        target: String,
        port: u16,
        network: String,
        #[serde(default)]
        from: Vec<String>,
    },
    /// No world-writable file and no setuid/setgid binary was added to the
    /// node (compared with its image).
    Files { node: String },
    /// A TLS endpoint: certificate valid for at least `min_days` (default 14),
    /// issued for `hostname` (default: the target's name), and no TLS 1.0/1.1.
    Tls {
        target: String,
        from: String,
        #[serde(default = "default_tls_port")]
        port: u16,
        #[serde(default)]
        hostname: Option<String>,
        #[serde(default)]
        min_days: Option<u32>,
    },
}

fn default_tls_port() -> u16 {
    443
}

impl ProbeSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::Ports { .. } => "ports",
            ProbeSpec::SshPassword { .. } => "ssh_password",
            ProbeSpec::Internal { .. } => "internal",
            ProbeSpec::Files { .. } => "files",
            ProbeSpec::Tls { .. } => "tls",
        }
    }

    /// Node names the probe refers to (networks are not nodes).
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            ProbeSpec::Ports { target, from, .. }
            | ProbeSpec::SshPassword { target, from }
            | ProbeSpec::Tls { target, from, .. } => vec![target, from],
            ProbeSpec::Internal { target, from, .. } => std::iter::once(target.as_str())
                .chain(from.iter().map(String::as_str))
                .collect(),
            ProbeSpec::Files { node } => vec![node],
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ProbeSpec::Ports { target, from, open } => format!(
                "ports of {target} from {from} (open: {})",
                open.iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ProbeSpec::SshPassword { target, .. } => format!("ssh password login on {target}"),
            ProbeSpec::Internal {
                target,
                port,
                network,
                ..
            } => format!("{target}:{port} internal to {network}"),
            ProbeSpec::Files { node } => format!("world-writable and setuid files on {node}"),
            ProbeSpec::Tls { target, port, .. } => format!("tls {target}:{port}"),
        }
    }
}
