//! A converge run: the task, every iteration with its recovery, model calls,
//! troubleshooting commands, checks, code and the diff against the iteration
//! before, then the script that passed, the distilled one and the proof.

use std::fmt::Write;

use rehearse_store::{CommandRow, ConvergeDetail, IterationRecord, LlmCallRecord, RunDetail};

use super::{bar, checks_table};
use crate::dashboard::diff::{self, Line};
use crate::dashboard::html::{badge, duration, esc, output_block, run_duration};
use crate::dashboard::runs::tokens;

pub(super) fn converge(out: &mut String, d: &RunDetail, c: &ConvergeDetail) {
    let _ = write!(
        out,
        "<section id=\"task\"><h2>Task</h2><p class=\"goal\">{goal}</p><dl class=\"facts\">\
         <dt>language</dt><dd>{lang}</dd><dt>model</dt><dd>{model}</dd>\
         <dt>iterations</dt><dd>{n}</dd><dt>model calls</dt><dd>{calls}</dd></dl></section>",
        goal = esc(&c.goal),
        lang = esc(&c.language),
        model = esc(c.model.as_deref().unwrap_or("none (rules only)")),
        n = c.iterations.len(),
        calls = usage(c.iterations.iter().flat_map(|i| &i.llm_calls)),
    );

    out.push_str("<section id=\"iterations\"><h2>Iterations</h2>");
    if c.iterations.is_empty() {
        out.push_str(if d.run.outcome == "running" {
            "<p class=\"muted\">No iteration has ended yet.</p>"
        } else {
            "<p class=\"muted\">No iteration ran.</p>"
        });
    }
    let longest = c
        .iterations
        .iter()
        .map(|i| i.duration_ms)
        .max()
        .unwrap_or(0);
    out.push_str("<ol class=\"timeline iterations\">");
    let mut previous: Option<&IterationRecord> = None;
    for it in &c.iterations {
        iteration(out, it, previous, longest);
        previous = Some(it);
    }
    out.push_str("</ol></section>");

    out.push_str("<section id=\"result\"><h2>Result</h2>");
    match &c.script {
        Some(script) => {
            let _ = write!(out, "<h3>The script that passed</h3>{}", code_block(script));
        }
        None => out.push_str("<p class=\"muted\">No script passed.</p>"),
    }
    if let Some(distilled) = &c.distilled {
        let _ = write!(out, "<h3>Distilled script</h3>{}", code_block(distilled));
        if let Some(script) = &c.script {
            let _ = write!(
                out,
                "<details><summary>changes from the script that passed</summary>{}</details>",
                diff_block(script, distilled)
            );
        }
    }
    let proof = d
        .children
        .iter()
        .find(|r| r.role.as_deref() == Some("proof"));
    match (proof, &c.proof_outcome) {
        (Some(run), _) => {
            let _ = write!(
                out,
                "<p id=\"proof\">Proof on a fresh cluster: {} <a href=\"/runs/{id}\">run {id}</a>{}</p>",
                badge(&run.outcome),
                run.duration_ms()
                    .map(|ms| format!(" in {}", duration(ms.max(0) as u64)))
                    .unwrap_or_default(),
                id = esc(&run.id),
            );
        }
        (None, Some(outcome)) => {
            let _ = write!(out, "<p id=\"proof\">Proof: {}</p>", badge(outcome));
        }
        (None, None) if c.converged => out.push_str(
            "<p id=\"proof\" class=\"muted\">No separate proof run: the code that passed ran whole on a fresh cluster.</p>",
        ),
        (None, None) => {}
    }
    out.push_str("</section>");

    if !d.children.is_empty() {
        out.push_str("<section id=\"children\"><h2>Scenario runs</h2><table class=\"runs\"><thead><tr><th>status</th><th>part</th><th>run</th><th>took</th><th>summary</th></tr></thead><tbody>");
        for r in &d.children {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td><a class=\"mono\" href=\"/runs/{id}\">{id}</a></td><td>{}</td><td>{}</td></tr>",
                badge(&r.outcome),
                esc(r.role.as_deref().unwrap_or("")),
                run_duration(r.duration_ms()),
                esc(r.summary.as_deref().unwrap_or("")),
                id = esc(&r.id),
            );
        }
        out.push_str("</tbody></table></section>");
    }
}

/// `3 calls · 1,200 in / 300 out · $0.01`.
fn usage<'a>(calls: impl Iterator<Item = &'a LlmCallRecord>) -> String {
    let (mut n, mut input, mut output, mut cost) = (0, 0, 0, None::<f64>);
    for c in calls {
        n += 1;
        input += c.input_tokens;
        output += c.output_tokens;
        if let Some(x) = c.cost_usd {
            cost = Some(cost.unwrap_or(0.0) + x);
        }
    }
    if n == 0 {
        return "none".into();
    }
    format!("{n} · {}", tokens(input, output, cost))
}

