//! The file form of checks: one mapping per check, whose kind key (`http:`,
//! `file:`, ...) holds the subject, beside the kind's own keys and those of every
//! check.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_yaml::Value;

use super::keyed::{family, kind_of, Form};
use super::{duration, matchers, short, targets, Context, DurationText, Mode, OneOrMany, Text};
use crate::error::SpecError;
use crate::scenario::rules;
use crate::scenario::{Check, CheckKind, DEFAULT_CHECK_TIMEOUT};
use crate::source::FieldPath;

family! {
    /// The file form of any check.
    CheckFile: "check" => Check,
    common: ["name", "on", "timeout", "skip_unless"],
    example: "http: http://web1/",
    forms: [
        PackageCheck,
        ServiceCheck,
        PortCheck,
        AddrCheck,
        HttpCheck,
        CommandCheck,
        FileCheck,
        UserCheck,
        GroupCheck,
        ProcessCheck,
        KernelParamCheck,
        DnsCheck,
        MountCheck,
        InterfaceCheck,
    ],
}

/// Reads one entry of `checks`.
pub(super) fn read(value: Value, path: &FieldPath, cx: &Context) -> Result<Check, SpecError> {
    let kind = kind_of::<CheckFile>(&value, path, cx)?;
    CheckFile::read_kind(kind, value, path, cx)
}

