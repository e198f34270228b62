//! Requests and results of the command set. Requests refuse unknown fields so
//! a misspelt option is an error rather than silently ignored.

use std::collections::BTreeMap;

use rehearse_spec::scenario::ChecksInput;
use rehearse_spec::topology::{NetworksInput, NodesInput};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- provision

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    /// The nodes, as in a topology file: a count (3 gives node1..node3 on one
    /// network) or a list of nodes, each a name or {name, image, groups,
    /// networks, ...}.
    pub nodes: NodesInput,
    /// Networks between the nodes, as in a topology file: each {name, cidr,
    /// egress}. Default: one network `default` with `packages` egress (nodes
    /// can apt-get install, nothing else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<NetworksInput>,
    /// How long the cluster lives before it is destroyed, e.g. "30m", "2h".
    /// Default 30m. Extend it with `extend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ClusterInfo {
    pub cluster: String,
    pub status: String,
    pub boot_ms: Option<u64>,
    /// Unix time the cluster was created.
    pub created_at: u64,
    /// Where the topology came from.
    pub source: String,
    /// Whether the cluster was claimed from the warm pool rather than booted
    /// for this request.
    #[serde(default)]
    pub from_pool: bool,
    /// An ssh_config that reaches every node from the host: `ssh -F <it> node1`.
    pub ssh_config: String,
    /// Unix time at which the cluster is destroyed.
    pub expires_at: u64,
    pub ttl_left_s: i64,
    pub nodes: Vec<NodeInfo>,
    pub networks: Vec<NetworkInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeInfo {
    pub name: String,
    /// Address on the node's first network.
    pub ip: Option<String>,
    pub addresses: Vec<AddressInfo>,
    pub groups: Vec<String>,
    pub image: String,
    pub backend: String,
    pub boot_ms: Option<u64>,
    /// Why the node's first boot failed, when it was booted again on a
    /// fresh root (once at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_retried: Option<String>,
    /// What the node may use of the host, as enforced.
    #[serde(default)]
    pub limits: LimitsInfo,
    /// Memory the node uses now, in bytes (page cache included); absent for
    /// a VM or a node that is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    /// Processes of the node the kernel killed because the node reached its
    /// memory limit.
    #[serde(default)]
    pub oom_kills: u64,
}

