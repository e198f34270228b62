//! Positions of fields in a YAML file, so that errors found after deserialisation
//! can still point at a line.
//!
//! serde_yaml reports a position only for its own errors; once a value is
//! deserialised the positions are gone. Semantic checks (duplicate names,
//! overlapping networks, …) therefore name the offending field by path, and
//! [`Source`] maps that path back to a line and column using a second parse of the
//! same text with yaml-rust2, whose event parser keeps a marker for every node.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

use crate::error::{ErrorKind, Location, SpecError};

/// A path to a field of a spec, rendered like `nodes[2].networks[0]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<Segment>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl FieldPath {
    pub(crate) fn key(name: &str) -> Self {
        FieldPath(vec![Segment::Key(name.to_owned())])
    }

    pub(crate) fn at(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    pub(crate) fn field(&self, name: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(name.to_owned()));
        path
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A 1-based position in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Pos {
    fn from(marker: Marker) -> Self {
        // yaml-rust2 counts lines from 1 but columns from 0.
        Pos {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }
}

/// The shape of a YAML document with the position of every node.
#[derive(Debug)]
enum Node {
    Scalar(Pos),
    Sequence(Pos, Vec<Node>),
    Mapping(Pos, Vec<Entry>),
}

#[derive(Debug)]
struct Entry {
    key: String,
    key_pos: Pos,
    value: Node,
}

impl Node {
    fn pos(&self) -> Pos {
        match self {
            Node::Scalar(pos) | Node::Sequence(pos, _) | Node::Mapping(pos, _) => *pos,
        }
    }
}

/// A key written twice in one mapping; serde reports it without a useful position.
#[derive(Debug)]
struct DuplicateKey {
    path: FieldPath,
    first: Pos,
    second: Pos,
}

/// Builds the [`Node`] tree from parser events.
struct TreeBuilder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    duplicate: Option<DuplicateKey>,
}

impl TreeBuilder<'_> {
    fn next(&mut self) -> Option<(Event, Marker)> {
        self.parser.next_token().ok()
    }

    /// Reads one node whose first event is `event`; `None` if the text does not parse.
    fn node(&mut self, event: Event, marker: Marker, path: &FieldPath) -> Option<Node> {
        match event {
            Event::Scalar(..) | Event::Alias(_) => Some(Node::Scalar(marker.into())),
            Event::SequenceStart(..) => {
                let mut items = Vec::new();
                loop {
                    let (event, marker) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    let item = self.node(event, marker, &path.at(items.len()))?;
                    items.push(item);
                }
                Some(Node::Sequence(marker.into(), items))
            }
            Event::MappingStart(..) => {
                let mut entries: Vec<Entry> = Vec::new();
                loop {
                    let (event, key_marker) = self.next()?;
                    let key = match event {
                        Event::MappingEnd => break,
                        Event::Scalar(key, ..) => key,
                        // Complex keys never occur in spec files; skip their value.
                        other => {
                            self.node(other, key_marker, path)?;
                            String::new()
                        }
                    };
                    let (event, marker) = self.next()?;
                    let value = self.node(event, marker, &path.field(&key))?;
                    if let Some(first) = entries.iter().find(|e| e.key == key) {
                        self.duplicate.get_or_insert(DuplicateKey {
                            path: path.field(&key),
                            first: first.key_pos,
                            second: key_marker.into(),
                        });
                    }
                    entries.push(Entry {
                        key,
                        key_pos: key_marker.into(),
                        value,
                    });
                }
                // The marker of a block mapping's start lies after its first key,
                // so a mapping is placed at its first key instead.
                let pos = entries.first().map_or(marker.into(), |e| e.key_pos);
                Some(Node::Mapping(pos, entries))
            }
            _ => None,
        }
    }
}

/// Positions of the nodes of a YAML text; empty when the text does not parse.
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    root: Option<Node>,
    duplicate: Option<DuplicateKey>,
}

