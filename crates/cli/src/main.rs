//! `rehearse`: a proving ground for infrastructure code.

mod cmd;
mod output;

use clap::Parser;

fn main() {
    let cli = cmd::Cli::parse();
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