/// Declares the form of one check kind (its own keys, then those of every check)
/// and how it becomes a [`CheckKind`]; `$into` receives the form (without the
/// common keys) and the check's path.
macro_rules! check_form {
    (
        $(#[$attr:meta])*
        $name:ident = $key:literal { $($fields:tt)* }
        |$form:ident, $path:ident, $cx:ident| $into:expr
    ) => {
        $(#[$attr])*
        #[derive(Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($fields)*
            /// Name shown in reports. Default: the kind and subject, e.g.
            /// `http http://lb/`.
            #[serde(default)]
            name: Option<String>,
            /// Node or group names to check on: one name or a list. Default:
            /// every node.
            #[serde(default)]
            on: Option<OneOrMany>,
            /// Keep retrying a failing check this long before it fails, e.g.
            /// `30s`. Default: `10s`.
            #[serde(default)]
            timeout: Option<DurationText>,
            /// A shell command run on the node first; when it fails, the check is
            /// skipped instead of failed.
            #[serde(default)]
            skip_unless: Option<String>,
        }

        impl Form for $name {
            const KEY: &'static str = $key;
            type Explicit = Check;

            fn into_explicit(
                mut self,
                path: &FieldPath,
                cx: &Context,
            ) -> Result<Check, SpecError> {
                let common = Common {
                    name: self.name.take(),
                    on: self.on.take(),
                    timeout: self.timeout.take(),
                    skip_unless: self.skip_unless.take(),
                };
                let kind = {
                    let ($form, $path, $cx) = (self, path, cx);
                    $into
                };
                common.finish(kind, path, cx)
            }
        }
    };
}

/// The keys every check has.
struct Common {
    name: Option<String>,
    on: Option<OneOrMany>,
    timeout: Option<DurationText>,
    skip_unless: Option<String>,
}

impl Common {
    fn finish(
        self,
        kind: Result<CheckKind, SpecError>,
        path: &FieldPath,
        cx: &Context,
    ) -> Result<Check, SpecError> {
        let kind = kind?;
        Ok(Check {
            name: self
                .name
                .unwrap_or_else(|| format!("{} {}", kind.key(), short(kind.subject()))),
            on: targets(self.on, path, cx)?,
            timeout: duration(self.timeout, DEFAULT_CHECK_TIMEOUT, path, cx)?,
            skip_unless: self.skip_unless,
            kind,
        })
    }
}

fn yes() -> bool {
    true
}

fn get() -> String {
    "GET".to_owned()
}

fn ok() -> u16 {
    200
}

check_form! {
    /// A Debian package is installed (or not).
    PackageCheck = "package" {
        /// The package name.
        package: String,
        /// Whether it must be installed.
        #[serde(default = "yes")]
        installed: bool,
        /// A matcher for the installed version, e.g. `/^1\.24/`.
        #[serde(default)]
        version: Option<Text>,
    }
    |c, _path, _cx| Ok(CheckKind::Package {
        name: c.package,
        installed: c.installed,
        version: c.version.map(|v| v.0),
    })
}

check_form! {
    /// A systemd unit is running and/or enabled. With neither key written, it
    /// must be running.
    ServiceCheck = "service" {
        /// The unit name; `.service` may be left out.
        service: String,
        /// Whether it must be active.
        #[serde(default)]
        running: Option<bool>,
        /// Whether it must be enabled at boot.
        #[serde(default)]
        enabled: Option<bool>,
    }
    |c, _path, _cx| Ok(CheckKind::Service {
        name: c.service,
        running: c.running.or(c.enabled.is_none().then_some(true)),
        enabled: c.enabled,
    })
}

check_form! {
    /// Something listens on a port of the node.
    PortCheck = "port" {
        /// `tcp:80`, `udp:53`, or `80` for tcp.
        port: Text,
        /// Whether something must listen.
        #[serde(default = "yes")]
        listening: bool,
        /// Addresses it must listen on, e.g. `0.0.0.0`. Default: any.
        #[serde(default)]
        ip: Vec<String>,
    }
    |c, path, cx| Ok(CheckKind::Port {
        port: rules::port(&c.port.0).map_err(|e| cx.source.at(&path.field("port"), e))?,
        listening: c.listening,
        ip: c.ip,
    })
}

check_form! {
    /// A TCP address is reachable from the node.
    AddrCheck = "addr" {
        /// `tcp://host:port` or `host:port`.
        addr: String,
        /// Whether a connection must succeed.
        #[serde(default = "yes")]
        reachable: bool,
    }
    |c, path, cx| Ok(CheckKind::Addr {
        address: rules::addr(&c.addr).map_err(|e| cx.source.at(&path.field("addr"), e))?,
        reachable: c.reachable,
    })
}

check_form! {
    /// An HTTP request made from the node.
    HttpCheck = "http" {
        /// The URL, `http://` or `https://`.
        http: String,
        /// The request method.
        #[serde(default = "get")]
        method: String,
        /// The expected status code.
        #[serde(default = "ok")]
        status: u16,
        /// Matchers the response body must satisfy.
        #[serde(default)]
        body: Option<OneOrMany>,
        /// Response headers and a matcher for each one's value.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// Accept TLS certificates that do not verify.
        #[serde(default)]
        insecure: bool,
    }
    |c, _path, _cx| Ok(CheckKind::Http {
        url: c.http,
        method: c.method.to_ascii_uppercase(),
        status: c.status,
        body: matchers(c.body),
        headers: c.headers,
        insecure: c.insecure,
    })
}

check_form! {
    /// A command run on the node: its exit status and output.
    CommandCheck = "command" {
        /// The command, run with `/bin/sh -c`.
        command: String,
        /// The expected exit status.
        #[serde(default)]
        exit_status: i32,
        /// Matchers the standard output must satisfy.
        #[serde(default)]
        stdout: Option<OneOrMany>,
        /// Matchers the standard error must satisfy.
        #[serde(default)]
        stderr: Option<OneOrMany>,
    }
    |c, _path, _cx| Ok(CheckKind::Command {
        command: c.command,
        exit_status: c.exit_status,
        stdout: matchers(c.stdout),
        stderr: matchers(c.stderr),
    })
}

/// What a path must be.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum FileType {
    File,
    Directory,
    Symlink,
}

impl FileType {
    fn as_str(&self) -> &'static str {
        match self {
            FileType::File => "file",
            FileType::Directory => "directory",
            FileType::Symlink => "symlink",
        }
    }
}

check_form! {
    /// A path on the node: existence, type, mode, owner and contents.
    FileCheck = "file" {
        /// An absolute path.
        file: String,
        /// Whether the path must exist.
        #[serde(default = "yes")]
        exists: bool,
        /// What the path must be: `file`, `directory` or `symlink`.
        #[serde(default)]
        filetype: Option<FileType>,
        /// Permission bits as a quoted octal string, e.g. `"0644"`.
        #[serde(default)]
        mode: Option<Mode>,
        /// Owning user name.
        #[serde(default)]
        owner: Option<String>,
        /// Owning group name.
        #[serde(default)]
        group: Option<String>,
        /// Matchers the file's contents must satisfy.
        #[serde(default)]
        contains: Option<OneOrMany>,
    }
    |c, _path, _cx| Ok(CheckKind::File {
        path: c.file,
        exists: c.exists,
        filetype: c.filetype.map(|t| t.as_str().to_owned()),
        mode: c.mode.map(|m| m.0),
        owner: c.owner,
        group: c.group,
        contains: matchers(c.contains),
    })
}

