use rehearse_api::history::Nothing;
use rehearse_api::Command;

use super::answer;
use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args, json: bool) -> anyhow::Result<i32> {
    let done = answer!(
        super::mcp::api()?.execute(Command::Gc(Nothing {}), None)?,
        Gc
    );
    let report = &done.report;
    if json {
        print_json(&done);
    } else if report.removed.is_empty()
        && report.stale_image_builds == 0
        && done.aborted_runs.is_empty()
    {
        println!("nothing to clean up");
    } else {
        for removed in &report.removed {
            println!("removed cluster {}: {}", removed.cluster, removed.reason);
        }
        for run in &done.aborted_runs {
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
