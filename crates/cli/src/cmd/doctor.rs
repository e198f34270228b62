use rehearse_sandbox::doctor;

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args, json: bool) -> anyhow::Result<i32> {
    let checks = doctor::run_checks();
    let ok = checks.iter().all(|c| c.ok || !c.required);
    if json {
        print_json(&serde_json::json!({
            "ok": ok,
            "checks": checks,
            "impairments": rehearse_sandbox::fault::impairment_support(),
        }));
    } else {
        for c in &checks {
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