/// A node's resource limits; an absent one is not limited.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct LimitsInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    /// The same, as a person reads it: `memory 512 MiB, cpus 1.5, pids 2048`.
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AddressInfo {
    pub network: String,
    pub ip: String,
    /// Interface name inside the node.
    pub iface: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NetworkInfo {
    pub name: String,
    pub cidr: String,
    /// The host's address on the network: nodes' default route when egress allows.
    pub gateway: String,
    pub bridge: String,
    pub egress: String,
}

// ---------------------------------------------------------------- exec

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Cluster id returned by provision.
    pub cluster: String,
    /// Node name.
    pub node: String,
    /// Shell command, run as root with `sh -c` on the node.
    pub command: String,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory on the node. Default: /root.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Kill the command after this many seconds. Default 300.
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// True when stdout or stderr was cut at the limit; read all of it with
    /// read_output and `output_id`.
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_id: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    #[default]
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadOutputRequest {
    /// `output_id` from an exec or job_status result.
    pub output_id: String,
    #[serde(default)]
    pub stream: Stream,
    /// Byte offset to start at. Default 0.
    #[serde(default)]
    pub offset: u64,
    /// At most this many bytes. Default 65536.
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OutputChunk {
    pub text: String,
    pub offset: u64,
    pub next_offset: u64,
    pub total_bytes: u64,
    pub eof: bool,
}

// ---------------------------------------------------------------- jobs

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecBackgroundRequest {
    /// Cluster id returned by provision.
    pub cluster: String,
    /// Node name.
    pub node: String,
    /// Shell command, run as root with `sh -c` on the node.
    pub command: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// Kill the command after this many seconds. Default: none (until the
    /// cluster is destroyed or job_kill).
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobStarted {
    pub job_id: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// `job_id` from exec_background, run_scenario or converge.
    pub job_id: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    /// Finished; see exit_code (exec) or report (scenario).
    Exited,
    /// Could not be carried out; see error.
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobStatus {
    pub job_id: String,
    /// "exec", "scenario" or "converge".
    pub kind: String,
    pub state: JobState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Output so far (the last 64 KiB of each stream when longer; see truncated).
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_id: Option<String>,
    /// Progress lines of a scenario run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Scenario run id, once known: its report is rehearse://runs/{run_id}.
    /// For converge, the converge run id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Scenario outcome: passed, failed or error; converge verdict:
    /// converged, budget_exhausted or no_rule_applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The full scenario report once the run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    /// The result of a converge run once it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converge: Option<ConvergeResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ApiError>,
    pub elapsed_ms: u64,
}

// ---------------------------------------------------------------- files

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Text,
    Base64,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileRequest {
    pub cluster: String,
    pub node: String,
    /// Absolute path on the node; parent folders are created.
    pub path: String,
    /// File content, as text or base64 (see encoding).
    pub content: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// Octal permissions such as "0755". Default: 0644 for a new file.
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WriteFileResult {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFileRequest {
    pub cluster: String,
    pub node: String,
    /// Absolute path on the node.
    pub path: String,
    /// "text" (default; falls back to base64 for content that is not UTF-8) or "base64".
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReadFileResult {
    pub path: String,
    pub content: String,
    pub encoding: Encoding,
    pub bytes: u64,
    /// True when the file is larger than 1 MiB and only its start is returned.
    pub truncated: bool,
}

// ---------------------------------------------------------------- checks

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub cluster: String,
    /// Checks in the scenario check syntax, as a JSON list (or one check) or a YAML string,
    /// e.g. [{"http": "http://web1/", "on": "client", "status": 200},
    /// {"service": "nginx", "on": "web1", "running": true},
    /// {"command": "cat /etc/x", "stdout": ["hello"]}, {"file": "/etc/x", "contains": ["a"]},
    /// {"port": "tcp:80", "listening": true}, {"package": "nginx"}].
    /// `on` is a node name or group (default: every node); `timeout` (e.g. "30s") is how long a failing check is retried.
    pub checks: ChecksInput,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CheckReport {
    /// True when no check failed.
    pub passed: bool,
    pub summary: CheckSummary,
    /// One result per check and node: status passed/failed/skipped, expected vs actual, message.
    pub results: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Default)]
pub struct CheckSummary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

// ---------------------------------------------------------------- scenarios

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunScenarioRequest {
    /// A scenario file, or a folder holding rehearse.yaml, on the server's host.
    #[serde(default)]
    pub path: Option<String>,
    /// Or the scenario's YAML text inline.
    #[serde(default)]
    pub yaml: Option<String>,
    /// With yaml: the folder relative script/playbook paths are read from. Default: the server's current folder.
    #[serde(default)]
    pub base_dir: Option<String>,
    /// Reboot every node after the steps and run the checks again.
    #[serde(default)]
    pub reboot: bool,
    /// Apply the steps a second time and require that nothing changed. Default true.
    #[serde(default)]
    pub idempotence: Option<bool>,
    /// Leave the cluster up after the run: "never" (default), "always" or "on_failure".
    #[serde(default)]
    pub keep: Option<String>,
    /// Time to live of a kept cluster, e.g. "30m" (default) or "2h".
    #[serde(default)]
    pub ttl: Option<String>,
    /// Run the scenario once per image, side by side (a matrix), instead of
    /// the scenario's own `platforms:`; nodes that name their image keep it.
    /// The report is then one per platform.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// How many platforms of a matrix run at once. Default: as many as the
    /// host's free memory allows.
    #[serde(default)]
    pub jobs: Option<u64>,
    /// What runs nodes whose topology names no backend: "nspawn" (containers,
    /// the default) or "vm" (QEMU microVMs).
    #[serde(default)]
    pub backend: Option<String>,
}

// ---------------------------------------------------------------- converge

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvergeRequest {
    /// A task file, or a folder holding task.yaml, on the server's host.
    #[serde(default)]
    pub path: Option<String>,
    /// Or the task's YAML text inline: goal, language (bash | ansible), the
    /// topology keys of a scenario (e.g. `nodes: 1`), checks, optional starting
    /// `code`, and budgets (max_iterations, max_wall, max_tokens).
    #[serde(default)]
    pub yaml: Option<String>,
    /// With yaml: the folder relative paths (code_file) are read from. Default: the server's current folder.
    #[serde(default)]
    pub base_dir: Option<String>,
    /// "anthropic" or "openai" (any OpenAI-compatible server). Default: the
    /// server's REHEARSE_LLM_PROVIDER, else guessed from the keys it has.
    #[serde(default)]
    pub provider: Option<String>,
    /// Default: the server's REHEARSE_LLM_MODEL, else the provider's default.
    #[serde(default)]
    pub model: Option<String>,
    /// e.g. "http://127.0.0.1:11434" for Ollama. Default: the server's REHEARSE_LLM_BASE_URL.
    #[serde(default)]
    pub base_url: Option<String>,
}

/// How a converge run ended, in `job_status.converge`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ConvergeResult {
    /// True when a script passed every check on a fresh cluster in one pass.
    pub converged: bool,
    /// converged, budget_exhausted, no_rule_applies or stopped (job_kill).
    pub verdict: String,
    /// One sentence: how it ended and why.
    pub summary: String,
    /// The proven script (or playbook); only when converged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    pub run_id: String,
    /// The full report on the server's host: every prompt, answer, command and run.
    pub report_path: String,
    /// provider/model, or none in rules-only mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub rules_only: bool,
    pub iterations: Vec<ConvergeIteration>,
    /// Forceful or destructive patterns in the script, worth a human look.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub review: Vec<ReviewFinding>,
    pub tokens: TokenUse,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    pub wall_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ConvergeIteration {
    pub number: u32,
    /// Where the code came from: task, model, rules or model-retry.
    pub origin: String,
    /// The run's outcome on a fresh cluster: passed, failed or error.
    pub outcome: String,
    /// How the failure was recovered from: rules, retry or troubleshoot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why that path was chosen (or why the run stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Commands run while troubleshooting.
    pub commands: usize,
    pub tokens: TokenUse,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, Default)]
pub struct TokenUse {
    pub input: u64,
    pub output: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReviewFinding {
    pub rule: String,
    pub text: String,
    pub reason: String,
}

// ---------------------------------------------------------------- lifecycle

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterRequest {
    /// Cluster id returned by provision.
    pub cluster: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    pub cluster: String,
    /// New time to live from now, e.g. "30m", "2h".
    pub ttl: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {}

#[derive(Debug, Clone, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct HostCheckRequest {}

/// What this host can do: every requirement with what was found and the fix,
/// and which link impairments its kernel supports.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// True when clusters can start here (every required check passed).
    pub ok: bool,
    pub checks: Vec<rehearse_sandbox::hostcheck::HostCheck>,
    pub impairments: Vec<rehearse_sandbox::fault::Impairment>,
}

impl HostReport {
    /// Checks this host now. Needs no root and no state directory: what is
    /// missing for root is reported as a failed check.
    pub fn now() -> HostReport {
        let checks = rehearse_sandbox::hostcheck::run_checks();
        HostReport {
            ok: checks.iter().all(|c| c.ok || !c.required),
            checks,
            impairments: rehearse_sandbox::fault::impairment_support(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Destroyed {
    pub cluster: String,
    pub destroyed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ClusterList {
    pub clusters: Vec<ClusterInfo>,
}
