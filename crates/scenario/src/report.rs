//! The final report: for a person on a terminal, and JUnit XML for CI systems.
//! (The JSON document is the `RunReport` itself.)

use std::fmt::Write;

use rehearse_checks::{CheckResult, Status};

use crate::{FindingKind, Outcome, RunReport};

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn tail(text: &str, lines: usize) -> Vec<&str> {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].to_vec()
}

/// The human report, meant to be read top to bottom after a run.
pub fn render_human(r: &RunReport) -> String {
    let mut s = String::new();
    let verdict = match r.outcome {
        Outcome::Passed => "PASSED",
        Outcome::Failed => "FAILED",
        Outcome::Error => "ERROR",
    };
    let _ = writeln!(
        s,
        "scenario {} ({}): {verdict} in {}   [run {}]",
        r.scenario,
        r.file.display(),
        secs(r.timings.total_ms),
        r.run_id
    );
    if let Some(c) = &r.cluster {
        let nodes: Vec<String> = r
            .nodes
            .iter()
            .map(|n| format!("{} {}", n.name, n.ip.clone().unwrap_or_default()))
            .collect();
        let _ = writeln!(
            s,
            "cluster {c}: {} (ready in {})",
            nodes.join(", "),
            secs(r.timings.boot_ms)
        );
    }
    if !r.steps.is_empty() {
        let _ = writeln!(s, "\nsteps");
        for step in &r.steps {
            let mark = if step.ok { "✔" } else { "✘" };
            let _ = writeln!(
                s,
                "  {mark} {} [{}]  {}",
                step.name,
                step.kind,
                secs(step.duration_ms)
            );
            if !step.ok {
                if let Some(e) = &step.error {
                    let _ = writeln!(s, "      {e}");
                }
                for out in step.nodes.iter().filter(|o| !o.ok()) {
                    let code = out
                        .exit_code
                        .map(|c| format!("exit {c}"))
                        .unwrap_or_else(|| "no exit code".into());
                    let _ = writeln!(
                        s,
                        "      --- {} ({code}{}) output tail ---",
                        out.node,
                        if out.timed_out { ", timed out" } else { "" }
                    );
                    let combined = format!("{}\n{}", out.stdout, out.stderr);
                    for line in tail(&combined, 15) {
                        let _ = writeln!(s, "      | {line}");
                    }
                }
                for hang in &step.hang_state {
                    let _ = writeln!(s, "      --- {} was busy with (when killed) ---", hang.node);
                    for line in tail(&hang.jobs, 5)
                        .into_iter()
                        .chain(tail(&hang.journal, 10))
                    {
                        let _ = writeln!(s, "      | {line}");
                    }
                }
            }
        }
    }
    let section = |s: &mut String, title: &str, results: &[CheckResult]| {
        if results.is_empty() {
            return;
        }
        let passed = results
            .iter()
            .filter(|c| c.status == Status::Passed)
            .count();
        let _ = writeln!(s, "\n{title} ({passed}/{} passed)", results.len());
        for c in results {
            let _ = writeln!(s, "  {}", rehearse_checks::render_line(c));
        }
    };
    section(&mut s, "checks", &r.checks);
    if let Some(i) = &r.idempotence {
        render_idempotence(&mut s, i);
    }
    if let Some(rc) = &r.reboot_checks {
        section(&mut s, "after reboot", rc);
    }
    if let Some(c) = &r.confidence {
        s.push_str(&crate::confidence::render(c));
    }
    if !r.hygiene.is_empty() {
        let _ = writeln!(s, "\nhygiene ({} finding(s))", r.hygiene.len());
        for f in &r.hygiene {
            let place = if f.node.is_empty() {
                f.location.clone()
            } else {
                format!("{}:{}", f.node, f.location)
            };
            let _ = writeln!(s, "  ! {place}: {}", f.detail);
        }
    }
    let advice = what_to_look_at(r);
    if !advice.is_empty() {
        let _ = writeln!(s, "\nwhat to look at");
        for a in advice {
            let _ = writeln!(s, "  - {a}");
        }
    }
    if let Some(e) = &r.error {
        let _ = writeln!(s, "\nerror: {e}");
    }
    if let Some(g) = &r.how_to_get_in {
        let _ = writeln!(s, "\nthe cluster was kept: {g}");
    }
    s
}

