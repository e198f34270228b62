use std::time::Duration;

use rehearse_api::streams::{ExecIo, ExecRequest};

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    /// Node name.
    node: String,
    /// Kill the command after this long (exit code 124). Default: never; with
    /// --json, 5m, the default of the command set's exec (as over MCP).
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
    if json {
        return run_json(args);
    }
    let api = super::mcp::api()?;
    let req = ExecRequest {
        argv: args.command,
        env: args.env,
        timeout: args.timeout,
        workdir: args.workdir,
    };
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let stdin: Option<Box<dyn std::io::Read + Send>> =
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            None
        } else {
            Some(Box::new(std::io::stdin()))
        };
    let io = ExecIo {
        stdin,
        stdout: &mut out,
        stderr: &mut err,
    };
    match api.exec_streaming(&args.cluster, &args.node, &req, io) {
        Ok(outcome) => Ok(outcome.exit_code),
        // Timed out: 124, like timeout(1).
        Err(e) if e.code == rehearse_api::ErrorCode::Timeout => {
            eprintln!("rehearse: {}", e.message);
            Ok(124)
        }
        Err(e) => Err(e.into()),
    }
}

/// `exec --json` is the command set's `exec`, so the document is the one an
/// MCP client gets (outputs beyond 64 KiB cut, with an output_id).
fn run_json(args: Args) -> anyhow::Result<i32> {
    let request = rehearse_api::types::ExecRequest {
        cluster: args.cluster,
        node: args.node,
        command: shell_words(&args.command),
        env: args.env.into_iter().collect(),
        workdir: args.workdir,
        timeout_s: args.timeout.map(|t| t.as_secs_f64()),
    };
    match super::mcp::api()?.execute(rehearse_api::Command::Exec(request), None) {
        Ok(outcome) => {
            let result = super::answer!(outcome, Exec);
            print_json(&result);
            Ok(result.exit_code)
        }
        // Timed out: 124, like timeout(1) and plain `exec`.
        Err(e) if e.code == rehearse_api::ErrorCode::Timeout => {
            crate::output::report_error(&e.into(), true);
            Ok(124)
        }
        Err(e) => Err(e.into()),
    }
}

/// The argv as one `sh -c` command that runs exactly it.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn argv_survives_the_shell() {
        let argv = ["sh", "-c", "echo \"$A\" 'it''s' $(pwd)"].map(String::from);
        let out = std::process::Command::new("sh")
            .args(["-c", &super::shell_words(&argv)])
            .env("A", "x y")
            .current_dir("/")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x y its /\n");
    }
}
