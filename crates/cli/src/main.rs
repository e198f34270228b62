//! `rehearse`: a proving ground for infrastructure code.

mod cmd;
mod output;

use std::any::Any;
use std::panic::AssertUnwindSafe;

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
    // A reader that goes away (`rehearse ls --json | head`) ends the command
    // quietly, the way it ends any Unix tool: by SIGPIPE. Writes to stdout
    // fail with EPIPE (Rust ignores the signal), as an error or a panic of
    // `println!`; both are caught here, once, for every command, after the
    // command's guards (clusters, locks) have been dropped on the way out.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_broken_pipe(info.payload()) {
            default_hook(info);
        }
    }));
    let code = match std::panic::catch_unwind(AssertUnwindSafe(|| cmd::run(cli))) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) if closed_stdout(&e) => die_of_sigpipe(),
        Ok(Err(e)) => {
            output::report_error(&e, json);
            1
        }
        Err(payload) if is_broken_pipe(payload.as_ref()) => die_of_sigpipe(),
        Err(payload) => std::panic::resume_unwind(payload),
    };
    std::process::exit(code);
}

/// A panic of `println!` on a closed stdout.
fn is_broken_pipe(payload: &(dyn Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    text.starts_with("failed printing to stdout") && text.contains("Broken pipe")
}

fn closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Ends the process as SIGPIPE's default action does, so the shell sees the
/// usual status (141).
fn die_of_sigpipe() -> ! {
    use nix::sys::signal::{raise, signal, SigHandler, Signal};
    // SAFETY: restoring the default action of a signal installs no handler
    // code; nothing else runs in this process any more.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
    let _ = raise(Signal::SIGPIPE);
    std::process::exit(141)
}
