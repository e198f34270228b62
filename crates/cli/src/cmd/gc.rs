use anyhow::Context;
use serde_json::json;

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args, json: bool) -> anyhow::Result<i32> {
    let engine = super::engine()?;
    let report = engine.gc()?;
    // Runs whose process died read "aborted" from now on, with why.
    let aborted = rehearse_store::Store::open(engine.history_dir())
        .and_then(|store| store.abort_dead_runs())
        .context("marking the runs of dead processes aborted in the run store")?;
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["aborted_runs"] = json!(aborted);
        print_json(&value);
    } else if report.removed.is_empty() && report.stale_image_builds == 0 && aborted.is_empty() {
        println!("nothing to clean up");
    } else {
        for removed in &report.removed {
            println!("removed cluster {}: {}", removed.cluster, removed.reason);
        }
        for run in &aborted {
            println!("run {} aborted: {}", run.id, run.reason);
        }
        if report.stale_image_builds > 0 {
            println!(
                "removed {} unfinished image build(s)",
                report.stale_image_builds
            );
        }
    }
    Ok(0)
}
