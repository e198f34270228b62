//! What one node may use of the host: memory, CPU time and processes.
//!
//! Written per node (`memory: 512M`, `cpus: 1.5`, `pids: 2048`) or once for
//! every node under a topology's `limits:`; a node's own value wins. A limit
//! left out is the engine's default, which keeps one runaway node from
//! starving the host.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ErrorKind, SpecError};

/// The least memory a node boots with: its systemd, journald, sshd and a
/// shell use about 40 MiB.
pub const MIN_MEMORY: u64 = 64 << 20;
/// The fewest processes and threads a node boots with.
pub const MIN_PIDS: u32 = 64;
/// The most CPUs a limit may name, in thousandths.
const MAX_MILLICPUS: u32 = 1024 * 1000;

/// The limits of one node; `None` leaves the engine's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLimits {
    /// The most memory the node's processes may use, in bytes; past it the
    /// kernel OOM-kills a process of this node only.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "memory_text")]
    pub memory: Option<u64>,
    /// The most CPU time, in thousandths of a CPU (1500 = one and a half).
    #[serde(
        rename = "cpus",
        default,
        skip_serializing_if = "Option::is_none",
        with = "cpus_number"
    )]
    pub millicpus: Option<u32>,
    /// The most processes and threads at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
}

impl NodeLimits {
    /// These limits, each left out filled from `defaults`.
    pub fn or(self, defaults: NodeLimits) -> NodeLimits {
        NodeLimits {
            memory: self.memory.or(defaults.memory),
            millicpus: self.millicpus.or(defaults.millicpus),
            pids: self.pids.or(defaults.pids),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == NodeLimits::default()
    }
}

impl fmt::Display for NodeLimits {
    /// `memory 512 MiB, cpus 1.5, pids 2048`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(m) = self.memory {
            parts.push(format!("memory {}", format_memory(m)));
        }
        if let Some(c) = self.millicpus {
            parts.push(format!("cpus {}", format_cpus(c)));
        }
        if let Some(p) = self.pids {
            parts.push(format!("pids {p}"));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// An amount of memory as written: bytes (`536870912`) or a number with a
/// binary unit (`512M`, `512MiB`, `1.5G`, `2GiB`; K, M, G, T, all powers of 1024).
pub fn parse_memory(text: &str) -> Result<u64, SpecError> {
    let bad = |why: &str| {
        SpecError::new(
            ErrorKind::InvalidValue,
            format!("invalid memory \"{}\": {why}", text.escape_default()),
        )
        .with_hint("write bytes or a number with a unit, such as \"512M\", \"1.5G\" or \"2GiB\"")
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| bad("it does not start with a number"))?;
    let unit = unit.trim();
    let shift = match unit.trim_end_matches(['B', 'b']).trim_end_matches('i') {
        "" if unit.is_empty() || unit.eq_ignore_ascii_case("b") => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return Err(bad(&format!("unknown unit \"{}\"", unit.escape_default()))),
    };
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad("too large"));
    }
    let bytes = bytes.round() as u64;
    validate_memory(bytes).map(|()| bytes)
}

pub(crate) fn validate_memory(bytes: u64) -> Result<(), SpecError> {
    if bytes < MIN_MEMORY {
        return Err(SpecError::new(
            ErrorKind::Limit,
            format!(
                "memory {} is below the {} a node needs to boot",
                format_memory(bytes),
                format_memory(MIN_MEMORY)
            ),
        )
        .with_hint(
            "give the node at least \"64M\"; a node's systemd, journald and sshd use about 40 MiB",
        ));
    }
    Ok(())
}

/// CPUs as written (`1`, `0.5`, `2.25`), in thousandths.
pub fn parse_cpus(cpus: f64) -> Result<u32, SpecError> {
    let milli = (cpus * 1000.0).round();
    if !cpus.is_finite() || milli < 10.0 || milli > f64::from(MAX_MILLICPUS) {
        return Err(
            SpecError::new(ErrorKind::Limit, format!("cpus {cpus} is out of range"))
                .with_hint("write a number of CPUs from 0.01 to 1024, such as 0.5, 1 or 2"),
        );
    }
    Ok(milli as u32)
}

pub(crate) fn validate_pids(pids: u64) -> Result<u32, SpecError> {
    match u32::try_from(pids) {
        Ok(p) if (MIN_PIDS..=4_194_304).contains(&p) => Ok(p),
        _ => Err(
            SpecError::new(ErrorKind::Limit, format!("pids {pids} is out of range")).with_hint(
                format!(
                    "allow from {MIN_PIDS} (a booting node needs about 30) to 4194304 processes"
                ),
            ),
        ),
    }
}

