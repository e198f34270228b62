//! The rules a scenario must follow before a cluster is started for it.
//!
//! They run on the explicit [`Scenario`], after its topology has been checked;
//! a file's [`Source`] only adds positions. Files the scenario refers to are
//! checked while reading it (see `file`), since that needs the file system.

use std::path::Path;

use super::check::{Check, CheckKind};
use super::matcher::Matcher;
use super::step::{Step, StepAction};
use super::Scenario;
use crate::error::{ErrorKind, SpecError};
use crate::names;
use crate::source::{FieldPath, Source};

/// Octal permission bits: three or four octal digits, optionally after a `0`.
pub(crate) const MODE_PATTERN: &str = "^0?[0-7]{3,4}$";

impl Scenario {
    pub(super) fn validate_at(&self, source: &Source) -> Result<(), SpecError> {
        if self.steps.is_empty() && self.checks.is_empty() {
            let error = SpecError::new(
                ErrorKind::MissingField,
                "nothing to run: the scenario has neither steps nor checks",
            )
            .with_hint("add `steps` that set the nodes up, `checks` that verify them, or both");
            return Err(source.at(&FieldPath::key("steps"), error));
        }
        self.validate_group_names(source)?;
        for (i, _) in self.platforms.iter().enumerate() {
            if let Err(error) = Scenario::validate_platforms(&self.platforms[..=i]) {
                return Err(source.at(&FieldPath::key("platforms").at(i), error));
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            self.validate_step(step, &FieldPath::key("steps").at(i), source)?;
        }
        for (i, check) in self.checks.iter().enumerate() {
            self.validate_check(check, &FieldPath::key("checks").at(i), source)?;
        }
        Ok(())
    }

    /// `on: web` could not tell a node named web from a group named web.
    fn validate_group_names(&self, source: &Source) -> Result<(), SpecError> {
        for (i, node) in self.topology.nodes.iter().enumerate() {
            for (g, group) in node.groups.iter().enumerate() {
                if self.topology.node(group).is_some() {
                    let error = SpecError::new(
                        ErrorKind::Duplicate,
                        format!("group \"{group}\" has the name of a node, so `on: {group}` would be ambiguous"),
                    )
                    .with_hint("give the group a name no node has");
                    let path = FieldPath::key("nodes").at(i).field("groups").at(g);
                    return Err(source.at(&path, error));
                }
            }
        }
        Ok(())
    }

    fn validate_targets(
        &self,
        on: &[String],
        path: &FieldPath,
        source: &Source,
    ) -> Result<(), SpecError> {
        let on_path = path.field("on");
        for (k, target) in on.iter().enumerate() {
            let known = self.topology.node(target).is_some()
                || self
                    .topology
                    .nodes
                    .iter()
                    .any(|node| node.groups.contains(target));
            if !known {
                let error = SpecError::new(
                    ErrorKind::UnknownTarget,
                    format!(
                        "unknown node or group \"{}\" ({})",
                        target.escape_default(),
                        self.names_and_groups()
                    ),
                )
                .with_hint("name a node or a group of the topology, or add it to `nodes`");
                return Err(source.at_item(&on_path, k, error));
            }
        }
        Ok(())
    }

    /// "nodes: lb, web1; groups: web", for messages.
    fn names_and_groups(&self) -> String {
        let nodes: Vec<&str> = self
            .topology
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        let mut groups: Vec<&str> = Vec::new();
        for group in self.topology.nodes.iter().flat_map(|n| &n.groups) {
            if !groups.contains(&group.as_str()) {
                groups.push(group);
            }
        }
        if groups.is_empty() {
            format!("nodes: {}; no groups", nodes.join(", "))
        } else {
            format!("nodes: {}; groups: {}", nodes.join(", "), groups.join(", "))
        }
    }

    fn validate_step(
        &self,
        step: &Step,
        path: &FieldPath,
        source: &Source,
    ) -> Result<(), SpecError> {
        self.validate_targets(&step.on, path, source)?;
        positive_timeout(step.timeout, path, source)?;
        let env_path = path.field("env");
        for (name, _) in &step.env {
            env_name(name).map_err(|e| source.at_key(&env_path, name, e))?;
        }
        match &step.action {
            StepAction::Shell { script, .. } => {
                if script.trim().is_empty() {
                    let error = SpecError::new(ErrorKind::InvalidValue, "the script is empty")
                        .with_hint("write the commands to run, or remove the step");
                    return Err(source.at(&path.field("shell"), error));
                }
            }
            StepAction::Ansible {
                controller,
                extra_vars,
                ..
            } => {
                if let Some(controller) = controller {
                    if self.topology.node(controller).is_none() {
                        let nodes: Vec<&str> = self
                            .topology
                            .nodes
                            .iter()
                            .map(|n| n.name.as_str())
                            .collect();
                        let error = SpecError::new(
                            ErrorKind::UnknownTarget,
                            format!(
                                "unknown controller node \"{}\" (nodes: {})",
                                controller.escape_default(),
                                nodes.join(", ")
                            ),
                        )
                        .with_hint("name one node of the topology, or remove `controller` to run ansible from the host");
                        return Err(source.at(&path.field("controller"), error));
                    }
                }
                let vars_path = path.field("extra_vars");
                for (name, _) in extra_vars {
                    if name.is_empty() {
                        let error = SpecError::new(ErrorKind::InvalidName, "empty variable name")
                            .with_hint("name every variable");
                        return Err(source.at(&vars_path, error));
                    }
                }
            }
            StepAction::Copy { dest, mode, .. } => {
                if !Path::new(dest).is_absolute() {
                    let error = SpecError::new(
                        ErrorKind::InvalidValue,
                        format!(
                            "destination \"{}\" is not an absolute path",
                            dest.escape_default()
                        ),
                    )
                    .with_hint("write the full path on the nodes, starting with /");
                    return Err(source.at(&path.field("dest"), error));
                }
                if let Some(mode) = mode {
                    file_mode(mode).map_err(|e| source.at(&path.field("mode"), e))?;
                }
            }
        }
        Ok(())
    }

    fn validate_check(
        &self,
        check: &Check,
        path: &FieldPath,
        source: &Source,
    ) -> Result<(), SpecError> {
        self.validate_targets(&check.on, path, source)?;
        positive_timeout(check.timeout, path, source)?;
        let subject = path.field(check.kind.key());
        if check.kind.subject().trim().is_empty() {
            let error = SpecError::new(
                ErrorKind::InvalidValue,
                format!("the {} check has an empty subject", check.kind.key()),
            )
            .with_hint(format!("write what to check after `{}:`", check.kind.key()));
            return Err(source.at(&subject, error));
        }
        let matchers = |field: &str, list: &[String]| -> Result<(), SpecError> {
            let list_path = path.field(field);
            for (k, text) in list.iter().enumerate() {
                Matcher::parse(text).map_err(|e| source.at_item(&list_path, k, e))?;
            }
            Ok(())
        };
        match &check.kind {
            CheckKind::Package { name, version, .. } => {
                names::DEBIAN_PACKAGE
                    .validate(name)
                    .map_err(|e| source.at(&subject, e))?;
                if let Some(version) = version {
                    Matcher::parse(version).map_err(|e| source.at(&path.field("version"), e))?;
                }
            }
            CheckKind::Port { port: text, .. } => {
                port(text).map_err(|e| source.at(&subject, e))?;
            }
            CheckKind::Addr { address, .. } => {
                addr(address).map_err(|e| source.at(&subject, e))?;
            }
            CheckKind::Http {
                url,
                method,
                status,
                body,
                headers,
                ..
            } => {
                http_url(url).map_err(|e| source.at(&subject, e))?;
                if method.is_empty() || !method.chars().all(|c| c.is_ascii_alphabetic()) {
                    let error = SpecError::new(
                        ErrorKind::InvalidValue,
                        format!("invalid HTTP method \"{}\"", method.escape_default()),
                    )
                    .with_hint("use a method such as GET, HEAD, POST, PUT or DELETE");
                    return Err(source.at(&path.field("method"), error));
                }
                if !(100..=599).contains(status) {
                    let error = SpecError::new(
                        ErrorKind::InvalidValue,
                        format!("{status} is not an HTTP status code"),
                    )
                    .with_hint("use a status from 100 to 599, such as 200 or 404");
                    return Err(source.at(&path.field("status"), error));
                }
                matchers("body", body)?;
                let headers_path = path.field("headers");
                for (name, value) in headers {
                    Matcher::parse(value).map_err(|e| source.at(&headers_path.field(name), e))?;
                }
            }
            CheckKind::Command { stdout, stderr, .. } => {
                matchers("stdout", stdout)?;
                matchers("stderr", stderr)?;
            }
            CheckKind::File {
                mode,
                contains,
                filetype,
                ..
            } => {
                if let Some(mode) = mode {
                    file_mode(mode).map_err(|e| source.at(&path.field("mode"), e))?;
                }
                if let Some(filetype) = filetype {
                    if !["file", "directory", "symlink"].contains(&filetype.as_str()) {
                        let error = SpecError::new(
                            ErrorKind::InvalidValue,
                            format!("unknown filetype \"{}\"", filetype.escape_default()),
                        )
                        .with_hint("use one of: file, directory, symlink");
                        return Err(source.at(&path.field("filetype"), error));
                    }
                }
                matchers("contains", contains)?;
            }
            CheckKind::KernelParam { value, .. } => {
                Matcher::parse(value).map_err(|e| source.at(&path.field("value"), e))?;
            }
            CheckKind::Service { .. }
            | CheckKind::User { .. }
            | CheckKind::Group { .. }
            | CheckKind::Process { .. }
            | CheckKind::Dns { .. }
            | CheckKind::Mount { .. }
            | CheckKind::Interface { .. } => {}
        }
        Ok(())
    }
}

fn positive_timeout(
    timeout: std::time::Duration,
    path: &FieldPath,
    source: &Source,
) -> Result<(), SpecError> {
    if timeout.is_zero() {
        let error = SpecError::new(ErrorKind::InvalidValue, "timeout must be longer than zero")
            .with_hint("write a duration with a unit, such as \"30s\" or \"5m\"");
        return Err(source.at(&path.field("timeout"), error));
    }
    Ok(())
}

/// Environment variable names as the shell accepts them.
fn env_name(name: &str) -> Result<(), SpecError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        return Ok(());
    }
    Err(SpecError::new(
        ErrorKind::InvalidName,
        format!(
            "invalid environment variable name \"{}\": it must match [A-Za-z_][A-Za-z0-9_]*",
            name.escape_default()
        ),
    )
    .with_hint("use letters, digits and _, not starting with a digit"))
}

