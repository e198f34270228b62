//! The file form of `faults:`, `load:` and `probes:`. A fault is a mapping with
//! the keys every fault takes (`name`, `at`, `heal_after`, `expect`) and exactly
//! one kind key (`crash:`, `partition:`, ...) holding the kind's fields.

use std::borrow::Cow;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;

use super::{checks, CheckFile, Context, Deferred};
use crate::error::{ErrorKind, SpecError};
use crate::source::FieldPath;
use crate::trials::{FaultAction, LoadSpec, ProbeSpec, ScenarioFault, Span};

/// The keys every fault takes, besides its one kind key.
const COMMON: [&str; 4] = ["name", "at", "heal_after", "expect"];

/// One entry of `faults:`: the keys every fault takes and exactly one kind
/// key. Its schema is that of each kind with the common keys added.
pub(in crate::scenario) struct FaultFile;

/// The keys every fault takes.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct FaultCommon {
    /// Name shown in reports. Default: what the fault does, e.g. `crash web1`.
    name: Option<String>,
    /// When to inject it, counted from the start of the confidence phase (the
    /// loads start at 0). Default: 0.
    at: Option<Span>,
    /// Heal it this long after injecting it. Default: as soon as its `expect`
    /// checks are done.
    heal_after: Option<Span>,
    /// Checks that must hold while the fault is on (the expected outcome).
    #[schemars(default)]
    expect: Vec<Deferred<CheckFile>>,
}

impl JsonSchema for FaultFile {
    fn schema_name() -> Cow<'static, str> {
        "FaultFile".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // The common keys, from their definition when the generator made one.
        let common = generator.subschema_for::<FaultCommon>();
        let common = match common.get("$ref").and_then(serde_json::Value::as_str) {
            Some(reference) => reference
                .rsplit('/')
                .next()
                .and_then(|name| generator.definitions().get(name))
                .cloned()
                .unwrap_or_default(),
            None => common.to_value(),
        };
        let common = common
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut action = FaultAction::json_schema(generator);
        if let Some(kinds) = action
            .get_mut("oneOf")
            .and_then(serde_json::Value::as_array_mut)
        {
            for kind in kinds {
                if let Some(properties) = kind
                    .get_mut("properties")
                    .and_then(serde_json::Value::as_object_mut)
                {
                    properties.extend(common.clone());
                }
            }
        }
        action.insert(
            "description".into(),
            "A fault: exactly one kind key (crash, reboot, partition, link, disk_full, stop_service, kill_service) beside name, at, heal_after and expect.".into(),
        );
        action
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    at: Option<Span>,
    #[serde(default)]
    heal_after: Option<Span>,
    #[serde(default)]
    expect: Vec<Value>,
}

pub(super) fn read_fault(
    value: Value,
    path: &FieldPath,
    cx: &Context,
) -> Result<ScenarioFault, SpecError> {
    let Value::Mapping(map) = value else {
        return Err(cx
            .source
            .value_error(path, "a fault is a mapping such as `crash: {node: web1}`"));
    };
    let mut common = serde_yaml::Mapping::new();
    let mut action = serde_yaml::Mapping::new();
    for (k, v) in map {
        let is_common = k.as_str().is_some_and(|k| COMMON.contains(&k));
        if is_common {
            common.insert(k, v);
        } else {
            action.insert(k, v);
        }
    }
    const KINDS: &str = "crash, reboot, partition, link, disk_full, stop_service, kill_service";
    let keys: Vec<String> = action
        .keys()
        .map(|k| k.as_str().unwrap_or("?").to_string())
        .collect();
    match keys.as_slice() {
        [_] => {}
        [] => {
            let error = SpecError::new(ErrorKind::MissingField, "this fault has no kind key")
                .with_hint(format!(
                    "add one of: {KINDS}, e.g. `- crash: {{node: web1}}`"
                ));
            return Err(cx.source.at(path, error));
        }
        [first, second, ..] => {
            let error = SpecError::new(
                ErrorKind::InvalidValue,
                format!(
                    "this fault has two kind keys (or an unknown key), `{first}` and `{second}`"
                ),
            )
            .with_hint(format!(
                "a fault has exactly one of: {KINDS}; besides it only {}",
                COMMON.join(", ")
            ));
            return Err(cx.source.at_key(path, second, error));
        }
    }
    let kind = keys[0].clone();
    let action: FaultAction = plain(Value::Mapping(action), path, cx)?;
    action.validate().map_err(|m| {
        cx.source.at(
            &path.field(&kind),
            SpecError::new(ErrorKind::InvalidValue, m)
                .with_hint("see docs/scenario.md, section Faults"),
        )
    })?;
    let common: Common = plain(Value::Mapping(common), path, cx)?;
    let expect = common
        .expect
        .into_iter()
        .enumerate()
        .map(|(i, v)| checks::read(v, &path.field("expect").at(i), cx))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ScenarioFault {
        name: common.name.unwrap_or_else(|| action.describe()),
        at: common.at.map(|s| s.0).unwrap_or(Duration::ZERO),
        heal_after: common.heal_after.map(Span::ms),
        expect,
        action,
    })
}

