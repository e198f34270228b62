//! Evaluates declarative checks ([`Check`]) on the nodes of a cluster.
//!
//! Checks are evaluated on the node they target, in one exec per node: the
//! agent (`agent/rehearse_check.py`, embedded in the binary) is run there with a
//! JSON list of the node's checks on stdin, evaluates them concurrently, retries
//! each failing one every [`DEFAULT_CHECK_INTERVAL`] until it passes or its
//! timeout is spent, and prints one JSON report. Nodes are evaluated in parallel.
//!
//! Whatever goes wrong on the way (the node is down, the agent crashes, prints
//! garbage or runs past its exec timeout) comes back as failed results whose
//! message says so: [`evaluate`] always returns one result per check.
//!
//! # Semantics beyond the check types' own documentation
//!
//! - Text matchers are substrings, `/regex/` (Python `re.search` in multi-line
//!   mode: `^` and `$` match at every line, `\A` and `\Z` at the text's ends;
//!   other flags inline, `/(?i)x/`), and `!` negates either. A plain package `version` matches the
//!   whole version or its leading components (`2.4` matches `2.4.57-2`, not
//!   `2.45`); a plain kernel-param `value` matches the whole value, whitespace
//!   runs counting as one space.
//! - Lists of things a node has (user `groups`, port `ip`, dns and interface
//!   `addrs`, mount `opts`) must each be present; others may be too. An
//!   interface address written as a CIDR must match with its prefix length.
//! - A file's `filetype` is that of the path itself (`symlink`); its mode,
//!   owner, group and contents are those of what a symlink points to.
//! - A service is `enabled` in the states `systemctl is-enabled` succeeds for
//!   (`enabled`, `static`, `alias`, ...), `running` when active or reloading.
//! - HTTP requests follow redirects and ignore proxy variables; addr and http
//!   names are resolved by the node.
//! - A `process` check does not see the agent or the commands it runs.
//! - One attempt may take at most [`HTTP_ATTEMPT`], [`ADDR_ATTEMPT`] (2 s per
//!   address connected to), [`DNS_ATTEMPT`], the check's timeout for a
//!   command ([`COMMAND_ATTEMPT`] when it has none), or [`LOCAL_ATTEMPT`]; a
//!   precondition at most [`PRECONDITION_TIMEOUT`], and one that does not
//!   finish fails the check rather than skipping it. What a command leaves
//!   running is killed.
//!
//! [`DEFAULT_CHECK_INTERVAL`]: rehearse_spec::scenario::DEFAULT_CHECK_INTERVAL

mod agent;
mod node;
mod result;

use rehearse_sandbox::Engine;
#[cfg(doc)]
use rehearse_spec::scenario::Check;

pub use agent::{
    attempt_timeout, exec_timeout, AgentInfo, ADDR_ATTEMPT, AGENT, COMMAND_ATTEMPT, DNS_ATTEMPT,
    HTTP_ATTEMPT, LOCAL_ATTEMPT, PRECONDITION_TIMEOUT,
};
pub use node::{evaluate_node, NodeChecks, NodeReport};
/// Re-exported: checks reach nodes through the sandbox's one node trait.
pub use rehearse_sandbox::NodeExec;
pub use result::{render_line, CheckResult, Status};

/// Evaluates every node's checks, nodes in parallel, one agent run per node.
/// Returns one result per check, in input order.
pub fn evaluate(engine: &Engine, cluster: &str, work: &[NodeChecks<'_>]) -> Vec<CheckResult> {
    evaluate_nodes(engine, cluster, work)
        .into_iter()
        .flat_map(|report| report.results)
        .collect()
}

/// [`evaluate`] over any [`NodeExec`], keeping each node's agent information.
pub fn evaluate_nodes(
    exec: &dyn NodeExec,
    cluster: &str,
    work: &[NodeChecks<'_>],
) -> Vec<NodeReport> {
    std::thread::scope(|s| {
        let runs: Vec<_> = work
            .iter()
            .map(|w| s.spawn(move || evaluate_node(exec, cluster, w)))
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("check evaluation panicked"))
            .collect()
    })
}