/// An octal mode such as `0644`.
fn file_mode(mode: &str) -> Result<(), SpecError> {
    let digits = match mode.len() {
        5 => mode.strip_prefix('0'),
        3 | 4 => Some(mode),
        _ => None,
    };
    if digits.is_some_and(|d| d.chars().all(|c| ('0'..='7').contains(&c))) {
        return Ok(());
    }
    Err(SpecError::new(
        ErrorKind::InvalidValue,
        format!("invalid mode \"{}\"", mode.escape_default()),
    )
    .with_hint("write the permission bits in octal, such as \"0644\", \"0755\" or \"1777\""))
}

/// A port subject: `tcp:80`, `udp:53` or `80` (tcp); returned as `proto:port`.
pub(super) fn port(text: &str) -> Result<String, SpecError> {
    let (proto, number) = match text.split_once(':') {
        Some((proto, number)) => (proto, number),
        None => ("tcp", text),
    };
    let valid_proto = ["tcp", "udp"].contains(&proto);
    let number = number.parse::<u16>().ok().filter(|n| *n > 0);
    match (valid_proto, number) {
        (true, Some(number)) => Ok(format!("{proto}:{number}")),
        _ => Err(SpecError::new(
            ErrorKind::InvalidValue,
            format!("invalid port \"{}\"", text.escape_default()),
        )
        .with_hint("write `tcp:80`, `udp:53` or just `80` for tcp; ports run from 1 to 65535")),
    }
}

