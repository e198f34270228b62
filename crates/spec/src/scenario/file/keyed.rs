//! Mappings told apart by a kind key: a step is a `shell:`, `ansible:` or `copy:`
//! mapping, a check an `http:`, `file:`, ... mapping, and the kind decides which
//! other keys are allowed.
//!
//! Each kind has its own form (a struct with `deny_unknown_fields`), so the JSON
//! Schema says exactly which keys each kind takes. A family (steps, checks) finds
//! a mapping's kind, reads it into that form, and words serde's refusals for
//! people: which key is wrong, which kind it belongs to, which keys fit here.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::Context;
use crate::error::{ErrorKind, SpecError};
use crate::source::FieldPath;

/// The file form of one kind of step or check.
pub(super) trait Form: DeserializeOwned + JsonSchema {
    /// The key that names this kind and holds its subject (`shell`, `http`).
    const KEY: &'static str;
    /// What the form becomes once defaults are filled in.
    type Explicit;

    fn into_explicit(self, path: &FieldPath, cx: &Context) -> Result<Self::Explicit, SpecError>;
}

/// The kinds of one family, steps or checks.
pub(super) trait Family {
    /// What a member is called in messages: "step", "check".
    const WHAT: &'static str;
    /// The kind keys, in the order they are documented.
    const KINDS: &'static [&'static str];
    /// The keys every kind takes besides its own.
    const COMMON: &'static [&'static str];
    /// A one-line example member, for hints.
    const EXAMPLE: &'static str;

    /// Every key a member of kind `kind` takes, its kind key included.
    fn keys(kind: &str) -> Vec<String>;
}

/// Declares a family: its kinds are the listed forms, and its JSON Schema accepts
/// exactly one of them.
macro_rules! family {
    (
        $(#[$attr:meta])*
        $family:ident: $what:literal => $explicit:ty,
        common: [$($common:literal),*],
        example: $example:literal,
        forms: [$($form:ident),+ $(,)?] $(,)?
    ) => {
        $(#[$attr])*
        pub(in crate::scenario) enum $family {}

        impl $crate::scenario::file::keyed::Family for $family {
            const WHAT: &'static str = $what;
            const KINDS: &'static [&'static str] =
                &[$(<$form as $crate::scenario::file::keyed::Form>::KEY),+];
            const COMMON: &'static [&'static str] = &[$($common),*];
            const EXAMPLE: &'static str = $example;

            fn keys(kind: &str) -> Vec<String> {
                $(
                    if kind == <$form as $crate::scenario::file::keyed::Form>::KEY {
                        return $crate::scenario::file::keyed::keys_of::<$form>();
                    }
                )+
                Vec::new()
            }
        }

        impl $family {
            /// Reads a member whose kind key is `kind` into its explicit form.
            fn read_kind(
                kind: &str,
                value: serde_yaml::Value,
                path: &$crate::source::FieldPath,
                cx: &$crate::scenario::file::Context,
            ) -> Result<$explicit, $crate::error::SpecError> {
                use $crate::scenario::file::keyed::{read_form, Form};
                $(
                    if kind == <$form as Form>::KEY {
                        return read_form::<$form, $family>(value, path, cx)?.into_explicit(path, cx);
                    }
                )+
                unreachable!("kind_of only returns declared kinds")
            }
        }

        impl schemars::JsonSchema for $family {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($family).into()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let description = format!(
                    "One {}: a mapping with exactly one kind key ({}).",
                    $what,
                    [$(<$form as $crate::scenario::file::keyed::Form>::KEY),+].join(", ")
                );
                let forms = [$(generator.subschema_for::<$form>()),+];
                schemars::json_schema!({"description": description, "oneOf": forms})
            }
        }
    };
}

pub(super) use family;

/// The keys of a form, as its JSON Schema lists them.
pub(super) fn keys_of<T: JsonSchema>() -> Vec<String> {
    let root = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
    root.get("properties")
        .and_then(serde_json::Value::as_object)
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
}

