//! The one error type of this crate.
//!
//! A spec error is read by a person fixing a file, or by a program rendering it as
//! JSON, so it is a flat record (where, which field, what, how to fix) rather than a
//! deep enum: every check fills in the same four slots.

use std::fmt;

use serde::Serialize;

/// Where in a spec file an error was found.
///
/// `line` and `column` are 1-based; `0` means "not known" (a YAML parser that
/// reports only a line, or a value the file left implicit), and is not printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file name as the user gave it (the `origin` of `from_yaml`).
    pub file: String,
    /// 1-based line, or 0 when unknown.
    pub line: usize,
    /// 1-based column, or 0 when unknown.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        Ok(())
    }
}

/// What kind of mistake a [`SpecError`] reports: a stable code for JSON output
/// and for callers that react to one kind (for example "file not found").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid YAML.
    Syntax,
    /// A key the format does not know (usually a typo).
    UnknownField,
    /// A required key is absent.
    MissingField,
    /// A value of the wrong type or an unknown enum value.
    InvalidValue,
    /// Two items share a name that must be unique, or a key is repeated.
    Duplicate,
    /// A node, network, group, image, suite or package name breaks its naming rule.
    InvalidName,
    /// A CIDR that cannot be used for a cluster network.
    InvalidCidr,
    /// Two networks of the topology share addresses.
    Overlap,
    /// More nodes on a network than it has addresses.
    Capacity,
    /// A node refers to a network the topology does not declare.
    UndeclaredNetwork,
    /// Too few or too many nodes or networks.
    Limit,
    /// A ttl that is not a positive duration.
    InvalidTtl,
    /// A distribution this version cannot build.
    Unsupported,
    /// A step or check names a node or group the topology does not have.
    UnknownTarget,
    /// A file the spec refers to (a script, playbook or copy source) does not exist.
    MissingFile,
}

impl ErrorKind {
    /// The snake_case code used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Syntax => "syntax",
            ErrorKind::UnknownField => "unknown_field",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::InvalidName => "invalid_name",
            ErrorKind::InvalidCidr => "invalid_cidr",
            ErrorKind::Overlap => "overlap",
            ErrorKind::Capacity => "capacity",
            ErrorKind::UndeclaredNetwork => "undeclared_network",
            ErrorKind::Limit => "limit",
            ErrorKind::InvalidTtl => "invalid_ttl",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::UnknownTarget => "unknown_target",
            ErrorKind::MissingFile => "missing_file",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topology or image spec that must be refused before anything starts.
///
/// Renders as `file:line:col: field: message` followed by an indented `hint:` line,
/// e.g. `topology.yaml:7:11: nodes[2].name: duplicate node name "web1" (first
/// defined at line 4)`. Specs built in code (such as `Topology::with_nodes`) have no
/// location; the caller adds context such as the command-line flag.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SpecError(Box<Details>);

/// The contents of a [`SpecError`], boxed so that `Result<_, SpecError>` stays
/// small on the happy path.
#[derive(Debug, thiserror::Error)]
struct Details {
    kind: ErrorKind,
    location: Option<Location>,
    field: Option<String>,
    message: String,
    hint: Option<String>,
    #[source]
    source: Option<std::io::Error>,
}

impl SpecError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SpecError(Box::new(Details {
            kind,
            location: None,
            field: None,
            message: message.into(),
            hint: None,
            source: None,
        }))
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        let mut error = SpecError::new(ErrorKind::Io, format!("cannot read {}", path.display()));
        error.0.source = Some(source);
        error
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.0.field = Some(field.into());
        self
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }

    pub(crate) fn with_location(mut self, location: Option<Location>) -> Self {
        self.0.location = location;
        self
    }

    /// What kind of mistake this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Where in the file, when the spec came from a file.
    pub fn location(&self) -> Option<&Location> {
        self.0.location.as_ref()
    }

    /// The field path, like `nodes[2].name`, when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        self.0.field.as_deref()
    }

    /// What is wrong, without location, field or hint.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// How to fix it, when there is a useful suggestion.
    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }
}

impl fmt::Display for Details {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_location_field_message_and_hint() {
        let err = SpecError::new(ErrorKind::Duplicate, "duplicate node name \"web1\"")
            .with_field("nodes[2].name")
            .with_hint("give every node a unique name")
            .with_location(Some(Location {
                file: "topology.yaml".into(),
                line: 7,
                column: 11,
            }));
        assert_eq!(
            err.to_string(),
            "topology.yaml:7:11: nodes[2].name: duplicate node name \"web1\"\n  hint: give every node a unique name"
        );
    }

    #[test]
    fn unknown_column_and_missing_parts_are_omitted() {
        let err = SpecError::new(ErrorKind::Syntax, "bad").with_location(Some(Location {
            file: "t.yaml".into(),
            line: 3,
            column: 0,
        }));
        assert_eq!(err.to_string(), "t.yaml:3: bad");
        assert_eq!(
            SpecError::new(ErrorKind::Limit, "too many").to_string(),
            "too many"
        );
    }

    #[test]
    fn io_error_keeps_its_source() {
        let err = SpecError::io(
            std::path::Path::new("/nope.yaml"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(err.to_string(), "cannot read /nope.yaml");
        assert!(std::error::Error::source(&err).is_some());
    }
}
