//! An evaluation: a row per task and platform (attempts, pass rate,
//! iterations, recovery paths, wall time, tokens, cost), the sums, then every
//! attempt linking to its converge run.

use std::fmt::Write;

use rehearse_converge::eval::{EvalReport, Tally};
use rehearse_store::RunDetail;

use crate::dashboard::html::{badge, duration, esc, run_duration};

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

fn tally_cells(t: &Tally) -> String {
    format!(
        "<td>{}/{}</td><td><strong>{}</strong></td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        t.converged,
        t.attempts,
        percent(t.pass_rate),
        t.mean_iterations,
        esc(&t.recovery_text()),
        duration(t.wall_ms),
        t.input_tokens + t.output_tokens,
        t.cost_usd
            .map(|c| format!("${c:.4}"))
            .unwrap_or_else(|| "-".into()),
    )
}

pub(super) fn eval(out: &mut String, d: &RunDetail, report: Option<&EvalReport>) {
    let head = "<th>passed</th><th>pass rate</th><th>iterations</th><th>recovery</th><th>wall</th><th>tokens</th><th>cost</th>";
    if let Some(r) = report {
        let _ = write!(
            out,
            "<section id=\"eval\"><h2>Tasks</h2><p>model <span class=\"mono\">{}</span> · {} attempt(s) per task, {} at a time · required pass rate {}</p><table class=\"runs\"><thead><tr><th>task</th><th>platform</th>{head}</tr></thead><tbody>",
            esc(r.model.as_deref().unwrap_or("none (rules doctor only)")),
            r.attempts_per_task,
            r.jobs,
            percent(r.min_pass_rate),
        );
        for t in &r.tasks {
            let _ = write!(
                out,
                "<tr><td><strong>{}</strong></td><td>{}</td>{}</tr>",
                esc(&t.task),
                esc(&t.platform),
                tally_cells(&t.tally)
            );
        }
        let _ = write!(
            out,
            "<tr class=\"total\"><td><strong>all</strong></td><td></td>{}</tr></tbody></table></section>",
            tally_cells(&r.total)
        );
    }
    out.push_str("<section id=\"attempts\"><h2>Attempts</h2><table class=\"runs\"><thead><tr><th>status</th><th>attempt</th><th>summary</th><th>tokens</th><th>took</th><th>run</th></tr></thead><tbody>");
    for child in &d.children {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a class=\"mono\" href=\"/runs/{id}\">{id}</a></td></tr>",
            badge(&child.outcome),
            esc(child.role.as_deref().unwrap_or("")),
            esc(child.summary.as_deref().unwrap_or("")),
            child.input_tokens + child.output_tokens,
            run_duration(child.duration_ms()),
            id = esc(&child.id),
        );
    }
    out.push_str("</tbody></table></section>");
}
