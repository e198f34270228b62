//! Checks: declarative statements about a node's state, in the vocabulary of goss.
//!
//! In a file a check is one mapping whose kind key holds the subject, with the
//! kind's properties and the common ones beside it:
//!
//! ```yaml
//! - http: http://lb/
//!   on: client
//!   status: 200
//!   body: ["/served by web[12]/"]
//!   timeout: 30s
//! ```
//!
//! Text matchers (`body`, `stdout`, `contains`, ...) are plain substrings, or
//! `/regex/`, and a leading `!` negates either form.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default time a failing check keeps being retried before it counts as failed.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two attempts of a failing check.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// One check, with its targets and retry policy resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Display name; derived from kind and subject when not written.
    pub name: String,
    /// Node names or group names the check runs on; empty means every node.
    pub on: Vec<String>,
    /// Retry a failing check until this long has passed.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// A shell command run on the node first; when it fails, the check is skipped
    /// (its precondition is unmet) instead of failed.
    pub skip_unless: Option<String>,
    pub kind: CheckKind,
}

/// What a check looks at, and what it expects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckKind {
    /// A Debian package is installed (optionally at a matching version).
    Package {
        name: String,
        installed: bool,
        version: Option<String>,
    },
    /// A systemd unit is running and/or enabled.
    Service {
        name: String,
        running: Option<bool>,
        enabled: Option<bool>,
    },
    /// Something listens on a port: `tcp:80`, `udp:53`, or `80` (tcp).
    Port {
        port: String,
        listening: bool,
        ip: Vec<String>,
    },
    /// A TCP address is reachable from the node: `tcp://web1:80` or `web1:80`.
    Addr { address: String, reachable: bool },
    /// An HTTP request from the node.
    Http {
        url: String,
        method: String,
        status: u16,
        body: Vec<String>,
        headers: BTreeMap<String, String>,
        /// Accept TLS certificates that do not verify.
        insecure: bool,
    },
    /// A command's exit status and output.
    Command {
        command: String,
        exit_status: i32,
        stdout: Vec<String>,
        stderr: Vec<String>,
    },
    /// A file's existence, type, mode, owner and contents.
    File {
        path: String,
        exists: bool,
        /// `file`, `directory` or `symlink`.
        filetype: Option<String>,
        /// Octal, e.g. `"0644"`.
        mode: Option<String>,
        owner: Option<String>,
        group: Option<String>,
        contains: Vec<String>,
    },
    /// A user account.
    User {
        name: String,
        exists: bool,
        uid: Option<u32>,
        gid: Option<u32>,
        groups: Vec<String>,
        home: Option<String>,
        shell: Option<String>,
    },
    /// A group.
    Group {
        name: String,
        exists: bool,
        gid: Option<u32>,
    },
    /// A process with this command name runs (or does not).
    Process { name: String, running: bool },
    /// A sysctl value, e.g. `net.ipv4.ip_forward`.
    KernelParam { key: String, value: String },
    /// A name resolves (through the node's resolver and /etc/hosts).
    Dns {
        host: String,
        resolvable: bool,
        addrs: Vec<String>,
    },
    /// A mount point, its filesystem and options.
    Mount {
        path: String,
        exists: bool,
        filesystem: Option<String>,
        opts: Vec<String>,
    },
    /// A network interface and its addresses.
    Interface {
        name: String,
        exists: bool,
        addrs: Vec<String>,
        mtu: Option<u32>,
    },
}

impl CheckKind {
    /// The kind's key as written in files (`kernel-param`, `http`, ...).
    pub fn key(&self) -> &'static str {
        match self {
            CheckKind::Package { .. } => "package",
            CheckKind::Service { .. } => "service",
            CheckKind::Port { .. } => "port",
            CheckKind::Addr { .. } => "addr",
            CheckKind::Http { .. } => "http",
            CheckKind::Command { .. } => "command",
            CheckKind::File { .. } => "file",
            CheckKind::User { .. } => "user",
            CheckKind::Group { .. } => "group",
            CheckKind::Process { .. } => "process",
            CheckKind::KernelParam { .. } => "kernel-param",
            CheckKind::Dns { .. } => "dns",
            CheckKind::Mount { .. } => "mount",
            CheckKind::Interface { .. } => "interface",
        }
    }

    /// What the check is about (the value of the kind key).
    pub fn subject(&self) -> &str {
        match self {
            CheckKind::Package { name, .. }
            | CheckKind::Service { name, .. }
            | CheckKind::User { name, .. }
            | CheckKind::Group { name, .. }
            | CheckKind::Process { name, .. }
            | CheckKind::Interface { name, .. } => name,
            CheckKind::Port { port, .. } => port,
            CheckKind::Addr { address, .. } => address,
            CheckKind::Http { url, .. } => url,
            CheckKind::Command { command, .. } => command,
            CheckKind::File { path, .. } | CheckKind::Mount { path, .. } => path,
            CheckKind::KernelParam { key, .. } => key,
            CheckKind::Dns { host, .. } => host,
        }
    }
}

pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
