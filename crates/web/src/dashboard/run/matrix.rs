//! A platforms matrix: platform × (steps, checks, idempotence, hygiene), each
//! row linking to that platform's run, counted as the terminal's table counts
//! them ([`PlatformReport::row`]).

use std::fmt::Write;

use rehearse_scenario::{MatrixReport, PlatformReport};
use rehearse_store::RunDetail;

use crate::dashboard::html::{badge, esc, run_duration};

pub(super) fn matrix(out: &mut String, d: &RunDetail, report: Option<&MatrixReport>) {
    out.push_str("<section id=\"matrix\"><h2>Platforms</h2><table class=\"runs\"><thead><tr><th>status</th><th>platform</th><th>steps</th><th>checks</th><th>idempotence</th><th>hygiene</th><th>took</th><th>run</th></tr></thead><tbody>");
    for child in &d.children {
        let platform = child
            .role
            .as_deref()
            .and_then(|r| r.strip_prefix("platform "))
            .unwrap_or("");
        // A platform still running has no row in the report yet.
        let row = report
            .and_then(|r| r.platforms.iter().find(|p| p.platform == platform))
            .map(PlatformReport::row);
        let cell = |f: &dyn Fn(&rehearse_scenario::MatrixRow) -> String| {
            row.as_ref().map(f).unwrap_or_else(|| "-".into())
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td><strong>{}</strong></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a class=\"mono\" href=\"/runs/{id}\">{id}</a></td></tr>",
            badge(&child.outcome),
            esc(platform),
            esc(&cell(&|r| r.steps.clone())),
            esc(&cell(&|r| r.checks.clone())),
            esc(&cell(&|r| r.idempotence.clone())),
            esc(&cell(&|r| r.hygiene.to_string())),
            run_duration(child.duration_ms()),
            id = esc(&child.id),
        );
    }
    out.push_str("</tbody></table></section>");
}
