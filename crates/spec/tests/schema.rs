//! The JSON Schemas published in `docs/schema/` are the ones the code generates,
//! so editors validate against the format this version reads.
//!
//! After changing a file form, regenerate them with
//! `REHEARSE_BLESS=1 cargo test -p rehearse-spec --test schema` and commit them.

use std::path::{Path, PathBuf};

use rehearse_spec::scenario::Scenario;
use rehearse_spec::task::Task;
use rehearse_spec::Topology;

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema")
}

#[track_caller]
fn assert_published(file: &str, schema: serde_json::Value) {
    let path = schema_dir().join(file);
    let generated = serde_json::to_string_pretty(&schema).expect("a schema serialises") + "\n";
    if std::env::var_os("REHEARSE_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(schema_dir()).expect("docs/schema can be created");
        std::fs::write(&path, generated).expect("schema can be written");
        return;
    }
    let published = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        published == generated,
        "{} is not the schema this code generates; regenerate it with \
         `REHEARSE_BLESS=1 cargo test -p rehearse-spec --test schema` and commit it",
        path.display()
    );
}

#[test]
fn scenario_schema_is_published() {
    assert_published("scenario.schema.json", Scenario::json_schema());
}

#[test]
fn topology_schema_is_published() {
    assert_published("topology.schema.json", Topology::json_schema());
}

#[test]
fn task_schema_is_published() {
    assert_published("task.schema.json", Task::json_schema());
}