pub(super) fn read_load(
    value: Value,
    path: &FieldPath,
    cx: &Context,
) -> Result<LoadSpec, SpecError> {
    let load: LoadSpec = plain(value, path, cx)?;
    load.validate().map_err(|m| {
        cx.source.at(
            path,
            SpecError::new(ErrorKind::InvalidValue, m)
                .with_hint("see docs/scenario.md, section Load"),
        )
    })?;
    Ok(load)
}

pub(super) fn read_probe(
    value: Value,
    path: &FieldPath,
    cx: &Context,
) -> Result<ProbeSpec, SpecError> {
    plain(value, path, cx)
}

/// Reads a value into `T`, placing serde's complaint at the field it names.
fn plain<T: DeserializeOwned>(
    value: Value,
    path: &FieldPath,
    cx: &Context,
) -> Result<T, SpecError> {
    // serde_yaml reads enums only from YAML tags (`!crash`); as JSON, a
    // mapping with one key is the enum's variant, as users write it.
    let value =
        serde_json::to_value(&value).map_err(|e| cx.source.value_error(path, &e.to_string()))?;
    serde_path_to_error::deserialize::<_, T>(value).map_err(|error| {
        let mut at = path.clone();
        for segment in error.path().iter() {
            at = match segment {
                serde_path_to_error::Segment::Map { key } => at.field(key),
                serde_path_to_error::Segment::Seq { index } => at.at(*index),
                _ => at,
            };
        }
        cx.source.value_error(&at, &error.inner().to_string())
    })
}

/// Every node, group and network a fault, load or probe names must exist.
pub(super) fn validate_names(
    scenario: &crate::scenario::Scenario,
    cx: &Context,
) -> Result<(), SpecError> {
    let topology = &scenario.topology;
    let is_node = |n: &str| topology.node(n).is_some();
    let is_group = |n: &str| {
        topology
            .nodes
            .iter()
            .any(|node| node.groups.iter().any(|g| g == n))
    };
    let unknown = |path: FieldPath, name: &str, what: &str| {
        let nodes: Vec<&str> = topology.nodes.iter().map(|n| n.name.as_str()).collect();
        cx.source.at(
            &path,
            SpecError::new(
                ErrorKind::UnknownTarget,
                format!("unknown {what} \"{name}\" (nodes: {})", nodes.join(", ")),
            )
            .with_hint("name a node of the topology, or add it to `nodes`"),
        )
    };
    for (i, fault) in scenario.faults.iter().enumerate() {
        let path = FieldPath::key("faults").at(i).field(fault.action.kind());
        let groups_allowed = matches!(fault.action, FaultAction::Partition { .. });
        for name in fault.action.targets() {
            if !(is_node(name) || groups_allowed && is_group(name)) {
                let what = if groups_allowed {
                    "node or group"
                } else {
                    "node"
                };
                return Err(unknown(path, name, what));
            }
        }
    }
    for (i, load) in scenario.loads.iter().enumerate() {
        if !is_node(&load.from) {
            return Err(unknown(
                FieldPath::key("load").at(i).field("from"),
                &load.from,
                "node",
            ));
        }
    }
    for (i, probe) in scenario.probes.iter().enumerate() {
        let path = FieldPath::key("probes").at(i).field(probe.kind());
        for name in probe.nodes() {
            if !is_node(name) {
                return Err(unknown(path, name, "node"));
            }
        }
        if let ProbeSpec::Internal { network, .. } = probe {
            if !topology.networks.iter().any(|n| &n.name == network) {
                let known: Vec<&str> = topology.networks.iter().map(|n| n.name.as_str()).collect();
                return Err(cx.source.at(
                    &path.field("network"),
                    SpecError::new(
                        ErrorKind::UnknownTarget,
                        format!(
                            "unknown network \"{network}\" (networks: {})",
                            known.join(", ")
                        ),
                    )
                    .with_hint("name a network of the topology"),
                ));
            }
        }
    }
    Ok(())
}
