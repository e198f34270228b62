//! Shell steps: a script run as root on every target at once, with the files it
//! touched found by modification time.
//!
//! Per node: a marker file is created in `/run/rehearse` (and the script written
//! there when it has its own `#!` line), the script runs (`/bin/sh -e -s` with
//! the script on stdin, or the file itself), then every regular file and symlink
//! on the root filesystem newer than the marker is listed, and the runner's
//! files are removed.

use std::time::Duration;

use crate::capture::Capture;
use crate::job::{self, Job, HELPER_TIMEOUT};
use crate::nodes;
use crate::report::{and_others, last_line, HangState, NodeOutput, StepReport};
use crate::workdir::NODE_RUN_DIR;
use crate::{StepContext, CHANGED_FILES_CAP, OUTPUT_CAP};

/// Creates the marker `/run/rehearse/$1.marker`, and writes stdin to the script
/// file `$2` when one is named. Returns once the clock has ticked past the
/// marker: a file the step writes in the same clock tick would otherwise carry
/// the marker's very time and go unseen.
const PREPARE: &str = r#"set -e
mkdir -p /run/rehearse
m="/run/rehearse/$1.marker"
if [ -n "$2" ]; then cat > "$2"; chmod 0700 "$2"; fi
touch "$m"
t="$m.tick"; i=0
touch "$t"
while [ -z "$(find "$t" -newer "$m")" ] && [ $i -lt 1000 ]; do sleep 0.001; touch "$t"; i=$((i+1)); done
rm -f "$t""#;

/// Removes the script file `$2`, prints at most `$3` files changed since the
/// marker `/run/rehearse/$1.marker`, and removes the marker. Virtual and
/// volatile trees, apt's caches and logs (written by running services, not by
/// the step) are not looked at.
const FINISH: &str = r#"m="/run/rehearse/$1.marker"
[ -z "$2" ] || rm -f -- "$2"
if [ -e "$m" ]; then
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
      -o -path /var/cache/apt -o -path /var/lib/apt/lists -o -path /var/log \) -prune \
    -o \( -type f -o -type l \) \( -newer "$m" -o -cnewer "$m" \) -print 2>/dev/null | head -n "$3"
fi
rm -f -- "$m""#;

