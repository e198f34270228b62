//! The one gate secrets do not pass: every text the engine stores, prints or
//! sends to the model goes through a [`Redactor`] first, which replaces each
//! secret's value, and its base64 form, with `«secret:NAME»`.
//!
//! Redaction is by exact value. A value shorter than [`MIN_SECRET_LEN`] is not
//! redacted (its replacement would shred ordinary text, `ok` or `80` say) and
//! the run says so in its report; such a value is not protected.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use serde::Serialize;

/// The shortest value that is redacted.
pub const MIN_SECRET_LEN: usize = 4;

/// A secret whose value is not redacted, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unredacted {
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// `None` when there is nothing to redact.
    matcher: Option<AhoCorasick>,
    /// The secret's name for each pattern of the matcher, in the same order.
    owners: Vec<String>,
    unredacted: Vec<Unredacted>,
}

impl Redactor {
    /// A redactor for `(name, value)` pairs.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Redactor {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut patterns: Vec<String> = Vec::new();
        let mut owners = Vec::new();
        let mut unredacted = Vec::new();
        for (name, value) in secrets {
            if value.chars().count() < MIN_SECRET_LEN {
                unredacted.push(Unredacted {
                    name: name.to_owned(),
                    reason: format!(
                        "its value is shorter than {MIN_SECRET_LEN} characters, too short to \
                         tell from ordinary text, so it is not redacted"
                    ),
                });
                continue;
            }
            // The value, and its base64 as `base64` prints it with or without
            // the newline `echo` adds; the padding is left out so the encoding
            // matches however it is padded.
            let encoded = [value.to_owned(), format!("{value}\n")]
                .map(|v| b64.encode(v).trim_end_matches('=').to_owned());
            for pattern in std::iter::once(value.to_owned()).chain(encoded) {
                if !patterns.contains(&pattern) {
                    patterns.push(pattern);
                    owners.push(name.to_owned());
                }
            }
        }
        let matcher = (!patterns.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .expect("literal patterns build")
        });
        Redactor {
            matcher,
            owners,
            unredacted,
        }
    }

    /// Secrets that are not redacted, and why.
    pub fn unredacted(&self) -> &[Unredacted] {
        &self.unredacted
    }

    /// `text` with every secret value replaced. Overlapping occurrences (one
    /// value inside or across another) are merged, and the merged span is
    /// replaced by the placeholders of every secret in it, so no part of any
    /// value survives.
    pub fn redact(&self, text: &str) -> String {
        let Some(matcher) = &self.matcher else {
            return text.to_owned();
        };
        let mut found: Vec<(usize, usize, usize)> = matcher
            .find_overlapping_iter(text)
            .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
            .collect();
        if found.is_empty() {
            return text.to_owned();
        }
        // By start, the longest first; then merged where they overlap.
        found.sort_unstable_by_key(|&(start, end, _)| (start, std::cmp::Reverse(end)));
        let mut spans: Vec<Vec<(usize, usize, usize)>> = Vec::new();
        for m in found {
            match spans.last_mut() {
                Some(span) if m.0 < span.iter().map(|s| s.1).max().unwrap_or(0) => span.push(m),
                _ => spans.push(vec![m]),
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for span in spans {
            let start = span[0].0;
            let end = span.iter().map(|s| s.1).max().unwrap_or(start);
            out.push_str(&text[at..start]);
            // A value found inside another's match adds nothing to name.
            let mut names: Vec<&str> = Vec::new();
            for &(s, e, p) in &span {
                let inside = span
                    .iter()
                    .any(|&(s2, e2, p2)| p2 != p && s2 <= s && e <= e2 && (s2, e2) != (s, e));
                let name = self.owners[p].as_str();
                if !inside && !names.contains(&name) {
                    names.push(name);
                }
            }
            for name in names {
                out.push_str(&format!("«secret:{name}»"));
            }
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// Whether there is anything to redact.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// Every string of a JSON value, keys included, redacted.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => *s = self.redact(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&key), v);
                }
            }
            _ => {}
        }
    }

    /// A string field redacted in place.
    pub fn scrub(&self, text: &mut String) {
        if !self.is_empty() {
            *text = self.redact(text);
        }
    }

    /// An optional string field redacted in place.
    pub fn scrub_opt(&self, text: &mut Option<String>) {
        if let Some(text) = text {
            self.scrub(text);
        }
    }
}

/// A run's report with every text it holds redacted, in place.
pub fn scrub_run(r: &Redactor, run: &mut rehearse_scenario::RunReport) {
    if r.is_empty() {
        return;
    }
    r.scrub_opt(&mut run.how_to_get_in);
    r.scrub_opt(&mut run.error);
    for step in run
        .steps
        .iter_mut()
        .chain(run.idempotence.iter_mut().flat_map(|i| i.steps.iter_mut()))
    {
        scrub_step(r, step);
    }
    if let Some(idempotence) = &mut run.idempotence {
        idempotence
            .changed
            .iter_mut()
            .chain(idempotence.allowed.iter_mut())
            .chain(idempotence.broken_checks.iter_mut())
            .for_each(|c| r.scrub(c));
        for f in &mut idempotence.failed_runs {
            r.scrub(&mut f.message);
            f.stderr_tail.iter_mut().for_each(|l| r.scrub(l));
        }
        for c in idempotence
            .changes
            .iter_mut()
            .flat_map(|s| s.changes.iter_mut())
        {
            r.scrub(&mut c.summary);
            r.scrub_opt(&mut c.diff);
        }
    }
    for check in run
        .checks
        .iter_mut()
        .chain(run.reboot_checks.iter_mut().flatten())
        .chain(run.idempotence.iter_mut().flat_map(|i| i.checks.iter_mut()))
    {
        r.scrub(&mut check.subject);
        r.scrub(&mut check.message);
        r.redact_json(&mut check.expected);
        r.redact_json(&mut check.actual);
    }
    for finding in &mut run.hygiene {
        r.scrub(&mut finding.location);
        r.scrub(&mut finding.detail);
    }
}