check_form! {
    /// A user account.
    UserCheck = "user" {
        /// The user name.
        user: String,
        /// Whether the account must exist.
        #[serde(default = "yes")]
        exists: bool,
        /// The expected user id.
        #[serde(default)]
        uid: Option<u32>,
        /// The expected primary group id.
        #[serde(default)]
        gid: Option<u32>,
        /// Groups the user must be a member of.
        #[serde(default)]
        groups: Vec<String>,
        /// The expected home directory.
        #[serde(default)]
        home: Option<String>,
        /// The expected login shell.
        #[serde(default)]
        shell: Option<String>,
    }
    |c, _path, _cx| Ok(CheckKind::User {
        name: c.user,
        exists: c.exists,
        uid: c.uid,
        gid: c.gid,
        groups: c.groups,
        home: c.home,
        shell: c.shell,
    })
}

check_form! {
    /// A group.
    GroupCheck = "group" {
        /// The group name.
        group: String,
        /// Whether the group must exist.
        #[serde(default = "yes")]
        exists: bool,
        /// The expected group id.
        #[serde(default)]
        gid: Option<u32>,
    }
    |c, _path, _cx| Ok(CheckKind::Group {
        name: c.group,
        exists: c.exists,
        gid: c.gid,
    })
}

check_form! {
    /// A process with this command name runs (or does not).
    ProcessCheck = "process" {
        /// The command name, as `ps -o comm` shows it.
        process: String,
        /// Whether such a process must run.
        #[serde(default = "yes")]
        running: bool,
    }
    |c, _path, _cx| Ok(CheckKind::Process {
        name: c.process,
        running: c.running,
    })
}

check_form! {
    /// A kernel parameter (sysctl).
    KernelParamCheck = "kernel-param" {
        /// The parameter, e.g. `net.ipv4.ip_forward`.
        #[serde(rename = "kernel-param")]
        key: String,
        /// A matcher for its value, e.g. `1`.
        value: Text,
    }
    |c, _path, _cx| Ok(CheckKind::KernelParam {
        key: c.key,
        value: c.value.0,
    })
}

check_form! {
    /// A name resolves on the node (resolver and /etc/hosts).
    DnsCheck = "dns" {
        /// The name to resolve.
        dns: String,
        /// Whether it must resolve.
        #[serde(default = "yes")]
        resolvable: bool,
        /// Addresses it must resolve to.
        #[serde(default)]
        addrs: Vec<String>,
    }
    |c, _path, _cx| Ok(CheckKind::Dns {
        host: c.dns,
        resolvable: c.resolvable,
        addrs: c.addrs,
    })
}

check_form! {
    /// A mount point.
    MountCheck = "mount" {
        /// The mount point, an absolute path.
        mount: String,
        /// Whether something must be mounted there.
        #[serde(default = "yes")]
        exists: bool,
        /// The expected filesystem type, e.g. `ext4`.
        #[serde(default)]
        filesystem: Option<String>,
        /// Mount options that must be set, e.g. `ro`.
        #[serde(default)]
        opts: Vec<String>,
    }
    |c, _path, _cx| Ok(CheckKind::Mount {
        path: c.mount,
        exists: c.exists,
        filesystem: c.filesystem,
        opts: c.opts,
    })
}

check_form! {
    /// A network interface of the node.
    InterfaceCheck = "interface" {
        /// The interface name, e.g. `eth0`.
        interface: String,
        /// Whether the interface must exist.
        #[serde(default = "yes")]
        exists: bool,
        /// Addresses it must have, e.g. `10.0.0.2`, or `10.0.0.2/24` to require
        /// the prefix length too.
        #[serde(default)]
        addrs: Vec<String>,
        /// The expected MTU.
        #[serde(default)]
        mtu: Option<u32>,
    }
    |c, _path, _cx| Ok(CheckKind::Interface {
        name: c.interface,
        exists: c.exists,
        addrs: c.addrs,
        mtu: c.mtu,
    })
}
