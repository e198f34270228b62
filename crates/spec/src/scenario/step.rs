//! Steps: what a scenario applies to its cluster, in order.
//!
//! ```yaml
//! steps:
//!   - name: web servers
//!     on: web                 # node names or groups; default every node
//!     shell: scripts/web.sh   # a file next to the scenario, or an inline script
//!   - ansible: site.yml       # run by ansible-core against a generated inventory
//!     controller: lb          # optional: run from this node instead of the host
//!   - copy: files/app.conf
//!     dest: /etc/app/app.conf
//!     on: [web1, web2]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default time a step may run on a node before it is killed.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// One step, with targets resolved to what was written (names or groups).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Display name; derived from the action when not written.
    pub name: String,
    /// Node names or group names the step applies to; empty means every node.
    pub on: Vec<String>,
    /// Kill the step after this long on a node; the node's state is captured.
    #[serde(with = "super::check_duration_ms")]
    pub timeout: Duration,
    /// Environment variables for the step.
    pub env: Vec<(String, String)>,
    pub action: StepAction,
    /// What the step's second run may change without failing idempotence.
    #[serde(default)]
    pub idempotence: StepIdempotence,
}

/// A step's idempotence rules: by default any real change its second run
/// makes fails the run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepIdempotence {
    /// Absolute path globs on the nodes (`*` within one path component, `**`
    /// across them) whose changes on the second run are expected churn: they
    /// are listed as allowed, not failed.
    pub allow_changes: Vec<String>,
}

impl StepIdempotence {
    /// The first glob matching `path`, if any.
    pub fn allowing(&self, path: &str) -> Option<&str> {
        self.allow_changes
            .iter()
            .find(|glob| compile_glob(glob).is_ok_and(|g| g.is_match(path)))
            .map(String::as_str)
    }
}

/// An `allow_changes` glob as it is matched: `*` stays within one path
/// component, `**` crosses them.
pub fn compile_glob(glob: &str) -> Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()?
        .compile_matcher())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepAction {
    /// A shell script run with `/bin/sh -e` (or its own shebang) as root on every target.
    Shell {
        /// The script's text (read from `file` when one was given).
        script: String,
        /// The file the script came from, relative paths resolved against the scenario folder.
        file: Option<PathBuf>,
    },
    /// An Ansible playbook run by ansible-core; the inventory is generated from the
    /// topology (groups become inventory groups), `on` becomes `--limit`.
    Ansible {
        /// The playbook, resolved against the scenario folder.
        playbook: PathBuf,
        /// Run ansible from this node (ansible-core is installed on it) instead of the host.
        controller: Option<String>,
        /// Extra variables (`-e`).
        extra_vars: Vec<(String, String)>,
    },
    /// Files or folders copied from the host to the targets.
    Copy {
        /// Source on the host, resolved against the scenario folder.
        src: PathBuf,
        /// Absolute destination on the nodes.
        dest: String,
        /// Octal mode applied to the copied file, e.g. `"0644"`.
        mode: Option<String>,
    },
}
