#[derive(clap::Args)]
pub struct Args {
    cluster: String,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    super::engine()?.reap_when_expired(&args.cluster)?;
    Ok(0)
}
