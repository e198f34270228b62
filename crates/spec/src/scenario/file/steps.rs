//! The file form of steps: a `shell:`, `ansible:` or `copy:` mapping.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_yaml::Value;

use super::keyed::{family, kind_of, Form};
use super::{duration, on_suffix, short, targets, Context, DurationText, Mode, OneOrMany, Vars};
use crate::error::{ErrorKind, SpecError};
use crate::scenario::{compile_glob, Step, StepAction, StepIdempotence, DEFAULT_STEP_TIMEOUT};
use crate::source::FieldPath;

family! {
    /// The file form of any step.
    StepFile: "step" => Step,
    common: ["name", "on", "timeout", "idempotence"],
    example: "shell: scripts/setup.sh",
    forms: [ShellStep, AnsibleStep, CopyStep],
}

/// Reads one entry of `steps`.
pub(super) fn read(value: Value, path: &FieldPath, cx: &Context) -> Result<Step, SpecError> {
    let kind = kind_of::<StepFile>(&value, path, cx)?;
    StepFile::read_kind(kind, value, path, cx)
}

/// Declares the form of one step kind: its own keys, then those of every step.
macro_rules! step_form {
    ($(#[$attr:meta])* $name:ident { $($fields:tt)* }) => {
        $(#[$attr])*
        #[derive(Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($fields)*
            /// Name shown in reports. Default: derived from the action, e.g.
            /// `shell web.sh on web`.
            #[serde(default)]
            name: Option<String>,
            /// Node or group names to run on: one name or a list. Default: every node.
            #[serde(default)]
            on: Option<OneOrMany>,
            /// Stop the step after this long on a node, e.g. `5m`. Default: `15m`.
            #[serde(default)]
            timeout: Option<DurationText>,
            /// What the step's second run may change: `{allow_changes: [globs]}`.
            /// Default: any real change fails idempotence.
            #[serde(default)]
            idempotence: Option<IdempotenceFile>,
        }

        impl $name {
            fn common(&mut self) -> Common {
                Common {
                    name: self.name.take(),
                    on: self.on.take(),
                    timeout: self.timeout.take(),
                    idempotence: self.idempotence.take(),
                }
            }
        }
    };
}

/// The keys every step has.
struct Common {
    name: Option<String>,
    on: Option<OneOrMany>,
    timeout: Option<DurationText>,
    idempotence: Option<IdempotenceFile>,
}

/// A step's `idempotence` mapping.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IdempotenceFile {
    /// Absolute path globs on the nodes whose changes on the second run are
    /// expected (logs, runtime state): listed as allowed instead of failing
    /// idempotence. `*` stays within one path component, `**` crosses them,
    /// e.g. `/var/lib/app/**`.
    allow_changes: OneOrMany,
}

impl IdempotenceFile {
    fn read(
        file: Option<IdempotenceFile>,
        path: &FieldPath,
        cx: &Context,
    ) -> Result<StepIdempotence, SpecError> {
        let Some(file) = file else {
            return Ok(StepIdempotence::default());
        };
        let list = path.field("idempotence").field("allow_changes");
        let globs = file.allow_changes.into_vec();
        for (i, glob) in globs.iter().enumerate() {
            let problem = if !glob.starts_with('/') {
                Some("is not an absolute path on the nodes".to_string())
            } else {
                compile_glob(glob)
                    .err()
                    .map(|e| format!("is not a valid glob: {e}"))
            };
            if let Some(problem) = problem {
                let error = SpecError::new(
                    ErrorKind::InvalidValue,
                    format!("allow_changes \"{}\" {problem}", glob.escape_default()),
                )
                .with_hint(
                    "write an absolute path glob on the nodes, e.g. /var/lib/app/** \
                     (`*` within one folder, `**` across folders)",
                );
                return Err(cx.source.at_item(&list, i, error));
            }
        }
        Ok(StepIdempotence {
            allow_changes: globs,
        })
    }
}

impl Common {
    /// The step, named `default_name(on)` unless a name was written.
    fn finish(
        self,
        default_name: impl FnOnce(&str) -> String,
        env: Vars,
        action: StepAction,
        path: &FieldPath,
        cx: &Context,
    ) -> Result<Step, SpecError> {
        let on = targets(self.on, path, cx)?;
        let timeout = duration(self.timeout, DEFAULT_STEP_TIMEOUT, path, cx)?;
        let idempotence = IdempotenceFile::read(self.idempotence, path, cx)?;
        Ok(Step {
            name: self.name.unwrap_or_else(|| default_name(&on_suffix(&on))),
            on,
            timeout,
            env: env.0,
            action,
            idempotence,
        })
    }
}

step_form! {
    /// Runs a shell script as root on every target, with `/bin/sh -e` unless the
    /// script has its own `#!` line.
    ShellStep {
        /// A script file relative to the scenario folder, or the script itself.
        /// The value names a file when it is one word (no spaces or line breaks)
        /// that contains `/` or ends in `.sh`; anything else, including any `|`
        /// block, is the script's text.
        shell: String,
        /// Environment variables for the script.
        #[serde(default)]
        env: Vars,
    }
}

