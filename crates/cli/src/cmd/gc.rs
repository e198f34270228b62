use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args, json: bool) -> anyhow::Result<i32> {
    let engine = super::engine()?;
    let report = engine.gc()?;
    if json {
        print_json(&report);
    } else if report.expired.is_empty()
        && report.orphaned.is_empty()
        && report.stale_image_builds == 0
    {
        println!("nothing to clean up");
    } else {
        for id in &report.expired {
            println!("removed expired cluster {id}");
        }
        for id in &report.orphaned {
            println!("removed orphaned cluster {id}");
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
