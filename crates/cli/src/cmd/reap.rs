#[derive(clap::Args)]
pub struct Args {
    cluster: String,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    super::engine_without_reaper()?.reap(&args.cluster)?;
    Ok(0)
}