step_form! {
    /// Runs an Ansible playbook with ansible-core against an inventory generated
    /// from the topology: node groups become inventory groups and `on` becomes
    /// `--limit`.
    AnsibleStep {
        /// The playbook, relative to the scenario folder.
        ansible: String,
        /// Run ansible on this node (ansible-core is installed on it) instead of
        /// the host.
        #[serde(default)]
        controller: Option<String>,
        /// Extra variables, passed with `-e`.
        #[serde(default)]
        extra_vars: Vars,
        /// Environment variables for ansible-playbook.
        #[serde(default)]
        env: Vars,
    }
}

step_form! {
    /// Copies a file or folder from the host to every target.
    CopyStep {
        /// The file or folder to copy, relative to the scenario folder.
        copy: String,
        /// Where to put it on the nodes: an absolute path.
        dest: String,
        /// Mode of the copied file, e.g. `"0644"`. Default: the source's mode.
        #[serde(default)]
        mode: Option<Mode>,
    }
}

/// Whether a `shell:` value names a script file rather than holding the script:
/// one word (no whitespace at all, so a `|` block is always a script) that
/// contains `/` or ends in `.sh`.
fn is_script_path(value: &str) -> bool {
    !value.is_empty()
        && !value.contains(char::is_whitespace)
        && (value.contains('/') || value.ends_with(".sh"))
}

/// The last part of a written path, for default names.
fn file_name(written: &str) -> &str {
    Path::new(written)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or(written)
}

impl Form for ShellStep {
    const KEY: &'static str = "shell";
    type Explicit = Step;

    fn into_explicit(mut self, path: &FieldPath, cx: &Context) -> Result<Step, SpecError> {
        let common = self.common();
        let (action, label) = if is_script_path(&self.shell) {
            let file = cx.dir.join(&self.shell);
            let script = read_script(&file).map_err(|e| cx.source.at(&path.field("shell"), e))?;
            let label = file_name(&self.shell).to_owned();
            (
                StepAction::Shell {
                    script,
                    file: Some(file),
                },
                label,
            )
        } else {
            let label = short(&self.shell);
            let action = StepAction::Shell {
                script: self.shell,
                file: None,
            };
            (action, label)
        };
        common.finish(
            |on| format!("shell {label}{on}"),
            self.env,
            action,
            path,
            cx,
        )
    }
}

/// Reads a script file named by a `shell:` value.
fn read_script(file: &Path) -> Result<String, SpecError> {
    let refuse = |message: String| {
        Err(SpecError::new(ErrorKind::MissingFile, message).with_hint(
            "a `shell:` value that is one word containing `/` or ending in `.sh` names a \
             script file relative to the scenario folder; to run it as a command on the \
             nodes instead, write it as a block (`shell: |`)",
        ))
    };
    match std::fs::read(file) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(script) => Ok(script),
            Err(_) => refuse(format!("script file {} is not text", file.display())),
        },
        Err(_) if file.is_dir() => refuse(format!("{} is a folder, not a script", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            refuse(format!("script file {} not found", file.display()))
        }
        Err(e) => Err(SpecError::io(file, e)),
    }
}

/// A path on the host that a step reads, resolved against the scenario folder.
fn existing(
    written: &str,
    what: &str,
    want_file: bool,
    path: &FieldPath,
    cx: &Context,
) -> Result<PathBuf, SpecError> {
    let resolved = cx.dir.join(written);
    let problem = match std::fs::metadata(&resolved) {
        Ok(meta) if want_file && meta.is_dir() => {
            format!("{what} {} is a folder, not a file", resolved.display())
        }
        Ok(_) => return Ok(resolved),
        Err(_) => format!("{what} {} not found", resolved.display()),
    };
    let error = SpecError::new(ErrorKind::MissingFile, problem).with_hint(format!(
        "paths are relative to the scenario folder ({}); fix the path or add the file",
        cx.dir.display()
    ));
    Err(cx.source.at(path, error))
}

impl Form for AnsibleStep {
    const KEY: &'static str = "ansible";
    type Explicit = Step;

    fn into_explicit(mut self, path: &FieldPath, cx: &Context) -> Result<Step, SpecError> {
        let common = self.common();
        let playbook = existing(&self.ansible, "playbook", true, &path.field("ansible"), cx)?;
        let label = file_name(&self.ansible).to_owned();
        let action = StepAction::Ansible {
            playbook,
            controller: self.controller,
            extra_vars: self.extra_vars.0,
        };
        common.finish(
            |on| format!("ansible {label}{on}"),
            self.env,
            action,
            path,
            cx,
        )
    }
}

impl Form for CopyStep {
    const KEY: &'static str = "copy";
    type Explicit = Step;

    fn into_explicit(mut self, path: &FieldPath, cx: &Context) -> Result<Step, SpecError> {
        let common = self.common();
        let src = existing(&self.copy, "copy source", false, &path.field("copy"), cx)?;
        let label = format!("{} to {}", file_name(&self.copy), self.dest);
        let action = StepAction::Copy {
            src,
            dest: self.dest,
            mode: self.mode.map(|mode| mode.0),
        };
        common.finish(
            |on| format!("copy {label}{on}"),
            Vars::default(),
            action,
            path,
            cx,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_paths_are_single_words_with_a_slash_or_sh_suffix() {
        for path in ["scripts/web.sh", "web.sh", "./setup", "/opt/x"] {
            assert!(is_script_path(path), "{path}");
        }
        for inline in [
            "apt-get install -y nginx",
            "true",
            "systemctl restart nginx",
            "scripts/web.sh\n",
            "echo a/b",
            "",
        ] {
            assert!(!is_script_path(inline), "{inline:?}");
        }
    }
}
