//! `rehearse`: a proving ground for infrastructure code.

mod cmd;
mod output;

use clap::Parser;

fn main() {
    let cli = cmd::Cli::parse();
    if cli.needs_root() && !rehearse_sandbox::host::is_root() {
        if let Some(sudo) = rehearse_sandbox::host::which("sudo") {
            eprintln!("rehearse needs root (mounts, bridges, namespaces): running it through sudo");
            let e = cmd::rerun_through_sudo(&sudo);
            eprintln!("rehearse: could not start {}: {e}", sudo.display());
            std::process::exit(1);
        }
    }
    output::init_logging(cli.verbose, cli.log_format);
    let json = cli.json;
    let code = match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            output::report_error(&e, json);
            1
        }
    };
    std::process::exit(code);
}
