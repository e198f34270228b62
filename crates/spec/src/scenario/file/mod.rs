//! The YAML form of a scenario, as users write it: a topology's keys, then steps
//! and checks, each a mapping told apart by its kind key (`shell:`, `http:`, ...).
//!
//! The top level is read by serde straight from the text, so its errors carry
//! serde_yaml's positions. Steps and checks are kept as YAML values until their
//! kind is known and then read into that kind's form; their errors are placed
//! through [`Source`] by field path.

mod checks;
mod keyed;
mod steps;
mod trials;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::Scenario;
use crate::error::{ErrorKind, SpecError};
use crate::source::{FieldPath, Source};
use crate::topology::file::{ttl_example, NetworkFile, NodesField, TopologyFile};
use crate::topology::Topology;

pub(super) use checks::CheckFile;
pub(super) use steps::StepFile;

/// Infrastructure code applied to a disposable cluster, and the checks that say
/// whether it worked.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "rehearse scenario")]
pub(super) struct ScenarioFile {
    /// Name shown in reports. Default: the folder name for `rehearse.yaml`,
    /// otherwise the file name without extension.
    #[serde(default)]
    name: Option<String>,
    /// What the scenario shows, in a sentence.
    #[serde(default)]
    description: Option<String>,
    /// The nodes, as in a topology file: a count (`nodes: 3` gives node1..node3)
    /// or a list of nodes, each a name or a mapping.
    nodes: NodesField,
    /// The networks between nodes, as in a topology file. Default: one network
    /// named `default`.
    #[serde(default)]
    networks: Option<Vec<NetworkFile>>,
    /// How long the cluster may live before it is reclaimed, e.g. `30m`, `2h`.
    #[serde(default)]
    #[schemars(example = ttl_example())]
    ttl: Option<String>,
    /// Resource limits of every node that sets none of its own, as in a
    /// topology file: `memory`, `cpus`, `pids`.
    #[serde(default)]
    limits: Option<crate::topology::file::LimitsFile>,
    /// Images to run the whole scenario on, once each, e.g. `[debian-12,
    /// debian-13, ubuntu-24.04]`: every node that names no `image` of its own
    /// boots the platform's image. Default: one run on the images nodes name.
    #[serde(default)]
    platforms: Option<Vec<String>>,
    /// What is applied to the cluster, in order: shell scripts, Ansible
    /// playbooks, copied files.
    #[serde(default)]
    steps: Vec<Deferred<StepFile>>,
    /// What must hold once the steps have run.
    #[serde(default)]
    checks: Vec<Deferred<CheckFile>>,
    /// Faults injected after the checks (crash, partition, link, disk_full,
    /// stop_service, ...), each with the checks that must hold meanwhile.
    #[serde(default)]
    faults: Vec<Deferred<trials::FaultFile>>,
    /// HTTP load run from a node while the faults happen; its bounds are checks.
    #[serde(default)]
    load: Vec<Deferred<crate::trials::LoadSpec>>,
    /// Attack probes: open ports, SSH password login, internal services, risky
    /// files, TLS endpoints.
    #[serde(default)]
    probes: Vec<Deferred<crate::trials::ProbeSpec>>,
}

/// What reading a step or check needs besides its own text.
pub(super) struct Context<'a> {
    pub source: &'a Source,
    /// The scenario folder, which relative paths are resolved against.
    pub dir: &'a Path,
}

