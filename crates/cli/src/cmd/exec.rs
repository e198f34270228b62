use std::time::Duration;

use serde_json::json;

use rehearse_sandbox::{ExecIo, ExecRequest, SandboxError};

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    /// Node name.
    node: String,
    /// Kill the command after this long (exit code 124).
    #[arg(long, value_parser = super::parse_duration)]
    timeout: Option<Duration>,
    /// Environment variable for the command, KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Working directory inside the node.
    #[arg(long, short = 'w')]
    workdir: Option<String>,
    /// The command and its arguments (use `sh -c '...'` for shell syntax).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err("empty variable name".into());
    }
    Ok((k.to_string(), v.to_string()))
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let engine = super::engine()?;
    let req = ExecRequest {
        argv: args.command,
        env: args.env,
        timeout: args.timeout,
        workdir: args.workdir,
    };
    let (mut out, mut err): (
        Box<dyn std::io::Write + Send>,
        Box<dyn std::io::Write + Send>,
    ) = if json {
        (Box::new(Vec::<u8>::new()), Box::new(Vec::<u8>::new()))
    } else {
        (Box::new(std::io::stdout()), Box::new(std::io::stderr()))
    };
    if json {
        let mut o = Vec::new();
        let mut e = Vec::new();
        let result = engine.exec(
            &args.cluster,
            &args.node,
            &req,
            ExecIo {
                stdin: None,
                stdout: &mut o,
                stderr: &mut e,
            },
        );
        let (code, timed_out) = match result {
            Ok(outcome) => (outcome.exit_code, false),
            Err(SandboxError::Timeout { .. }) => (124, true),
            Err(e) => return Err(e.into()),
        };
        print_json(&json!({
            "cluster": args.cluster, "node": args.node, "exit_code": code, "timed_out": timed_out,
            "stdout": String::from_utf8_lossy(&o), "stderr": String::from_utf8_lossy(&e),
        }));
        return Ok(code);
    }
    let stdin: Option<Box<dyn std::io::Read + Send>> =
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            None
        } else {
            Some(Box::new(std::io::stdin()))
        };
    match engine.exec(
        &args.cluster,
        &args.node,
        &req,
        ExecIo {
            stdin,
            stdout: &mut out,
            stderr: &mut err,
        },
    ) {
        Ok(outcome) => Ok(outcome.exit_code),
        Err(e @ SandboxError::Timeout { .. }) => {
            eprintln!("rehearse: {e}");
            Ok(124)
        }
        Err(e) => Err(e.into()),
    }
}