fn iteration(
    out: &mut String,
    it: &IterationRecord,
    previous: Option<&IterationRecord>,
    longest: u64,
) {
    let _ = write!(
        out,
        "<li class=\"iteration {outcome}\" id=\"iteration-{n}\"><div class=\"line\">{badge} \
         <strong>Iteration {n}</strong> <span class=\"muted\">code from {origin}</span> \
         <span class=\"duration\">{d}</span></div>{bar}",
        outcome = esc(&it.outcome),
        badge = badge(&it.outcome),
        n = it.number,
        origin = esc(&it.origin),
        d = duration(it.duration_ms),
        bar = bar(it.duration_ms, longest),
    );
    if !it.scenario_run_id.is_empty() {
        let _ = write!(
            out,
            "<p>Ran as scenario run <a class=\"mono\" href=\"/runs/{id}\">{id}</a></p>",
            id = esc(&it.scenario_run_id)
        );
    }
    if let Some(failure) = &it.failure {
        let _ = write!(
            out,
            "<h4>What failed</h4><pre class=\"output failure\">{}</pre>",
            esc(failure)
        );
    }
    if let Some(path) = &it.recovery_path {
        let _ = write!(
            out,
            "<p class=\"recovery\">Recovery: <strong>{}</strong>{}{}</p>",
            esc(path),
            it.reason
                .as_deref()
                .map(|r| format!(" — {}", esc(r)))
                .unwrap_or_default(),
            it.fix_rule
                .as_deref()
                .map(|r| format!(" (rule <span class=\"mono\">{}</span>)", esc(r)))
                .unwrap_or_default(),
        );
    }

    if !it.checks.is_empty() {
        out.push_str("<h4>Checks</h4>");
        checks_table(out, &it.checks.iter().collect::<Vec<_>>());
    }

    if !it.llm_calls.is_empty() {
        let _ = write!(
            out,
            "<h4>Model calls</h4><table class=\"calls\"><thead><tr><th>purpose</th><th>tokens in</th>\
             <th>tokens out</th><th>latency</th><th>cost</th></tr></thead><tbody>"
        );
        for call in &it.llm_calls {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\
                 <tr class=\"call-detail\"><td colspan=\"5\"><details><summary>prompt and answer</summary>\
                 <h5>prompt</h5><pre class=\"output\">{}</pre><h5>answer</h5><pre class=\"output\">{}</pre></details></td></tr>",
                esc(&call.purpose),
                call.input_tokens,
                call.output_tokens,
                duration(call.latency_ms),
                call.cost_usd.map(|c| format!("${c:.4}")).unwrap_or_else(|| "—".into()),
                esc(&call.prompt),
                esc(&call.response),
            );
        }
        out.push_str("</tbody></table>");
    }

    if !it.commands.is_empty() {
        out.push_str("<h4>Troubleshooting commands</h4><ol class=\"commands\">");
        for cmd in &it.commands {
            command(out, cmd);
        }
        out.push_str("</ol>");
    }

    match previous {
        Some(prev) => {
            let lines = diff::lines(&prev.code, &it.code);
            let (removed, added) = diff::counts(&lines);
            let _ = write!(
                out,
                "<h4>Code, changed from iteration {}: <span class=\"del-count\">−{removed}</span> \
                 <span class=\"add-count\">+{added}</span></h4>{}\
                 <details><summary>the whole code</summary>{}</details>",
                prev.number,
                render_diff(&lines),
                code_block(&it.code),
            );
        }
        None => {
            let _ = write!(out, "<h4>Code</h4>{}", code_block(&it.code));
        }
    }
    out.push_str("</li>");
}

fn command(out: &mut String, cmd: &CommandRow) {
    let status = match (&cmd.refused, cmd.exit_code) {
        (Some(_), _) => "refused".to_owned(),
        (None, Some(code)) => format!("exit {code}"),
        (None, None) => "did not finish".to_owned(),
    };
    let _ = write!(
        out,
        "<li class=\"command\"><div class=\"line\"><span class=\"mono\">{node}$ {command}</span> \
         <span class=\"muted\">{status} · {d}</span></div><p class=\"why\">{why}</p>",
        node = esc(&cmd.node),
        command = esc(&cmd.command),
        d = duration(cmd.duration_ms),
        why = esc(&cmd.why),
    );
    if let Some(r) = &cmd.refused {
        let _ = write!(out, "<p class=\"error\">Refused: {}</p>", esc(r));
    }
    out.push_str(&output_block(&cmd.output));
    out.push_str("</li>");
}

fn code_block(code: &str) -> String {
    format!("<pre class=\"code\">{}</pre>", esc(code))
}

fn render_diff(lines: &[Line]) -> String {
    let mut out = String::from("<pre class=\"diff\">");
    for line in lines {
        let (class, mark, text) = match line {
            Line::Same(t) => ("same", ' ', t),
            Line::Removed(t) => ("del", '-', t),
            Line::Added(t) => ("add", '+', t),
        };
        // Block-level spans: a newline between them would double the spacing.
        let _ = write!(out, "<span class=\"{class}\">{mark} {}</span>", esc(text));
    }
    out.push_str("</pre>");
    out
}

fn diff_block(old: &str, new: &str) -> String {
    render_diff(&diff::lines(old, new))
}