/// `512 MiB`, `1.5 GiB`, `100 B`.
pub fn format_memory(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        let size = 1u64 << shift;
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if bytes.is_multiple_of(size) {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{value:.1} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

/// `1.5`, `2`, `0.25`.
pub fn format_cpus(millicpus: u32) -> String {
    let whole = millicpus / 1000;
    let frac = millicpus % 1000;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_owned()
    }
}

/// Memory written back exactly, in the form [`parse_memory`] reads.
mod memory_text {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) if bytes.is_multiple_of(1 << 20) => {
                s.collect_str(&format!("{}M", bytes >> 20))
            }
            Some(bytes) => s.serialize_u64(*bytes),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<MemoryField>::deserialize(d)? {
            None => Ok(None),
            Some(MemoryField::Bytes(b)) => Ok(Some(b)),
            Some(MemoryField::Text(t)) => parse_memory(&t).map(Some).map_err(de::Error::custom),
        }
    }
}

mod cpus_number {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(milli) => s.serialize_f64(f64::from(*milli) / 1000.0),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            None => Ok(None),
            Some(c) => parse_cpus(c).map(Some).map_err(de::Error::custom),
        }
    }
}

/// The YAML form of limits, shared by a node and a topology's `limits:`.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsFile {
    /// The most memory the node may use, e.g. `512M`, `2G` (powers of 1024);
    /// past it the kernel OOM-kills a process of this node only. Default:
    /// half the host's memory.
    #[serde(default)]
    pub(crate) memory: Option<MemoryField>,
    /// The most CPU time, in CPUs, e.g. `0.5`, `2`. Default: no cap (nodes
    /// share the CPUs fairly).
    #[serde(default)]
    pub(crate) cpus: Option<f64>,
    /// The most processes and threads at once, e.g. `2048`. Default: 4096.
    #[serde(default)]
    pub(crate) pids: Option<u64>,
}

/// Memory as YAML has it: a number of bytes or a text with a unit.
#[derive(JsonSchema)]
#[schemars(untagged)]
pub(crate) enum MemoryField {
    Bytes(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for MemoryField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MemoryField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount of memory such as 512M or 2G")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MemoryField, E> {
                Ok(MemoryField::Bytes(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MemoryField, E> {
                Ok(MemoryField::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Which field of the limits an error is about.
pub(crate) enum Field {
    Memory,
    Cpus,
    Pids,
}

impl Field {
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Field::Memory => "memory",
            Field::Cpus => "cpus",
            Field::Pids => "pids",
        }
    }
}

impl LimitsFile {
    /// The limits written, checked; an error names the field it is about.
    pub(crate) fn into_limits(self) -> Result<NodeLimits, (Field, SpecError)> {
        let memory = match self.memory {
            None => None,
            Some(MemoryField::Bytes(b)) => Some(
                validate_memory(b)
                    .map(|()| b)
                    .map_err(|e| (Field::Memory, e))?,
            ),
            Some(MemoryField::Text(t)) => Some(parse_memory(&t).map_err(|e| (Field::Memory, e))?),
        };
        let millicpus = self
            .cpus
            .map(parse_cpus)
            .transpose()
            .map_err(|e| (Field::Cpus, e))?;
        let pids = self
            .pids
            .map(validate_pids)
            .transpose()
            .map_err(|e| (Field::Pids, e))?;
        Ok(NodeLimits {
            memory,
            millicpus,
            pids,
        })
    }
}

/// Checks limits built in code (the file form is checked as it is read).
pub(crate) fn validate(limits: &NodeLimits) -> Result<(), (Field, SpecError)> {
    if let Some(m) = limits.memory {
        validate_memory(m).map_err(|e| (Field::Memory, e))?;
    }
    if let Some(c) = limits.millicpus {
        parse_cpus(f64::from(c) / 1000.0).map_err(|e| (Field::Cpus, e))?;
    }
    if let Some(p) = limits.pids {
        validate_pids(u64::from(p)).map_err(|e| (Field::Pids, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_in_binary_units() {
        assert_eq!(parse_memory("512M").unwrap(), 512 << 20);
        assert_eq!(parse_memory("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_memory("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_memory("2 gb").unwrap(), 2 << 30);
        assert_eq!(parse_memory("134217728").unwrap(), 128 << 20);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("512X").is_err());
        assert!(parse_memory("16M")
            .unwrap_err()
            .to_string()
            .contains("below"));
    }

    #[test]
    fn cpus_and_pids_have_ranges() {
        assert_eq!(parse_cpus(1.5).unwrap(), 1500);
        assert_eq!(parse_cpus(0.25).unwrap(), 250);
        assert!(parse_cpus(0.0).is_err());
        assert!(parse_cpus(-1.0).is_err());
        assert!(parse_cpus(f64::NAN).is_err());
        assert_eq!(validate_pids(2048).unwrap(), 2048);
        assert!(validate_pids(10).is_err());
        assert!(validate_pids(u64::MAX).is_err());
    }

    #[test]
    fn limits_are_shown_as_written() {
        let l = NodeLimits {
            memory: Some(512 << 20),
            millicpus: Some(1500),
            pids: Some(2048),
        };
        assert_eq!(l.to_string(), "memory 512 MiB, cpus 1.5, pids 2048");
        assert_eq!(NodeLimits::default().to_string(), "none");
        assert_eq!(format_cpus(250), "0.25");
        assert_eq!(format_memory(3 << 29), "1.5 GiB");
    }
}