/// The second run, as a reader needs it: failed runs with their error lines,
/// then each real change (with its diff), broken checks, and what was allowed.
fn render_idempotence(s: &mut String, i: &crate::Idempotence) {
    let _ = writeln!(s, "\nidempotence (second run of every step)");
    if i.passed {
        let _ = writeln!(
            s,
            "  ✔ the second run of every step succeeded and changed nothing{}",
            if i.allowed.is_empty() {
                ""
            } else {
                " it was not allowed to"
            }
        );
    }
    for f in &i.failed_runs {
        let _ = writeln!(s, "  ✘ {}", f.message);
        for line in &f.stderr_tail {
            let _ = writeln!(s, "      | {line}");
        }
    }
    for step in &i.changes {
        let real: Vec<_> = step.unallowed().collect();
        if real.is_empty() {
            continue;
        }
        let _ = writeln!(s, "  ✘ the second run of step \"{}\" changed:", step.step);
        for c in real {
            let _ = writeln!(s, "      {}", c.line());
            for line in c.diff.iter().flat_map(|d| d.lines()) {
                let _ = writeln!(s, "        {line}");
            }
        }
    }
    for line in i
        .changed
        .iter()
        .filter(|l| l.contains(": task '") || l.contains(": handler '"))
    {
        let _ = writeln!(s, "  ✘ {line}");
    }
    for line in &i.broken_checks {
        let _ = writeln!(s, "  ✘ {line}");
    }
    if !i.allowed.is_empty() {
        let _ = writeln!(s, "  allowed changes (idempotence.allow_changes):");
        for line in &i.allowed {
            let _ = writeln!(s, "    ~ {line}");
        }
    }
    for why in &i.unavailable {
        let _ = writeln!(s, "  ! {why}");
    }
}

fn what_to_look_at(r: &RunReport) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(step) = r.steps.iter().find(|s| !s.ok) {
        out.push(format!(
            "step \"{}\" failed first; its output tail is above. Later steps did not run.",
            step.name
        ));
    }
    for c in r
        .all_checks()
        .into_iter()
        .filter(|c| c.status == Status::Failed)
        .take(3)
    {
        out.push(format!("{} on {}: {}", c.name, c.node, c.message));
    }
    if let Some(i) = r.idempotence.as_ref().filter(|i| !i.passed) {
        if let Some(f) = i.failed_runs.first() {
            out.push(format!(
                "{}: the step cannot be applied twice{}",
                f.message,
                f.stderr_tail
                    .first()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default()
            ));
        }
        if let Some(b) = i.broken_checks.first() {
            out.push(format!("{b}: the second run undid what the first set up"));
        }
        let changes = i.changed.len() - i.failed_runs.len() - i.broken_checks.len();
        if changes > 0 {
            out.push(format!(
                "the second run changed {changes} thing(s): the code is not idempotent; make each change conditional, or declare expected churn with `idempotence: {{allow_changes: [glob]}}` on the step"
            ));
        }
    }
    if let Some(rc) = &r.reboot_checks {
        if rc.iter().any(|c| c.status == Status::Failed)
            && r.checks.iter().all(|c| c.status != Status::Failed)
        {
            out.push("checks passed before the reboot and failed after it: something was configured at runtime only (not enabled, not persisted)".into());
        }
    }
    if r.hygiene.iter().any(|f| f.kind == FindingKind::FailedUnit) {
        out.push("failed systemd units: `rehearse exec CLUSTER NODE -- systemctl status UNIT` on a kept cluster (--keep-on-failure)".into());
    }
    if r.outcome != Outcome::Passed && !r.kept {
        out.push("run again with --keep-on-failure to get into the cluster as it was left".into());
    }
    out
}

fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one testsuite, a testcase per step, check, idempotence and
/// after-reboot check.
pub fn junit(r: &RunReport) -> String {
    junit_document(&[junit_suite(r, &format!("rehearse.{}", r.scenario))])
}

/// A JUnit document of test suites.
pub(crate) fn junit_document(suites: &[String]) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n{}</testsuites>\n",
        suites.concat()
    )
}