impl SourceMap {
    pub(crate) fn parse(text: &str) -> SourceMap {
        let mut builder = TreeBuilder {
            parser: Parser::new_from_str(text),
            duplicate: None,
        };
        let mut root = None;
        // Skip StreamStart and DocumentStart, then read the first document's node.
        while let Some((event, marker)) = builder.next() {
            match event {
                Event::StreamStart | Event::DocumentStart | Event::Nothing => continue,
                Event::StreamEnd | Event::DocumentEnd => break,
                event => {
                    root = builder.node(event, marker, &FieldPath::default());
                    break;
                }
            }
        }
        SourceMap {
            root,
            duplicate: builder.duplicate,
        }
    }

    /// The position of the field at `path`, or of its nearest written ancestor when
    /// the field itself was left implicit (a default, or `nodes: 3`).
    fn locate(&self, path: &FieldPath) -> Option<Pos> {
        let mut node = self.root.as_ref()?;
        for segment in &path.0 {
            let next = match (segment, node) {
                (Segment::Key(key), Node::Mapping(_, entries)) => {
                    entries.iter().find(|e| &e.key == key).map(|e| &e.value)
                }
                (Segment::Index(index), Node::Sequence(_, items)) => items.get(*index),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        Some(node.pos())
    }

    /// The node written at exactly `path`, if any.
    fn node_at(&self, path: &FieldPath) -> Option<&Node> {
        let mut node = self.root.as_ref()?;
        for segment in &path.0 {
            node = match (segment, node) {
                (Segment::Key(k), Node::Mapping(_, entries)) => {
                    &entries.iter().find(|e| &e.key == k)?.value
                }
                (Segment::Index(i), Node::Sequence(_, items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The position of the key (not the value) at `path`: an unknown key is best
    /// shown where it is written.
    fn locate_key(&self, parent: &FieldPath, key: &str) -> Option<Pos> {
        match self.node_at(parent)? {
            Node::Mapping(_, entries) => entries.iter().find(|e| e.key == key).map(|e| e.key_pos),
            _ => None,
        }
    }
}

/// Where a spec came from: a named file with positions, or code (no positions).
pub(crate) struct Source {
    origin: Option<String>,
    map: SourceMap,
}

impl Source {
    /// A spec built in code; its errors carry a field but no location.
    pub(crate) fn detached() -> Source {
        Source {
            origin: None,
            map: SourceMap::default(),
        }
    }

    pub(crate) fn file(origin: &str, text: &str) -> Source {
        Source {
            origin: Some(origin.to_owned()),
            map: SourceMap::parse(text),
        }
    }

    fn location(&self, pos: Option<Pos>) -> Option<Location> {
        let origin = self.origin.as_ref()?;
        let pos = pos.unwrap_or(Pos { line: 0, column: 0 });
        Some(Location {
            file: origin.clone(),
            line: pos.line,
            column: pos.column,
        })
    }

    /// The 1-based line of the field at `path`, when known.
    pub(crate) fn line_of(&self, path: &FieldPath) -> Option<usize> {
        self.origin.as_ref()?;
        self.map.locate(path).map(|pos| pos.line)
    }

    /// Names `path` in `error` and places it in the file.
    pub(crate) fn at(&self, path: &FieldPath, error: SpecError) -> SpecError {
        let error = error.with_location(self.location(self.map.locate(path)));
        if path.0.is_empty() {
            // The document itself: there is no field to name.
            return error;
        }
        error.with_field(path.to_string())
    }

    /// Reads `T` from a spec given as an already parsed value (the JSON of a
    /// request) rather than as text. serde's refusals name the field they
    /// concern, classified and hinted like [`Source::yaml_error`] does for text.
    pub(crate) fn deserialize<T: DeserializeOwned>(
        &self,
        value: serde_json::Value,
    ) -> Result<T, SpecError> {
        serde_path_to_error::deserialize(value).map_err(|error| {
            let message = error.inner().to_string();
            let mut path = FieldPath::default();
            for segment in error.path().iter() {
                path = match segment {
                    serde_path_to_error::Segment::Seq { index } => path.at(*index),
                    serde_path_to_error::Segment::Map { key } => path.field(key),
                    serde_path_to_error::Segment::Enum { variant } => path.field(variant),
                    serde_path_to_error::Segment::Unknown => path,
                };
            }
            let Some(key) = backticked(&message, "unknown field `") else {
                return self.value_error(&path, &message);
            };
            // Name the unknown key itself, once.
            if path.0.last() == Some(&Segment::Key(key.to_owned())) {
                path.0.pop();
            }
            let error = SpecError::new(ErrorKind::UnknownField, message.as_str())
                .with_hint("remove this key or fix its spelling");
            self.at_key(&path, key, error)
        })
    }

    /// Names the key `key` of the mapping at `parent` in `error` and places it where
    /// the key is written (rather than at its value).
    pub(crate) fn at_key(&self, parent: &FieldPath, key: &str, error: SpecError) -> SpecError {
        let path = parent.field(key);
        let pos = self
            .map
            .locate_key(parent, key)
            .or_else(|| self.map.locate(&path));
        error
            .with_location(self.location(pos))
            .with_field(path.to_string())
    }

    /// Like [`Source::at`] for item `index` of the list at `list`, except that a
    /// list written as a single value (`on: web` for `on: [web]`) is named and
    /// placed as that value.
    pub(crate) fn at_item(&self, list: &FieldPath, index: usize, error: SpecError) -> SpecError {
        match self.map.node_at(list) {
            Some(Node::Scalar(_)) if index == 0 => self.at(list, error),
            _ => self.at(&list.at(index), error),
        }
    }

    /// An error serde reported for the value at `path` after the text was parsed
    /// (so without a position of its own), classified and placed like
    /// [`Source::yaml_error`] does for errors found while parsing.
    pub(crate) fn value_error(&self, path: &FieldPath, message: &str) -> SpecError {
        // The text parsed already, so what classify takes for syntax is a value
        // refused by a custom rule, whose message says what to write.
        let (kind, hint) = match classify(message) {
            (ErrorKind::Syntax, _) => (
                ErrorKind::InvalidValue,
                "give this field a value of the expected kind".to_owned(),
            ),
            other => other,
        };
        self.at(path, SpecError::new(kind, message).with_hint(hint))
    }

    /// A key written twice in one mapping, found while mapping positions.
    pub(crate) fn duplicate_key(&self) -> Option<SpecError> {
        let duplicate = self.map.duplicate.as_ref()?;
        let key = match duplicate.path.0.last() {
            Some(Segment::Key(key)) => key.as_str(),
            _ => "",
        };
        let error = SpecError::new(
            ErrorKind::Duplicate,
            format!(
                "key `{key}` is written twice in one mapping (first at line {})",
                duplicate.first.line
            ),
        )
        .with_hint("keep one of the two; YAML does not merge repeated keys")
        .with_field(duplicate.path.to_string());
        Some(error.with_location(self.location(Some(duplicate.second))))
    }

    /// Turns a serde_yaml error into a [`SpecError`] with file:line:column, the
    /// field path serde_yaml tracked, and a hint for the common kinds of mistake.
    pub(crate) fn yaml_error(&self, error: &serde_yaml::Error) -> SpecError {
        let mut message = error.to_string();
        let mut pos = None;
        if let Some(location) = error.location() {
            // serde_yaml appends the position to its message; it goes in front instead.
            let suffix = format!(" at line {} column {}", location.line(), location.column());
            if let Some(at) = message.find(&suffix) {
                message.replace_range(at..at + suffix.len(), "");
            }
            pos = Some(Pos {
                line: location.line(),
                column: location.column(),
            });
        }
        let (path, message) = split_path(&message);
        let mut field = path.map(str::to_owned);

        let (kind, hint) = if let Some(key) = backticked(message, "unknown field `") {
            // Name the unknown key itself and point at it rather than its mapping.
            let parent = field.as_deref().map(parse_path).unwrap_or_default();
            if let Some(key_pos) = self.map.locate_key(&parent, key) {
                pos = Some(key_pos);
            }
            field = Some(match &field {
                Some(parent) => format!("{parent}.{key}"),
                None => key.to_owned(),
            });
            (
                ErrorKind::UnknownField,
                "remove this key or fix its spelling".to_owned(),
            )
        } else {
            classify(message)
        };
        let mut error = SpecError::new(kind, message)
            .with_hint(hint)
            .with_location(self.location(pos));
        if let Some(field) = field {
            error = error.with_field(field);
        }
        error
    }
}

/// The kind of a serde error message, and a hint for fixing it.
fn classify(message: &str) -> (ErrorKind, String) {
    if let Some(key) = backticked(message, "missing field `") {
        (ErrorKind::MissingField, format!("add the `{key}` key"))
    } else if message.starts_with("unknown variant") {
        (
            ErrorKind::InvalidValue,
            "use one of the values listed".to_owned(),
        )
    } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
        (
            ErrorKind::InvalidValue,
            "give this field a value of the expected kind".to_owned(),
        )
    } else if message.contains("more than one document") {
        (
            ErrorKind::Syntax,
            "keep one YAML document per file: remove the extra `---` and what follows".to_owned(),
        )
    } else {
        (
            ErrorKind::Syntax,
            "fix the YAML syntax here: check indentation, quoting and the `:` after each key"
                .to_owned(),
        )
    }
}

/// Reads a spec file; the error names the path as given.
pub(crate) fn read(path: &Path) -> Result<String, SpecError> {
    std::fs::read_to_string(path).map_err(|source| SpecError::io(path, source))
}

/// Splits serde_yaml's `nodes[0].name: message` into path and message.
fn split_path(message: &str) -> (Option<&str>, &str) {
    if let Some((head, rest)) = message.split_once(": ") {
        let is_path = !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c));
        if is_path && head != "." {
            return (Some(head), rest);
        }
    }
    (None, message)
}

/// The text between `prefix` and the next backtick, when `message` starts with `prefix`.
fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// Parses a path rendered by serde_yaml (`nodes[0].networks`) back into segments.
fn parse_path(text: &str) -> FieldPath {
    let mut segments = Vec::new();
    for part in text.split('.') {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            segments.push(Segment::Key(key.to_owned()));
        }
        for index in pieces {
            if let Ok(index) = index.trim_end_matches(']').parse() {
                segments.push(Segment::Index(index));
            }
        }
    }
    FieldPath(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
nodes:
  - name: lb
    networks: [front, back]
  - web1
networks:
  - name: front
";

    #[test]
    fn paths_render_like_field_accessors() {
        let path = FieldPath::key("nodes").at(2).field("networks").at(0);
        assert_eq!(path.to_string(), "nodes[2].networks[0]");
        assert_eq!(parse_path("nodes[2].networks[0]"), path);
    }

    #[test]
    fn locates_values_and_falls_back_to_the_nearest_written_ancestor() {
        let map = SourceMap::parse(TEXT);
        let nodes = FieldPath::key("nodes");
        let at = |path: &FieldPath| map.locate(path).map(|p| (p.line, p.column));
        assert_eq!(at(&nodes.at(0).field("name")), Some((2, 11)));
        assert_eq!(at(&nodes.at(0).field("networks").at(1)), Some((3, 23)));
        // A shorthand entry stands for its own name.
        assert_eq!(at(&nodes.at(1).field("name")), Some((4, 5)));
        // An implicit field is placed at its node.
        assert_eq!(at(&nodes.at(1).field("image")), Some((4, 5)));
        assert_eq!(at(&FieldPath::key("networks").at(0)), Some((6, 5)));
        assert_eq!(
            map.locate_key(&nodes.at(0), "networks").map(|p| p.line),
            Some(3)
        );
    }

    #[test]
    fn finds_repeated_keys() {
        let source = Source::file("t.yaml", "nodes: 2\nttl: 1h\nnodes: 3\n");
        let error = source.duplicate_key().expect("duplicate key found");
        assert_eq!(error.location().map(|l| l.line), Some(3));
        assert_eq!(error.field(), Some("nodes"));
        assert_eq!(error.kind(), ErrorKind::Duplicate);
    }

    #[test]
    fn splits_only_real_paths() {
        assert_eq!(
            split_path("nodes[0].name: invalid type: sequence"),
            (Some("nodes[0].name"), "invalid type: sequence")
        );
        assert_eq!(
            split_path("invalid type: sequence"),
            (None, "invalid type: sequence")
        );
    }
}
