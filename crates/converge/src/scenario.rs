//! The scenario a piece of code becomes: the code as the one step applied to
//! every node of the task's topology, then the task's checks; run on a fresh
//! cluster as a part of the converge run.

use std::path::Path;
use std::time::Duration;

use rehearse_scenario::{Keep, RunOptions, RunReport};
use rehearse_spec::scenario::{Scenario, Step, StepAction, DEFAULT_STEP_TIMEOUT};
use rehearse_spec::task::Language;

use crate::{redact, write, ConvergeError, Converger};

impl Converger<'_> {
    /// The scenario that applies `code` to every node and evaluates the checks.
    pub(crate) fn scenario(&self, code: &str, dir: &Path) -> Result<Scenario, ConvergeError> {
        std::fs::create_dir_all(dir).map_err(|source| ConvergeError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let action = match self.task.language {
            Language::Bash => {
                let file = dir.join("code.sh");
                write(&file, &self.redactor.redact(code))?;
                StepAction::Shell {
                    script: code.to_owned(),
                    file: None,
                }
            }
            Language::Ansible => {
                // Ansible reads the playbook from this file, so it is written
                // as is; the model's code never holds a value it was not shown.
                let file = dir.join("playbook.yml");
                write(&file, code)?;
                StepAction::Ansible {
                    playbook: file,
                    controller: None,
                    extra_vars: Vec::new(),
                }
            }
        };
        let left = self
            .task
            .budgets
            .max_wall
            .saturating_sub(self.started.elapsed());
        Ok(Scenario {
            name: self.task.name.clone(),
            description: Some(self.task.goal.clone()),
            topology: self.task.topology.clone(),
            platforms: Vec::new(),
            pinned: Vec::new(),
            steps: vec![Step {
                idempotence: Default::default(),
                name: format!("{} code", self.task.language.as_str()),
                on: Vec::new(),
                timeout: DEFAULT_STEP_TIMEOUT.min(left.max(Duration::from_secs(30))),
                env: self.secret_env.clone(),
                action,
            }],
            checks: self.task.checks.clone(),
            faults: Vec::new(),
            loads: Vec::new(),
            probes: Vec::new(),
            dir: dir.to_path_buf(),
            file: self.task.file.clone(),
        })
    }

    /// Runs `code` on a fresh cluster as a scenario run of this converge run;
    /// `role` names its part (`iteration 2`, `proof`) in the run store.
    pub(crate) fn run_code(
        &self,
        code: &str,
        dir: &Path,
        keep: Keep,
        role: String,
    ) -> Result<RunReport, ConvergeError> {
        let scenario = self.scenario(code, dir)?;
        let redactor = self.redactor.clone();
        let options = RunOptions {
            idempotence: false,
            reboot: false,
            keep,
            parent: Some(rehearse_scenario::ParentRun {
                run_id: self.run_id.clone(),
                role,
            }),
            cancel: self.cancel.clone(),
            store: self.recorder.store(),
            redact: Some(rehearse_scenario::Redact(std::sync::Arc::new(
                move |text| redactor.redact(text),
            ))),
            ..RunOptions::default()
        };
        let mut run = rehearse_scenario::run(self.engine, &scenario, &options, &|_| {});
        redact::scrub_run(&self.redactor, &mut run);
        redact::scrub_files(&self.redactor, &run.work_dir);
        redact::scrub_files(&self.redactor, dir);
        Ok(run)
    }
}