/// An address subject: `tcp://host:port` or `host:port`; returned as
/// `tcp://host:port`.
pub(super) fn addr(text: &str) -> Result<String, SpecError> {
    let invalid = |why: &str| {
        Err(SpecError::new(
            ErrorKind::InvalidValue,
            format!("invalid address \"{}\": {why}", text.escape_default()),
        )
        .with_hint("write `tcp://host:port` or `host:port`, e.g. `web1:80` or `[fd00::2]:443`"))
    };
    let rest = match text.split_once("://") {
        Some(("tcp", rest)) => rest,
        Some((scheme, _)) => {
            return invalid(&format!("scheme {scheme} is not supported, only tcp"))
        }
        None => text,
    };
    let Some((host, number)) = rest.rsplit_once(':') else {
        return invalid("no port");
    };
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || host.contains(char::is_whitespace) || (host.contains(':') && !bracketed) {
        return invalid("bad host");
    }
    match number.parse::<u16>() {
        Ok(number) if number > 0 => Ok(format!("tcp://{host}:{number}")),
        _ => invalid("the port must be a number from 1 to 65535"),
    }
}

/// An `http:` subject: an http or https URL with a host.
fn http_url(url: &str) -> Result<(), SpecError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let host = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    if host.is_some_and(|host| !host.is_empty() && !host.contains(char::is_whitespace)) {
        return Ok(());
    }
    Err(SpecError::new(
        ErrorKind::InvalidValue,
        format!("invalid URL \"{}\"", url.escape_default()),
    )
    .with_hint(
        "write a full URL with a node name as host, such as http://web1/ or https://lb:8443/health",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_normalised() {
        assert_eq!(port("80").ok().as_deref(), Some("tcp:80"));
        assert_eq!(port("udp:53").ok().as_deref(), Some("udp:53"));
        for bad in [
            "",
            "0",
            "65536",
            "http:80",
            "tcp6:80",
            "tcp:",
            "tcp:eighty",
            "80/tcp",
        ] {
            assert!(port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(addr("web1:80").ok().as_deref(), Some("tcp://web1:80"));
        assert_eq!(addr("tcp://lb:443").ok().as_deref(), Some("tcp://lb:443"));
        assert_eq!(
            addr("[fd00::2]:22").ok().as_deref(),
            Some("tcp://[fd00::2]:22")
        );
        for bad in [
            "web1",
            "web1:",
            ":80",
            "udp://x:53",
            "fd00::2:22",
            "web 1:80",
            "web1:0",
        ] {
            assert!(addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_urls_and_env_names() {
        for good in ["644", "0644", "1777", "01777"] {
            assert!(file_mode(good).is_ok(), "{good}");
        }
        for bad in ["", "64", "0648", "rw-r--r--", "001777", "u+x"] {
            assert!(file_mode(bad).is_err(), "{bad}");
        }
        assert!(http_url("http://lb/").is_ok());
        assert!(http_url("https://lb:8443/x?y").is_ok());
        assert!(http_url("lb/").is_err());
        assert!(http_url("http:///x").is_err());
        assert!(env_name("PORT_1").is_ok());
        assert!(env_name("1PORT").is_err());
        assert!(env_name("MY-VAR").is_err());
    }
}