pub(crate) fn run(ctx: &StepContext<'_>, script: &str, report: &mut StepReport) {
    let results: Vec<(NodeOutput, Option<HangState>)> = std::thread::scope(|s| {
        let handles: Vec<_> = ctx
            .targets
            .iter()
            .map(|node| s.spawn(move || run_on_node(ctx, node, script)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("shell step thread panicked"))
            .collect()
    });
    for (output, hang) in results {
        report.nodes.push(output);
        report.hang_state.extend(hang);
    }
    if let Some(error) = failure(ctx, &report.nodes) {
        report.fail(error);
    }
}

fn run_on_node(ctx: &StepContext<'_>, node: &str, script: &str) -> (NodeOutput, Option<HangState>) {
    let nodes = ctx.nodes;
    let mut output = NodeOutput::new(node);
    let own_interpreter = script.starts_with("#!");
    let script_file = if own_interpreter {
        format!("{NODE_RUN_DIR}/{}", ctx.token)
    } else {
        String::new()
    };
    let prepared = nodes::sh(
        nodes,
        node,
        PREPARE,
        &[&ctx.token, &script_file],
        own_interpreter.then(|| script.as_bytes().to_vec()),
        HELPER_TIMEOUT,
    );
    match prepared {
        Ok(c) if c.success() => {}
        Ok(c) => {
            output.error = Some(format!(
                "could not prepare {node} for the step: {}",
                nodes::last_line(&c)
            ));
            return (output, None);
        }
        Err(e) => {
            output.error = Some(e);
            return (output, None);
        }
    }

    let job = Job {
        node,
        argv: if own_interpreter {
            vec![script_file.clone()]
        } else {
            vec!["/bin/sh".into(), "-e".into(), "-s".into()]
        },
        env: ctx.step.env.clone(),
        stdin: (!own_interpreter).then(|| script.as_bytes().to_vec()),
        workdir: None,
        timeout: ctx.step.timeout,
        token: ctx.token.clone(),
    };
    let mut stdout = Capture::logged(OUTPUT_CAP, &ctx.log_dir.join(format!("{node}.stdout")));
    let mut stderr = Capture::logged(OUTPUT_CAP, &ctx.log_dir.join(format!("{node}.stderr")));
    let mut hang = None;
    let end = job::run(nodes, &job, &mut stdout, &mut stderr, &mut || {
        hang = Some(job::capture_hang_state(nodes, node));
    });
    output.exit_code = end.exit_code;
    output.timed_out = end.timed_out;
    output.duration_ms = end.duration_ms;
    output.error = end.error;
    output.stdout = stdout.into_text();
    output.stderr = stderr.into_text();

    let limit = (CHANGED_FILES_CAP + 1).to_string();
    match nodes::sh(
        nodes,
        node,
        FINISH,
        &[&ctx.token, &script_file, &limit],
        None,
        HELPER_TIMEOUT,
    ) {
        Ok(c) => {
            let (files, truncated) = changed_files(&c.stdout);
            output.changed_files = files;
            output.changed_files_truncated = truncated;
        }
        Err(e) => tracing::warn!(node, error = %e, "listing the files a step changed"),
    }
    (output, hang)
}

/// The sorted list of changed files from `find` output, cut to the cap.
pub(crate) fn changed_files(find_output: &str) -> (Vec<String>, bool) {
    let mut files: Vec<String> = find_output
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let truncated = files.len() > CHANGED_FILES_CAP;
    files.truncate(CHANGED_FILES_CAP);
    files.sort();
    (files, truncated)
}

/// One sentence for a step that did not succeed everywhere: nodes it could not
/// run on first, then timeouts, then non-zero exits.
pub(crate) fn failure(ctx: &StepContext<'_>, outputs: &[NodeOutput]) -> Option<String> {
    let name = &ctx.step.name;
    let unreachable: Vec<&NodeOutput> = outputs.iter().filter(|o| o.error.is_some()).collect();
    if let Some(first) = unreachable.first() {
        return Some(format!(
            "step `{name}` could not run on {}: {}",
            and_others(&first.node, unreachable.len() - 1),
            first.error.as_deref().unwrap_or_default()
        ));
    }
    let timed_out: Vec<&NodeOutput> = outputs.iter().filter(|o| o.timed_out).collect();
    if let Some(first) = timed_out.first() {
        return Some(format!(
            "step `{name}` timed out after {} on {} and was killed; hang_state shows its processes, systemd jobs and journal just before",
            seconds(ctx.step.timeout),
            and_others(&first.node, timed_out.len() - 1)
        ));
    }
    let failed: Vec<&NodeOutput> = outputs.iter().filter(|o| !o.ok()).collect();
    let first = failed.first()?;
    let code = first.exit_code.unwrap_or(-1);
    // The cause is the last thing the script said, on stderr if anything.
    let (cause, stream) = match last_line(&first.stderr) {
        Some(line) => (format!(": {line}"), "stderr"),
        None => (
            last_line(&first.stdout)
                .map(|l| format!(": {l}"))
                .unwrap_or_default(),
            "stdout",
        ),
    };
    Some(format!(
        "step `{name}` failed on {} with exit code {code}{cause} (whole output in {})",
        and_others(&first.node, failed.len() - 1),
        ctx.log_dir
            .join(format!("{}.{stream}", first.node))
            .display()
    ))
}

pub(crate) fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_files_are_sorted_and_capped() {
        let (files, truncated) = changed_files("/etc/b\n/etc/a\n\n");
        assert_eq!(files, vec!["/etc/a", "/etc/b"]);
        assert!(!truncated);
        let many: String = (0..=CHANGED_FILES_CAP)
            .map(|i| format!("/f{i}\n"))
            .collect();
        let (files, truncated) = changed_files(&many);
        assert_eq!(files.len(), CHANGED_FILES_CAP);
        assert!(truncated);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(2)), "2s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
    }
}