impl ScenarioFile {
    /// Fills in defaults, reads script files and checks that referenced files
    /// exist; the rules of the explicit form are checked afterwards.
    pub(super) fn into_scenario(
        self,
        source: &Source,
        origin: &str,
        dir: &Path,
    ) -> Result<Scenario, SpecError> {
        let pinned = self.nodes.pinned();
        let platforms = self.platforms.unwrap_or_default();
        let topology = Topology::from_file(
            TopologyFile {
                nodes: self.nodes,
                networks: self.networks,
                ttl: self.ttl,
                limits: self.limits,
            },
            source,
        )?;
        let cx = Context { source, dir };
        let steps = self
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, step)| steps::read(step.value, &FieldPath::key("steps").at(i), &cx))
            .collect::<Result<_, _>>()?;
        let checks = self
            .checks
            .into_iter()
            .enumerate()
            .map(|(i, check)| checks::read(check.value, &FieldPath::key("checks").at(i), &cx))
            .collect::<Result<_, _>>()?;
        let faults = self
            .faults
            .into_iter()
            .enumerate()
            .map(|(i, f)| trials::read_fault(f.value, &FieldPath::key("faults").at(i), &cx))
            .collect::<Result<_, _>>()?;
        let loads = self
            .load
            .into_iter()
            .enumerate()
            .map(|(i, l)| trials::read_load(l.value, &FieldPath::key("load").at(i), &cx))
            .collect::<Result<_, _>>()?;
        let probes = self
            .probes
            .into_iter()
            .enumerate()
            .map(|(i, p)| trials::read_probe(p.value, &FieldPath::key("probes").at(i), &cx))
            .collect::<Result<_, _>>()?;
        let scenario = Scenario {
            faults,
            loads,
            probes,
            name: self.name.unwrap_or_else(|| default_name(origin, dir)),
            description: self.description,
            topology,
            platforms,
            pinned,
            steps,
            checks,
            dir: dir.to_path_buf(),
            file: origin.into(),
        };
        trials::validate_names(&scenario, &cx)?;
        Ok(scenario)
    }
}

/// The folder's name for a `rehearse.yaml`, the file's stem otherwise.
fn default_name(origin: &str, dir: &Path) -> String {
    let origin = Path::new(origin);
    let stem = origin.file_stem().and_then(|s| s.to_str());
    if stem != Some("rehearse") {
        if let Some(stem) = stem {
            return stem.to_owned();
        }
    }
    // `.` or an empty path has no name of its own; the folder it stands for does.
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    dir.file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("scenario")
        .to_owned()
}

/// A step or check kept as parsed YAML until its kind is known; its schema is
/// that of `T`.
pub(super) struct Deferred<T> {
    value: serde_yaml::Value,
    form: PhantomData<T>,
}

impl<'de, T> Deserialize<'de> for Deferred<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Deferred {
            value: serde_yaml::Value::deserialize(deserializer)?,
            form: PhantomData,
        })
    }
}

impl<T: JsonSchema> JsonSchema for Deferred<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }

    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

/// One string or a list of them: `on: web` for `on: [web]`, `body: ok` for
/// `body: [ok]`. Numbers and booleans are taken as text.
#[derive(JsonSchema)]
#[schemars(untagged)]
pub(super) enum OneOrMany {
    One(Text),
    Many(Vec<Text>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(text) => vec![text.0],
            OneOrMany::Many(texts) => texts.into_iter().map(|text| text.0).collect(),
        }
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;

        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(Text(text.to_owned())))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(Text(n.to_string())))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(Text(n.to_string())))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut texts = Vec::new();
                while let Some(text) = seq.next_element()? {
                    texts.push(text);
                }
                Ok(OneOrMany::Many(texts))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

/// A list of matchers, or one.
pub(super) fn matchers(list: Option<OneOrMany>) -> Vec<String> {
    list.map(OneOrMany::into_vec).unwrap_or_default()
}

/// The `on` of a step or check: empty for every node. `on: []` is refused rather
/// than read as "every node", which it does not look like.
fn targets(
    on: Option<OneOrMany>,
    path: &FieldPath,
    cx: &Context,
) -> Result<Vec<String>, SpecError> {
    match on {
        None => Ok(Vec::new()),
        Some(OneOrMany::Many(names)) if names.is_empty() => {
            let error = SpecError::new(
                ErrorKind::InvalidValue,
                "`on` is empty, so it selects no node",
            )
            .with_hint("name nodes or groups, or remove `on` to select every node");
            Err(cx.source.at_key(path, "on", error))
        }
        Some(on) => Ok(on.into_vec()),
    }
}