/// The kind of a step or check: the one kind key it holds. `group` is both a
/// kind and a key of file checks; a kind key that another written kind takes as
/// its own key does not count.
pub(super) fn kind_of<F: Family>(
    value: &Value,
    path: &FieldPath,
    cx: &Context,
) -> Result<&'static str, SpecError> {
    let what = F::WHAT;
    let Value::Mapping(map) = value else {
        let error = SpecError::new(
            ErrorKind::InvalidValue,
            format!("a {what} must be a mapping, not {}", describe(value)),
        )
        .with_hint(format!(
            "write a mapping whose kind key holds the subject, e.g. `- {}`",
            F::EXAMPLE
        ));
        return Err(cx.source.at(path, error));
    };
    let written: Vec<&'static str> = map
        .keys()
        .filter_map(Value::as_str)
        .filter_map(|key| F::KINDS.iter().copied().find(|kind| *kind == key))
        .collect();
    let kinds: Vec<&'static str> = written
        .iter()
        .copied()
        .filter(|kind| {
            !written
                .iter()
                .any(|other| other != kind && F::keys(other).iter().any(|key| key == kind))
        })
        .collect();
    match kinds.as_slice() {
        [kind] => Ok(kind),
        [] => {
            let error = SpecError::new(
                ErrorKind::MissingField,
                format!("this {what} has no kind key"),
            )
            .with_hint(format!(
                "add one of: {}, e.g. `- {}`",
                F::KINDS.join(", "),
                F::EXAMPLE
            ));
            Err(cx.source.at(path, error))
        }
        [first, second, ..] => {
            let error = SpecError::new(
                ErrorKind::InvalidValue,
                format!("this {what} has two kind keys, `{first}` and `{second}`; a {what} has exactly one"),
            )
            .with_hint(format!("split it into one {what} per kind"));
            Err(cx.source.at_key(path, second, error))
        }
    }
}

/// Reads a member of family `F` into the form `T` of its kind.
pub(super) fn read_form<T: Form, F: Family>(
    value: Value,
    path: &FieldPath,
    cx: &Context,
) -> Result<T, SpecError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|error| {
        let message = error.inner().to_string();
        let mut segments: Vec<&serde_path_to_error::Segment> = error.path().iter().collect();
        let Some(key) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        else {
            return cx.source.value_error(&join(path, &segments), &message);
        };
        // The path ends with the unknown key itself.
        if matches!(segments.last(), Some(serde_path_to_error::Segment::Map { key: k }) if k == key)
        {
            segments.pop();
        }
        let parent = join(path, &segments);
        let error = if parent == *path {
            unknown_key::<F>(T::KEY, key)
        } else {
            SpecError::new(ErrorKind::UnknownField, format!("unknown key `{key}`"))
                .with_hint("remove this key or fix its spelling")
        };
        cx.source.at_key(&parent, key, error)
    })
}

/// "`status` is not a key of file checks", with the keys that are.
fn unknown_key<F: Family>(kind: &str, key: &str) -> SpecError {
    let what = F::WHAT;
    let own: Vec<String> = F::keys(kind)
        .into_iter()
        .filter(|k| k != kind && !F::COMMON.contains(&k.as_str()))
        .collect();
    let owners: Vec<&str> = F::KINDS
        .iter()
        .copied()
        .filter(|other| *other != kind && F::keys(other).iter().any(|k| k == key))
        .collect();
    let message = if !owners.is_empty() {
        format!(
            "`{key}` is not a key of {kind} {what}s (it belongs to {} {what}s)",
            owners.join(", ")
        )
    } else if let Some(near) = closest(
        key,
        own.iter()
            .map(String::as_str)
            .chain(F::COMMON.iter().copied()),
    ) {
        format!("unknown key `{key}` in this {kind} {what} (did you mean `{near}`?)")
    } else {
        format!("unknown key `{key}` in this {kind} {what}")
    };
    let own = if own.is_empty() {
        format!("{kind} {what}s take no keys of their own")
    } else {
        format!("{kind} {what}s take: {}", own.join(", "))
    };
    SpecError::new(ErrorKind::UnknownField, message).with_hint(format!(
        "{own}; every {what} also takes: {}",
        F::COMMON.join(", ")
    ))
}

/// The candidate nearest to `key` by edit distance, if it is near enough to be a
/// typo of it.
fn closest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn join(base: &FieldPath, segments: &[&serde_path_to_error::Segment]) -> FieldPath {
    segments
        .iter()
        .fold(base.clone(), |path, segment| match segment {
            serde_path_to_error::Segment::Seq { index } => path.at(*index),
            serde_path_to_error::Segment::Map { key } => path.field(key),
            serde_path_to_error::Segment::Enum { variant } => path.field(variant),
            _ => path,
        })
}

/// "a string", "a list", ... for messages about a value of the wrong shape.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_near_and_other_words_are_not() {
        let keys = ["status", "method", "body", "headers", "insecure"];
        assert_eq!(closest("statuss", keys.into_iter()), Some("status"));
        assert_eq!(closest("header", keys.into_iter()), Some("headers"));
        assert_eq!(closest("bdy", keys.into_iter()), Some("body"));
        assert_eq!(closest("mode", keys.into_iter()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
