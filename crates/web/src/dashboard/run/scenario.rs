//! A scenario run: its timeline, every step with each node's output, the
//! idempotence verdict, the checks of each phase and the hygiene findings.
//! Steps and checks come from the run store's rows (so a running run shows
//! them as they end); the rest from the run's [`RunReport`].

use std::fmt::Write;

use rehearse_runner::{AnsibleReport, Change, NodeOutput};
use rehearse_scenario::{name_of, Finding, Idempotence, RunReport, StepDetail, Timings};
use rehearse_store::{CheckRow, RunDetail, StepRow};

use super::{bar, checks_table};
use crate::dashboard::html::{badge, duration, esc, output_block};

pub(super) fn scenario(out: &mut String, d: &RunDetail, report: Option<&RunReport>) {
    if let Some(report) = report {
        phases(out, &report.timings);
        if let Some(e) = &report.error {
            let _ = write!(out, "<p class=\"error\">{}</p>", esc(e));
        }
    }

    out.push_str("<section id=\"steps\"><h2>Steps</h2>");
    let longest = d.steps.iter().map(|s| s.duration_ms).max().unwrap_or(0);
    for (pass, title) in [
        ("first", None),
        ("second", Some("Second run (idempotence)")),
    ] {
        let steps: Vec<&StepRow> = d.steps.iter().filter(|s| s.pass == pass).collect();
        if steps.is_empty() {
            continue;
        }
        if let Some(t) = title {
            let _ = write!(out, "<h3>{t}</h3>");
        }
        out.push_str("<ol class=\"timeline\">");
        for s in steps {
            step(out, s, longest);
        }
        out.push_str("</ol>");
    }
    if d.steps.is_empty() {
        out.push_str(if d.run.outcome == "running" {
            "<p class=\"muted\">No step has ended yet.</p>"
        } else {
            "<p class=\"muted\">No step ran.</p>"
        });
    }
    out.push_str("</section>");

    if let Some(idem) = report.and_then(|r| r.idempotence.as_ref()) {
        idempotence(out, idem);
    }

    for (phase, title) in [
        ("checks", "Checks"),
        ("after_second_run", "Checks after the second run"),
        ("after_reboot", "Checks after reboot"),
    ] {
        let rows: Vec<&CheckRow> = d.checks.iter().filter(|c| c.phase == phase).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = write!(out, "<section id=\"checks-{phase}\"><h2>{title}</h2>");
        checks_table(out, &rows);
        out.push_str("</section>");
    }

    if let Some(report) = report {
        hygiene(out, &report.hygiene);
        if let Some(how) = &report.how_to_get_in {
            let _ = write!(
                out,
                "<section><h2>The cluster was kept</h2><pre class=\"output\">{}</pre></section>",
                esc(how)
            );
        }
    }
}

/// The run's phases as one bar: how the time went.
fn phases(out: &mut String, timings: &Timings) {
    let parts: Vec<(&str, u64)> = [
        ("boot", timings.boot_ms),
        ("steps", timings.steps_ms),
        ("checks", timings.checks_ms),
        ("idempotence", timings.idempotence_ms),
        ("reboot", timings.reboot_ms),
        ("hygiene", timings.hygiene_ms),
        ("teardown", timings.teardown_ms),
    ]
    .into_iter()
    .filter(|(_, ms)| *ms > 0)
    .collect();
    let total: u64 = parts.iter().map(|(_, ms)| ms).sum();
    if total == 0 {
        return;
    }
    out.push_str("<section id=\"phases\"><h2>Timeline</h2><div class=\"phasebar\">");
    for (label, ms) in &parts {
        let _ = write!(
            out,
            "<span class=\"phase phase-{label}\" style=\"flex-grow:{ms}\" title=\"{label}: {d}\"></span>",
            d = duration(*ms)
        );
    }
    out.push_str("</div><ul class=\"legend\">");
    for (label, ms) in &parts {
        let _ = write!(
            out,
            "<li><span class=\"swatch phase-{label}\"></span>{label} {}</li>",
            duration(*ms)
        );
    }
    out.push_str("</ul></section>");
}

fn step(out: &mut String, s: &StepRow, longest: u64) {
    let status = if s.ok { "passed" } else { "failed" };
    let _ = write!(
        out,
        "<li class=\"step {status}\"><div class=\"line\">{badge} <strong class=\"step-name\">{name}</strong> \
         <span class=\"muted\">{kind} on {nodes}</span> <span class=\"duration\">{d}</span></div>{bar}",
        badge = badge(status),
        name = esc(&s.name),
        kind = esc(&s.kind),
        nodes = esc(&s.nodes.join(", ")),
        d = duration(s.duration_ms),
        bar = bar(s.duration_ms, longest),
    );
    if let Some(e) = &s.error {
        let _ = write!(out, "<p class=\"error\">{}</p>", esc(e));
    }
    let detail: StepDetail = serde_json::from_str(&s.detail).unwrap_or_default();
    let _ = write!(
        out,
        "<details class=\"outputs\"{}><summary>output</summary>",
        if s.ok { "" } else { " open" }
    );
    for node in &detail.nodes {
        node_output(out, node);
    }
    if let Some(ansible) = &detail.ansible {
        ansible_output(out, ansible);
    }
    for hang in &detail.hang_state {
        let _ = write!(
            out,
            "<h4>{} when it hung</h4><h5>processes</h5>{}<h5>jobs</h5>{}<h5>journal</h5>{}",
            esc(&hang.node),
            output_block(&hang.processes),
            output_block(&hang.jobs),
            output_block(&hang.journal),
        );
    }
    out.push_str("</details></li>");
}