/// A humantime duration such as `30s` or `5m`, or `default` when not written.
fn duration(
    text: Option<DurationText>,
    default: Duration,
    path: &FieldPath,
    cx: &Context,
) -> Result<Duration, SpecError> {
    let Some(DurationText(text)) = text else {
        return Ok(default);
    };
    humantime::parse_duration(text.trim()).map_err(|e| {
        let error = SpecError::new(
            ErrorKind::InvalidValue,
            format!("invalid timeout \"{}\": {e}", text.escape_default()),
        )
        .with_hint("write a duration with a unit, such as \"30s\", \"5m\" or \"1h 30m\"");
        cx.source.at(&path.field("timeout"), error)
    })
}

/// The script or path as a short label: the first line that says something,
/// cut to a readable length.
fn short(text: &str) -> String {
    const MAX: usize = 40;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    let first = lines.next().unwrap_or("");
    let more = lines.next().is_some();
    if first.chars().count() > MAX {
        format!("{}…", first.chars().take(MAX).collect::<String>())
    } else if more {
        format!("{first} …")
    } else {
        first.to_owned()
    }
}

/// " on lb, web", or nothing for every node.
fn on_suffix(on: &[String]) -> String {
    if on.is_empty() {
        String::new()
    } else {
        format!(" on {}", on.join(", "))
    }
}

/// A value used as text: a string, or a number or boolean written without quotes
/// (`PORT: 80`, `value: 1`). Decimal fractions are refused: YAML reads `1.10`
/// as the number 1.1.
pub(super) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl Visitor<'_> for TextVisitor {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, integer or boolean")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text, E> {
                Ok(Text(text.to_owned()))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }

            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Text, E> {
                Ok(Text(b.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Text, E> {
                Err(E::custom(format!(
                    "{n} is read as a decimal number, which may lose digits (1.10 becomes 1.1); \
                     quote it to keep it as written"
                )))
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}

impl JsonSchema for Text {
    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "integer", "boolean"]})
    }
}

/// A duration as written, e.g. `30s`. A bare number is taken as text too, so
/// that its refusal can say that the unit is missing.
pub(super) struct DurationText(String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Text::deserialize(deserializer).map(|text| DurationText(text.0))
    }
}

impl JsonSchema for DurationText {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration with a unit, e.g. \"90s\", \"5m\" or \"1h 30m\".",
            "examples": ["30s", "5m"],
        })
    }
}

/// A mapping of names to text values, in file order: `env`, `extra_vars`.
#[derive(Default, JsonSchema)]
#[schemars(transparent, inline)]
pub(super) struct Vars(#[schemars(with = "BTreeMap<String, Text>")] pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Vars {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VarsVisitor;

        impl<'de> Visitor<'de> for VarsVisitor {
            type Value = Vars;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vars, A::Error> {
                let mut vars = Vec::new();
                while let Some((name, Text(value))) = map.next_entry::<String, Text>()? {
                    vars.push((name, value));
                }
                Ok(Vars(vars))
            }
        }

        deserializer.deserialize_map(VarsVisitor)
    }
}

/// A file mode written as an octal string. An unquoted `644` is a YAML number
/// and refused: `0o644` would arrive as 420.
pub(super) struct Mode(pub String);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModeVisitor;

        impl Visitor<'_> for ModeVisitor {
            type Value = Mode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal mode as a string, such as \"0644\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Mode, E> {
                Ok(Mode(text.to_owned()))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Mode, E> {
                Err(E::custom(format!(
                    "mode {n} is a number; write the mode as a quoted octal string, such as \"0644\""
                )))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Mode, E> {
                Err(E::custom(format!(
                    "mode {n} is a number; write the mode as a quoted octal string, such as \"0644\""
                )))
            }
        }

        deserializer.deserialize_any(ModeVisitor)
    }
}

impl JsonSchema for Mode {
    fn schema_name() -> Cow<'static, str> {
        "Mode".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Octal file mode as a quoted string, e.g. \"0644\" or \"1777\".",
            "pattern": super::rules::MODE_PATTERN,
        })
    }
}
