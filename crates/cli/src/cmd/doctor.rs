use rehearse_sandbox::hostcheck::{self, HostCheck};
use rehearse_sandbox::packages::Need;

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Check only the host packages (host-packages.txt): installed, and their
    /// tools on PATH. Exit 1 if any is missing, needed for clusters or not.
    /// scripts/setup.sh verifies its installs with this.
    #[arg(long)]
    packages: bool,
    /// With --packages: the test suite's packages too.
    #[arg(long, requires = "packages")]
    tests: bool,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    if args.packages {
        return packages(args.tests, json);
    }
    // The command set's host_check, built without an engine: doctor must
    // answer where clusters cannot run (no root, no state directory).
    let report = rehearse_api::types::HostReport::now();
    let ok = report.ok;
    if json {
        print_json(&report);
    } else {
        print_checks(&report.checks);
        println!(
            "{}",
            if ok {
                "this host can run rehearse"
            } else {
                "this host is missing requirements (see above)"
            }
        );
    }
    Ok(if ok { 0 } else { 1 })
}

fn packages(tests: bool, json: bool) -> anyhow::Result<i32> {
    let checks = hostcheck::package_checks(|need| tests || need != Need::Test);
    let missing: Vec<&str> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.trim_start_matches("package "))
        .collect();
    if json {
        print_json(&serde_json::json!({
            "ok": missing.is_empty(),
            "missing": missing,
            "checks": checks,
        }));
    } else {
        print_checks(&checks);
        if missing.is_empty() {
            println!("every host package is present");
        } else {
            println!("missing host packages: {}", missing.join(" "));
        }
    }
    Ok(if missing.is_empty() { 0 } else { 1 })
}

fn print_checks(checks: &[HostCheck]) {
    for c in checks {
        let mark = if c.ok {
            "ok  "
        } else if c.required {
            "FAIL"
        } else {
            "warn"
        };
        println!("{mark} {:<22} {}", c.name, c.detail);
        if let (false, Some(fix)) = (c.ok, &c.fix) {
            println!("     fix: {fix}");
        }
    }
}
