//! File formats of rehearse: the topology of a cluster, the golden images its
//! nodes boot from, and the scenarios (steps and checks) run on it.
//!
//! Everything a user writes is parsed and fully validated here, before any node
//! starts, and every refusal says where (file:line:column and field path), what is
//! wrong and how to fix it. The engine then works only with the explicit,
//! validated [`Topology`], [`ImageSpec`] and [`scenario::Scenario`].

pub mod image;
pub mod scenario;
pub mod task;
pub mod topology;
pub mod trials;

mod error;
mod names;
mod source;

pub use error::{ErrorKind, Location, SpecError};
pub use image::{builtin_image, ImageSpec, BUILTIN_IMAGES};
pub use topology::limits;
pub use topology::{
    Egress, NetworkSpec, NodeBackend, NodeLimits, NodeSpec, Topology, DEFAULT_IMAGE,
    DEFAULT_NETWORK, MAX_NETWORKS, MAX_NODES,
};

/// The JSON Schema of a file form, as published for editors.
pub(crate) fn file_schema<T: schemars::JsonSchema>() -> serde_json::Value {
    schema_settings()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// How the schemas of these formats are generated: draft-07 (shared parts
/// under `definitions`), which the YAML and JSON language servers of editors
/// read, with each description's paragraphs on one line as editors show them.
pub(crate) fn schema_settings() -> schemars::generate::SchemaSettings {
    schemars::generate::SchemaSettings::draft07()
        .with_transform(schemars::transform::RecursiveTransform(one_line_paragraphs))
}

/// Joins the lines of each paragraph of a description that a doc comment
/// wrapped.
fn one_line_paragraphs(schema: &mut schemars::Schema) {
    if let Some(serde_json::Value::String(description)) = schema.get_mut("description") {
        *description = description
            .split("\n\n")
            .map(|paragraph| {
                paragraph
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n\n");
    }
}
