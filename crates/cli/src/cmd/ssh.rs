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
    let config = super::mcp::api()?.ssh_config(&args.cluster, &args.node)?;
    let err = std::process::Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .arg(&args.node)
        .args(&args.command)
        .exec();
    anyhow::bail!("could not run ssh: {err} (install the Debian package openssh-client)")
}
