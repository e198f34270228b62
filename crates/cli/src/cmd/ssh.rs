use std::os::unix::process::CommandExt;

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    /// Node name.
    node: String,
    /// Command to run over SSH instead of a login shell.
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let engine = super::engine()?;
    let state = engine.get(&args.cluster)?;
    state.node(&args.node)?;
    let config = engine.cluster_dir(&state.id).join("ssh/config");
    let err = std::process::Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .arg(&args.node)
        .args(&args.command)
        .exec();
    anyhow::bail!("could not run ssh: {err} (install the Debian package openssh-client)")
}