fn scrub_step(r: &Redactor, step: &mut rehearse_runner::StepReport) {
    r.scrub_opt(&mut step.error);
    for node in &mut step.nodes {
        r.scrub(&mut node.stdout);
        r.scrub(&mut node.stderr);
        r.scrub_opt(&mut node.error);
        node.changed_files.iter_mut().for_each(|f| r.scrub(f));
    }
    if let Some(ansible) = &mut step.ansible {
        r.scrub(&mut ansible.stdout);
        r.scrub(&mut ansible.stderr);
        for task in &mut ansible.tasks {
            r.scrub(&mut task.task);
            r.scrub_opt(&mut task.msg);
        }
    }
    for hang in &mut step.hang_state {
        r.scrub(&mut hang.processes);
        r.scrub(&mut hang.jobs);
        r.scrub(&mut hang.journal);
    }
}

/// Files bigger than this are left as they are (and said so in the log).
const SCRUB_FILE_CAP: u64 = 64 << 20;

/// The text files under `dir` (step logs, the run's own report) rewritten
/// with every value redacted, so nothing the run stored keeps one.
pub fn scrub_files(r: &Redactor, dir: &std::path::Path) {
    let Some(matcher) = &r.matcher else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            scrub_files(r, &path);
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        if entry.metadata().map(|m| m.len()).unwrap_or(0) > SCRUB_FILE_CAP {
            tracing::warn!(file = %path.display(), "too big to scan for secrets");
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if !matcher.is_match(&bytes) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = std::fs::write(&path, r.redact(&text)) {
            tracing::warn!(file = %path.display(), error = %e, "redacting a secret from a stored file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_with_the_name() {
        let r = Redactor::new([("DB_PASSWORD", "hunter2-xyz")]);
        assert_eq!(
            r.redact("pw=hunter2-xyz; again hunter2-xyz."),
            "pw=«secret:DB_PASSWORD»; again «secret:DB_PASSWORD»."
        );
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn a_value_inside_another_is_redacted_whole() {
        let r = Redactor::new([("SHORT", "pass"), ("LONG", "password123")]);
        // The longer value wins where both match; the shorter elsewhere.
        assert_eq!(
            r.redact("password123 and pass"),
            "«secret:LONG» and «secret:SHORT»"
        );
        assert!(!r.redact("password123").contains("123"));
    }

    #[test]
    fn values_overlapping_across_each_other_leave_no_part_behind() {
        let r = Redactor::new([("A", "abcdef"), ("B", "defghi")]);
        let out = r.redact("xx abcdefghi yy");
        assert_eq!(out, "xx «secret:A»«secret:B» yy");
        for part in ["abc", "ghi", "def"] {
            assert!(!out.contains(part), "{out}");
        }
    }

    #[test]
    fn base64_forms_are_redacted() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let r = Redactor::new([("TOKEN", "s3cr3t-token")]);
        let plain = b64.encode("s3cr3t-token");
        let echoed = b64.encode("s3cr3t-token\n");
        assert_ne!(plain, echoed);
        for encoded in [plain, echoed] {
            let out = r.redact(&format!("Authorization: Basic {encoded}"));
            assert!(
                out.starts_with("Authorization: Basic «secret:TOKEN»"),
                "{out}"
            );
            assert!(!out.contains(&encoded[..8]), "{out}");
        }
    }

    #[test]
    fn short_values_are_ignored_with_a_reason() {
        let r = Redactor::new([("PIN", "123"), ("KEY", "k3y-value")]);
        assert_eq!(
            r.redact("pin 123, key k3y-value"),
            "pin 123, key «secret:KEY»"
        );
        let unredacted = r.unredacted();
        assert_eq!(unredacted.len(), 1);
        assert_eq!(unredacted[0].name, "PIN");
        assert!(
            unredacted[0].reason.contains("shorter than 4"),
            "{unredacted:?}"
        );
    }

    #[test]
    fn json_strings_and_keys_are_redacted() {
        let r = Redactor::new([("PW", "p@ss\"word")]);
        let mut v = serde_json::json!({"out": ["x p@ss\"word y"], "p@ss\"word": 1, "n": 3});
        r.redact_json(&mut v);
        let text = v.to_string();
        assert!(!text.contains("p@ss"), "{text}");
        assert_eq!(v["out"][0], "x «secret:PW» y");
        assert_eq!(v["«secret:PW»"], 1);
    }

    #[test]
    fn multibyte_text_around_values_is_kept() {
        let r = Redactor::new([("X", "émoji🙂ok")]);
        assert_eq!(r.redact("→émoji🙂ok←"), "→«secret:X»←");
    }
}