fn node_output(out: &mut String, node: &NodeOutput) {
    let exit = match node.exit_code {
        Some(code) => format!("exit {code}"),
        None if node.timed_out => "timed out".into(),
        None => "did not run".into(),
    };
    let _ = write!(
        out,
        "<div class=\"node-output\"><h4>{} <span class=\"muted\">{exit} · {}</span></h4>",
        esc(&node.node),
        duration(node.duration_ms),
    );
    if let Some(e) = &node.error {
        let _ = write!(out, "<p class=\"error\">{}</p>", esc(e));
    }
    let _ = write!(
        out,
        "<h5>stdout</h5>{}<h5>stderr</h5>{}",
        output_block(&node.stdout),
        output_block(&node.stderr),
    );
    if !node.changed_files.is_empty() {
        let _ = write!(
            out,
            "<h5>files changed</h5><pre class=\"output\">{}</pre>",
            esc(&node.changed_files.join("\n"))
        );
    }
    out.push_str("</div>");
}

fn ansible_output(out: &mut String, a: &AnsibleReport) {
    out.push_str("<div class=\"node-output\"><h4>Ansible</h4><table class=\"tasks\"><thead><tr><th>host</th><th>task</th><th>action</th><th>status</th><th>message</th></tr></thead><tbody>");
    for t in &a.tasks {
        let status = name_of(t.status);
        let mut msg = esc(t.msg.as_deref().unwrap_or(""));
        for text in [&t.stdout, &t.stderr].into_iter().flatten() {
            if !text.is_empty() {
                let _ = write!(msg, "<pre class=\"output\">{}</pre>", esc(text));
            }
        }
        let _ = write!(
            out,
            "<tr class=\"{status}\"><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{msg}</td></tr>",
            esc(&t.host),
            esc(&t.task),
            esc(&t.action),
            badge(&status),
        );
    }
    let _ = write!(
        out,
        "</tbody></table><h5>ansible-playbook stdout</h5>{}<h5>stderr</h5>{}</div>",
        output_block(&a.stdout),
        output_block(&a.stderr),
    );
}

fn hygiene(out: &mut String, findings: &[Finding]) {
    out.push_str("<section id=\"hygiene\"><h2>Hygiene</h2>");
    if findings.is_empty() {
        out.push_str("<p>Nothing left behind: no stray files, keys, failed units or forceful commands.</p></section>");
        return;
    }
    out.push_str("<table class=\"hygiene\"><thead><tr><th>finding</th><th>node</th><th>where</th><th>detail</th></tr></thead><tbody>");
    for f in findings {
        let _ = write!(
            out,
            "<tr class=\"failed\"><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
            esc(&name_of(&f.kind).replace('_', " ")),
            esc(&f.node),
            esc(&f.location),
            esc(&f.detail),
        );
    }
    out.push_str("</tbody></table></section>");
}

fn idempotence(out: &mut String, idem: &Idempotence) {
    let _ = write!(
        out,
        "<section id=\"idempotence\"><h2>Idempotence {}</h2>",
        badge(if idem.passed { "passed" } else { "failed" })
    );
    if idem.passed {
        out.push_str("<p>The second run of every step succeeded and changed nothing it was not allowed to.</p>");
    }
    for f in &idem.failed_runs {
        let _ = write!(
            out,
            "<p class=\"error\">{}</p><pre class=\"output\">{}</pre>",
            esc(&f.message),
            esc(&f.stderr_tail.join("\n"))
        );
    }
    for step in &idem.changes {
        let real: Vec<&Change> = step.unallowed().collect();
        if real.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<p>The second run of step <b>{}</b> changed:</p><ul>",
            esc(&step.step)
        );
        for c in real {
            let _ = write!(
                out,
                "<li><span class=\"mono\">{}: {}</span>: {}",
                esc(&c.node),
                esc(&c.path),
                esc(&c.summary)
            );
            if let Some(d) = &c.diff {
                let _ = write!(out, "<pre class=\"output\">{}</pre>", esc(d));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    let tasks: Vec<&String> = idem
        .changed
        .iter()
        .filter(|l| l.contains(": task '") || l.contains(": handler '"))
        .collect();
    for line in tasks.iter().copied().chain(&idem.broken_checks) {
        let _ = write!(out, "<p class=\"error mono\">{}</p>", esc(line));
    }
    if !idem.allowed.is_empty() {
        out.push_str(
            "<p>Allowed changes (<span class=\"mono\">idempotence.allow_changes</span>):</p><ul>",
        );
        for a in &idem.allowed {
            let _ = write!(out, "<li class=\"mono\">{}</li>", esc(a));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
}
