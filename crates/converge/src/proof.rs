//! The proof and the report's end: a candidate script is run once more on a
//! fresh cluster (unless it already passed whole on one), and only a proven
//! script makes the run converged. Then the verdict, the summary and the
//! report file.

use rehearse_scenario::{Keep, Outcome, RunReport};
use rehearse_spec::task::Language;

use crate::iterate::{Done, Ledger};
use crate::{policy, write, ConvergeError, ConvergeReport, Converger, Verdict};

/// The script the proof is about.
pub(crate) enum Candidate {
    /// Code that already passed every check on a fresh cluster, whole: its
    /// run is the proof.
    Passed(String),
    /// A script distilled from a troubleshooting session: it has yet to pass
    /// on a fresh cluster.
    Distilled(String),
}

/// What the proof came to.
#[derive(Default)]
struct Proven {
    /// The run that proves (or disproves) the script.
    proof: Option<RunReport>,
    /// The proven script, redacted.
    script: Option<String>,
    /// The distilled script, redacted, proven or not.
    distilled: Option<String>,
    /// Why there is no proven script, when the proof itself ended the run.
    stop: Option<(Verdict, String)>,
}

impl Converger<'_> {
    /// Proves a candidate on a fresh cluster in one pass. A candidate that
    /// already passed whole on a fresh cluster needs no second run.
    fn prove(&mut self, candidate: Candidate, ledger: &Ledger) -> Result<Proven, ConvergeError> {
        let d = match candidate {
            Candidate::Passed(code) => {
                return Ok(Proven {
                    proof: ledger.iterations.last().map(|i| i.run.clone()),
                    script: Some(self.redactor.redact(&code)),
                    ..Proven::default()
                })
            }
            Candidate::Distilled(d) => d,
        };
        let mut proven = Proven {
            distilled: Some(self.redactor.redact(&d)),
            ..Proven::default()
        };
        if let Some((verdict, why)) = self.must_stop() {
            proven.stop = Some((verdict, format!("{why} before the proof run")));
            return Ok(proven);
        }
        self.say("proving the distilled script on a fresh cluster");
        let run = self.run_code(
            &d,
            &self.work_dir.join("proof"),
            Keep::Never,
            "proof".into(),
        )?;
        if run.outcome == Outcome::Passed {
            proven.script = Some(self.redactor.redact(&d));
        } else {
            proven.stop = Some((
                Verdict::BudgetExhausted,
                "the distilled script failed its proof run on a fresh cluster".into(),
            ));
        }
        proven.proof = Some(run);
        Ok(proven)
    }

    /// The loop ended as `done` says: proves a candidate if there is one,
    /// then writes the report.
    pub(crate) fn conclude(
        &mut self,
        done: Done,
        ledger: Ledger,
    ) -> Result<ConvergeReport, ConvergeError> {
        let proven = match done {
            Done::Prove(candidate) => self.prove(candidate, &ledger)?,
            Done::Stopped(verdict, why) => Proven {
                stop: Some((verdict, why)),
                ..Proven::default()
            },
            Done::IterationsSpent => Proven::default(),
        };
        let Ledger {
            iterations,
            platform_failures,
            unattached_calls,
            ..
        } = ledger;
        let Proven {
            proof,
            script,
            distilled,
            stop,
        } = proven;
        let (verdict, summary) = match (&script, stop) {
            (Some(_), _) => (
                Verdict::Converged,
                format!("converged in {} iteration(s); the script passed every check on a fresh cluster in one pass", iterations.len()),
            ),
            (None, Some(stop)) => stop,
            (None, None) => {
                let failures = iterations
                    .iter()
                    .filter_map(|i| Some(format!("iteration {}: {}", i.number, i.failure.as_ref()?.headline())))
                    .collect::<Vec<_>>()
                    .join("; ");
                (
                    Verdict::BudgetExhausted,
                    format!(
                        "the iteration budget ran out: {} of {} iterations ran and no code passed ({failures})",
                        iterations.len(),
                        self.task.budgets.max_iterations
                    ),
                )
            }
        };
        // Every rule of the doctor that fired is named, whatever the ending.
        let mut fired: Vec<&str> = Vec::new();
        for rule in iterations
            .iter()
            .filter_map(|i| i.fix.as_ref().map(|f| f.rule))
        {
            if !fired.contains(&rule) {
                fired.push(rule);
            }
        }
        let summary = match fired.as_slice() {
            [] => summary,
            rules => format!("{summary}; the rules doctor fixed: {}", rules.join(", ")),
        };
        let report_path = self.work_dir.join("report.json");
        let report = ConvergeReport {
            run_id: self.run_id.clone(),
            task: self.task.name.clone(),
            goal: self.task.goal.clone(),
            language: self.task.language,
            verdict,
            summary,
            model: self.model.map(|m| format!("{}/{}", m.name(), m.model())),
            rules_only: self.model.is_none(),
            review: script.as_deref().map(policy::scan).unwrap_or_default(),
            secrets: self.task.secrets.iter().map(|s| s.name.clone()).collect(),
            unredacted: self.redactor.unredacted().to_vec(),
            iterations,
            distilled,
            proof,
            platform_failures,
            reasks: self.reasks,
            llm_calls: unattached_calls,
            script,
            usage: self.usage,
            cost_usd: self.cost,
            wall_ms: self.started.elapsed().as_millis() as u64,
            report_path: report_path.clone(),
        };
        // Every part was redacted as it was made; the file is redacted whole
        // once more so that a field added later cannot leak.
        let mut json = serde_json::to_value(&report).unwrap_or_default();
        self.redactor.redact_json(&mut json);
        write(
            &report_path,
            &serde_json::to_string_pretty(&json).unwrap_or_default(),
        )?;
        if let Some(script) = &report.script {
            let script = &self.redactor.redact(script);
            let name = match self.task.language {
                Language::Bash => "script.sh",
                Language::Ansible => "playbook.yml",
            };
            write(&self.work_dir.join(name), script)?;
        }
        Ok(report)
    }
}