/// One run as a JUnit test suite named `suite`.
pub(crate) fn junit_suite(r: &RunReport, suite: &str) -> String {
    let mut cases = String::new();
    let mut tests = 0;
    let mut failures = 0;
    let mut skipped = 0;
    let mut case = |classname: &str,
                    name: &str,
                    ms: u64,
                    failure: Option<(String, String)>,
                    skip: Option<String>| {
        tests += 1;
        let _ = write!(
            cases,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml(classname),
            xml(name),
            ms as f64 / 1000.0
        );
        match (failure, skip) {
            (Some((msg, body)), _) => {
                failures += 1;
                let _ = write!(
                    cases,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(&msg),
                    xml(&body)
                );
            }
            (None, Some(why)) => {
                skipped += 1;
                let _ = write!(
                    cases,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    xml(&why)
                );
            }
            (None, None) => cases.push_str("/>\n"),
        }
    };
    for step in &r.steps {
        let failure = (!step.ok).then(|| {
            let body: Vec<String> = step
                .nodes
                .iter()
                .filter(|o| !o.ok())
                .map(|o| {
                    format!(
                        "{} exit {:?}:\n{}\n{}",
                        o.node, o.exit_code, o.stdout, o.stderr
                    )
                })
                .collect();
            (
                step.error.clone().unwrap_or_else(|| "step failed".into()),
                body.join("\n"),
            )
        });
        case(
            &format!("{}.steps", r.scenario),
            &step.name,
            step.duration_ms,
            failure,
            None,
        );
    }
    let mut check_cases = |prefix: &str, results: &[CheckResult]| {
        for c in results {
            let failure = (c.status == Status::Failed).then(|| {
                (
                    c.message.clone(),
                    format!("expected: {}\nactual: {}", c.expected, c.actual),
                )
            });
            let skip = (c.status == Status::Skipped).then(|| c.message.clone());
            case(
                &format!("{}.{prefix}.{}", r.scenario, c.node),
                &c.name,
                c.duration_ms,
                failure,
                skip,
            );
        }
    };
    check_cases("checks", &r.checks);
    if let Some(rc) = &r.reboot_checks {
        check_cases("after_reboot", rc);
    }
    if let Some(c) = &r.confidence {
        let all: Vec<rehearse_checks::CheckResult> = c.checks().cloned().collect();
        check_cases("confidence", &all);
    }
    if let Some(i) = &r.idempotence {
        let failure = (!i.passed).then(|| {
            let mut body = Vec::new();
            for f in &i.failed_runs {
                body.push(f.message.clone());
                body.extend(f.stderr_tail.iter().map(|l| format!("  | {l}")));
            }
            for step in &i.changes {
                for c in step.unallowed() {
                    body.push(format!("{}: {}", step.step, c.line()));
                    body.extend(c.diff.iter().map(|d| d.trim_end().to_string()));
                }
            }
            body.extend(
                i.changed
                    .iter()
                    .filter(|l| l.contains(": task '") || l.contains(": handler '"))
                    .cloned(),
            );
            body.extend(i.broken_checks.iter().cloned());
            (idempotence_headline(i), body.join("\n"))
        });
        case(
            &format!("{}.idempotence", r.scenario),
            "second run changes nothing",
            r.timings.idempotence_ms,
            failure,
            None,
        );
    }
    if let Some(e) = &r.error {
        case(
            &format!("{}.run", r.scenario),
            "run",
            r.timings.total_ms,
            Some((e.clone(), e.clone())),
            None,
        );
    }
    format!(
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">\n{cases}  </testsuite>\n",
        xml(suite),
        r.timings.total_ms as f64 / 1000.0
    )
}

/// What failed idempotence, in one line: a failed second run first, then a
/// broken check, then changes.
pub(crate) fn idempotence_headline(i: &crate::Idempotence) -> String {
    if let Some(f) = i.failed_runs.first() {
        match f.stderr_tail.first() {
            Some(line) => format!("{}: {line}", f.message),
            None => f.message.clone(),
        }
    } else if let Some(b) = i.broken_checks.first() {
        b.clone()
    } else {
        let n = i.changed.len();
        format!(
            "the second run changed {n} thing(s){}",
            i.changed
                .first()
                .map(|c| format!(", first {c}"))
                .unwrap_or_default()
        )
    }
}
