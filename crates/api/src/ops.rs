//! What each command does, over the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use rehearse_checks::Status;
use rehearse_sandbox::{ClusterState, Engine, ExecIo, SandboxError, UpRequest, DEFAULT_TTL};
use rehearse_scenario::{Event, Keep, RunOptions};
use rehearse_spec::scenario::Scenario;
use rehearse_spec::Topology;

use crate::error::ErrorCode;
use crate::jobs::{new_id, Job};
use crate::outputs::cut;
use crate::types::*;
use crate::{Api, ApiError, ProgressSink, OUTPUT_LIMIT};

const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(300);
const READ_FILE_LIMIT: usize = 1 << 20;

fn sandbox_request(
    command: &str,
    env: &std::collections::BTreeMap<String, String>,
    workdir: &Option<String>,
    timeout: Option<Duration>,
) -> rehearse_sandbox::ExecRequest {
    rehearse_sandbox::ExecRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), command.into()],
        env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        timeout,
        workdir: workdir.clone(),
    }
}

fn timeout_of(secs: Option<f64>, default: Option<Duration>) -> Result<Option<Duration>, ApiError> {
    match secs {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(_) => Err(ApiError::invalid(
            "timeout_s",
            "timeout_s must be a positive number of seconds",
        )),
    }
}

fn parse_ttl(field: &str, text: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(text)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("{field} \"{text}\" is not a duration; write e.g. 90s, 30m, 2h"),
            )
        })
}

/// The one description of a cluster, for every adapter (CLI `--json`, MCP).
pub fn cluster_info(engine: &Engine, s: &ClusterState) -> ClusterInfo {
    ClusterInfo {
        cluster: s.id.clone(),
        status: serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        boot_ms: s.boot_ms,
        created_at: s.created_at,
        source: s.source.clone(),
        from_pool: s.from_pool,
        ssh_config: engine
            .cluster_dir(&s.id)
            .join("ssh/config")
            .display()
            .to_string(),
        expires_at: s.expires_at,
        ttl_left_s: s.ttl_left().max(0),
        nodes: s
            .nodes
            .iter()
            .map(|n| (n, engine.node_usage(&s.id, &n.name)))
            .map(|(n, usage)| NodeInfo {
                name: n.name.clone(),
                ip: n.ip().map(|i| i.to_string()),
                addresses: n
                    .nics
                    .iter()
                    .map(|c| AddressInfo {
                        network: c.network.clone(),
                        ip: c.ip.to_string(),
                        iface: c.iface.clone(),
                    })
                    .collect(),
                groups: n.groups.clone(),
                image: n.image.clone(),
                backend: n.backend.clone(),
                boot_ms: n.boot_ms,
                boot_retried: n.boot_retried.clone(),
                limits: LimitsInfo {
                    memory_bytes: n.limits.memory,
                    cpus: n.limits.millicpus.map(|m| f64::from(m) / 1000.0),
                    pids: n.limits.pids,
                    text: n.limits.to_string(),
                },
                memory_used_bytes: usage.memory_used,
                oom_kills: usage.oom_kills,
            })
            .collect(),
        networks: s
            .networks
            .iter()
            .map(|n| NetworkInfo {
                name: n.name.clone(),
                cidr: n.cidr.to_string(),
                gateway: n.gateway.to_string(),
                bridge: n.bridge.clone(),
                egress: n.egress.as_str().to_string(),
            })
            .collect(),
    }
}

impl Api {
    /// The cluster, if it is alive. One past its expiry is destroyed now
    /// rather than left to the reaper, so nothing is used after its time.
    pub(crate) fn live(&self, id: &str) -> Result<ClusterState, ApiError> {
        let state = self.engine.get(id)?;
        if state.ttl_left() <= 0 {
            match self.engine.down(id) {
                Ok(()) | Err(SandboxError::ClusterNotFound(_)) => {}
                Err(e) => tracing::warn!(cluster = id, error = %e, "destroying an expired cluster"),
            }
            return Err(ApiError::cluster_expired(id));
        }
        Ok(state)
    }

    pub(crate) fn live_node(&self, id: &str, node: &str) -> Result<ClusterState, ApiError> {
        let state = self.live(id)?;
        state.node(node)?;
        Ok(state)
    }

    pub(crate) fn provision(&self, req: ProvisionRequest) -> Result<ClusterInfo, ApiError> {
        let ttl = match &req.ttl {
            Some(t) => parse_ttl("ttl", t)?,
            None => DEFAULT_TTL,
        };
        // The topology format validates names, networks and images with the
        // same messages as a file gets, naming the field (`nodes[1].name`).
        let topology = Topology::from_input(req.nodes, req.networks).map_err(|e| {
            let field = match e.field() {
                Some(f) if f.starts_with("networks") => "networks",
                _ => "nodes",
            };
            ApiError::spec(field, &e)
        })?;
        let state = self.up(
            UpRequest {
                topology,
                ttl,
                boot_timeout: Duration::from_secs(60),
                source: "mcp provision".into(),
                ownership: rehearse_sandbox::Ownership::User,
            },
            true,
            &|_| {},
        )?;
        Ok(cluster_info(&self.engine, &state))
    }

    /// Starts a cluster from a parsed topology (from the warm pool when it
    /// holds one of this shape and `pool` is true) and records it in the run
    /// store: `provision` and the CLI's `up` both come here. Errors are the
    /// engine's, for front ends that render them in their own words.
    pub fn up(
        &self,
        req: UpRequest,
        pool: bool,
        progress: &(dyn Fn(rehearse_sandbox::Progress) + Sync),
    ) -> Result<ClusterState, rehearse_sandbox::SandboxError> {
        let state = if pool {
            self.engine.up(req, progress)?
        } else {
            self.engine.up_fresh(req, progress)?
        };
        if let Some(store) = self.recording_store() {
            rehearse_scenario::record_cluster(&store, &state);
        }
        Ok(state)
    }

    /// Runs a command on a node with `stdin`, its whole output kept.
    fn exec_buffered(
        &self,
        cluster: &str,
        node: &str,
        req: &rehearse_sandbox::ExecRequest,
        stdin: Option<Vec<u8>>,
    ) -> Result<(rehearse_sandbox::ExecOutcome, Vec<u8>, Vec<u8>), ApiError> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let outcome = self.engine.exec(
            cluster,
            node,
            req,
            ExecIo {
                stdin: stdin.map(|b| Box::new(std::io::Cursor::new(b)) as Box<_>),
                stdout: &mut out,
                stderr: &mut err,
            },
        )?;
        Ok((outcome, out, err))
    }

    pub(crate) fn exec(&self, req: ExecRequest) -> Result<ExecResult, ApiError> {
        self.live_node(&req.cluster, &req.node)?;
        let timeout = timeout_of(req.timeout_s, Some(DEFAULT_EXEC_TIMEOUT))?;
        let sreq = sandbox_request(&req.command, &req.env, &req.workdir, timeout);
        let (outcome, out, err) = self.exec_buffered(&req.cluster, &req.node, &sreq, None)?;
        let (stdout, t1) = cut(&out, OUTPUT_LIMIT);
        let (stderr, t2) = cut(&err, OUTPUT_LIMIT);
        let output_id = if t1 || t2 {
            Some(self.outputs.keep(&out, &err)?)
        } else {
            None
        };
        Ok(ExecResult {
            exit_code: outcome.exit_code,
            stdout,
            stderr,
            truncated: t1 || t2,
            output_id,
            duration_ms: outcome.duration_ms,
        })
    }

    pub(crate) fn exec_background(
        self: &Arc<Self>,
        req: ExecBackgroundRequest,
    ) -> Result<JobStarted, ApiError> {
        self.live_node(&req.cluster, &req.node)?;
        let timeout = timeout_of(req.timeout_s, None)?;
        let id = new_id("job");
        let pidfile = format!("/run/rehearse-{id}.pgid");
        // The command runs in a session of its own whose id is written down,
        // so job_kill can stop it and everything it started.
        let wrapper = format!(
            "exec setsid -w /bin/sh -c 'echo $$ > {pidfile}; exec /bin/sh -c \"$1\"' rehearse-job \"$REHEARSE_JOB_COMMAND\""
        );
        let mut env = req.env.clone();
        env.insert("REHEARSE_JOB_COMMAND".into(), req.command.clone());
        let sreq = sandbox_request(&wrapper, &env, &req.workdir, timeout);
        let job = Job::new(
            "exec",
            Some((req.cluster.clone(), req.node.clone(), pidfile)),
            id.clone(),
        );
        self.jobs.add(job.clone());
        let api = Arc::clone(self);
        std::thread::spawn(move || {
            let mut out = job.stdout.clone();
            let mut err = job.stderr.clone();
            let result = api.engine.exec(
                &req.cluster,
                &req.node,
                &sreq,
                ExecIo {
                    stdin: None,
                    stdout: &mut out,
                    stderr: &mut err,
                },
            );
            let (o, e) = (job.stdout.snapshot(), job.stderr.snapshot());
            let output_id = if o.len() > OUTPUT_LIMIT || e.len() > OUTPUT_LIMIT {
                api.outputs.keep(&o, &e).ok()
            } else {
                None
            };
            job.finish(|end| {
                end.output_id = output_id;
                match result {
                    Ok(outcome) => end.exit_code = Some(outcome.exit_code),
                    Err(e) => {
                        end.state = Some(JobState::Failed);
                        end.error = Some(e.into());
                    }
                }
            });
        });
        Ok(JobStarted { job_id: id })
    }

    pub(crate) fn job_kill(&self, id: &str) -> Result<JobStatus, ApiError> {
        let job = self.jobs.get(id)?;
        let running = job.with(|end| end.state.is_none());
        if let (true, Some((cluster, node, pidfile))) = (running, &job.target) {
            // dash's kill builtin takes no negative pids; procps' pkill does sessions.
            let script =
                format!("p=$(cat {pidfile} 2>/dev/null) && pkill -KILL -s \"$p\"; rm -f {pidfile}");
            let req = rehearse_sandbox::ExecRequest::shell(&script);
            let _ = self.engine.exec_capture(cluster, node, &req);
            // The job's thread sees its command end; wait for it briefly so
            // the status returned is final.
            for _ in 0..50 {
                if job.with(|end| end.state.is_some()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        } else if let (true, Some(cancel)) = (running, &job.cancel) {
            // The run stops at its next phase; destroying its clusters ends
            // the step it may be in the middle of.
            for cluster in cancel.cancel() {
                match self.engine.down(&cluster) {
                    Ok(()) | Err(SandboxError::ClusterNotFound(_)) => {}
                    Err(e) => {
                        tracing::warn!(cluster, error = %e, "destroying a stopped job's cluster")
                    }
                }
            }
            // A model call in flight finishes first: wait for the run to see the stop.
            for _ in 0..600 {
                if job.with(|end| end.state.is_some()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        } else if running {
            return Err(ApiError::new(
                ErrorCode::NotKillable,
                format!(
                    "a {} job cannot be stopped midway; wait for it (job_status)",
                    job.kind
                ),
                false,
            ));
        }
        Ok(job.status())
    }

    pub(crate) fn write_file(&self, req: WriteFileRequest) -> Result<WriteFileResult, ApiError> {
        let bytes = match req.encoding {
            Encoding::Text => req.content.into_bytes(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(req.content.trim())
                .map_err(|e| {
                    ApiError::invalid("content", format!("content is not valid base64: {e}"))
                })?,
        };
        let mode = req.mode.clone().unwrap_or_default();
        if !mode.is_empty() && (mode.len() > 4 || !mode.chars().all(|c| ('0'..='7').contains(&c))) {
            return Err(ApiError::invalid(
                "mode",
                format!("mode \"{mode}\" is not octal like \"0644\""),
            ));
        }
        if !req.path.starts_with('/') {
            return Err(ApiError::invalid(
                "path",
                format!("path \"{}\" must be absolute", req.path),
            ));
        }
        self.live_node(&req.cluster, &req.node)?;
        let sreq = rehearse_sandbox::ExecRequest {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                r#"set -e; mkdir -p -- "$(dirname -- "$1")"; cat > "$1"; [ -z "$2" ] || chmod "$2" "$1""#.into(),
                "write_file".into(),
                req.path.clone(),
                mode,
            ],
            ..Default::default()
        };
        let len = bytes.len() as u64;
        let (outcome, _, err) = self.exec_buffered(&req.cluster, &req.node, &sreq, Some(bytes))?;
        if outcome.exit_code != 0 {
            return Err(ApiError::new(
                ErrorCode::WriteFailed,
                format!(
                    "could not write {}:{}: {}",
                    req.node,
                    req.path,
                    String::from_utf8_lossy(&err).trim()
                ),
                false,
            ));
        }
        Ok(WriteFileResult {
            path: req.path,
            bytes: len,
        })
    }

    pub(crate) fn read_file(&self, req: ReadFileRequest) -> Result<ReadFileResult, ApiError> {
        self.live_node(&req.cluster, &req.node)?;
        let sreq = rehearse_sandbox::ExecRequest {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    r#"[ -f "$1" ] || {{ echo "no regular file $1" >&2; exit 2; }}; head -c {} -- "$1""#,
                    READ_FILE_LIMIT + 1
                ),
                "read_file".into(),
                req.path.clone(),
            ],
            ..Default::default()
        };
        let (outcome, mut out, err) = self.exec_buffered(&req.cluster, &req.node, &sreq, None)?;
        if outcome.exit_code != 0 {
            return Err(ApiError::new(
                ErrorCode::FileNotFound,
                format!(
                    "could not read {}:{}: {}; check the path with exec (ls)",
                    req.node,
                    req.path,
                    String::from_utf8_lossy(&err).trim()
                ),
                false,
            ));
        }
        let truncated = out.len() > READ_FILE_LIMIT;
        out.truncate(READ_FILE_LIMIT);
        let bytes = out.len() as u64;
        let (content, encoding) = match (req.encoding, String::from_utf8(out)) {
            (Encoding::Text, Ok(text)) => (text, Encoding::Text),
            (_, Ok(text)) => (
                base64::engine::general_purpose::STANDARD.encode(text),
                Encoding::Base64,
            ),
            (_, Err(e)) => (
                base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                Encoding::Base64,
            ),
        };
        Ok(ReadFileResult {
            path: req.path,
            content,
            encoding,
            bytes,
            truncated,
        })
    }

    pub(crate) fn check(&self, req: CheckRequest) -> Result<CheckReport, ApiError> {
        let state = self.live(&req.cluster)?;
        let scenario = parse_checks(&state, req.checks)?;
        let results = rehearse_scenario::evaluate(&self.engine, &scenario, &state.id);
        let mut summary = CheckSummary::default();
        for r in &results {
            match r.status {
                Status::Passed => summary.passed += 1,
                Status::Failed => summary.failed += 1,
                Status::Skipped => summary.skipped += 1,
            }
        }
        Ok(CheckReport {
            passed: summary.failed == 0,
            summary,
            results: results
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
        })
    }

    pub(crate) fn run_scenario(
        self: &Arc<Self>,
        req: RunScenarioRequest,
        progress: Option<ProgressSink>,
    ) -> Result<JobStarted, ApiError> {
        let scenario = match (&req.path, &req.yaml) {
            (Some(path), None) => Scenario::from_path(std::path::Path::new(path))
                .map_err(|e| ApiError::spec("path", &e))?,
            (None, Some(yaml)) => {
                let dir = match &req.base_dir {
                    Some(d) => PathBuf::from(d),
                    None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
                };
                if !dir.is_dir() {
                    return Err(ApiError::invalid(
                        "base_dir",
                        format!("{} is not a folder on the server", dir.display()),
                    ));
                }
                let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
                Scenario::from_yaml(yaml, "inline.yaml", &dir)
                    .map_err(|e| ApiError::spec("yaml", &e))?
            }
            _ => return Err(ApiError::invalid(
                "path",
                "pass exactly one of path (a scenario file or folder) and yaml (the scenario text)",
            )),
        };
        let keep = match req.keep.as_deref() {
            None | Some("never") => Keep::Never,
            Some("always") => Keep::Always,
            Some("on_failure") => Keep::OnFailure,
            Some(other) => {
                return Err(ApiError::invalid(
                    "keep",
                    format!("keep \"{other}\" is not never, always or on_failure"),
                ))
            }
        };
        let cancel = rehearse_scenario::Cancel::new();
        let opts = RunOptions {
            reboot: req.reboot,
            idempotence: req.idempotence.unwrap_or(true),
            keep,
            cancel: Some(cancel.clone()),
            store: self.recording_store(),
            ..RunOptions::default()
        };
        Ok(self.spawn_job(
            "scenario",
            Some(cancel),
            progress,
            move |api, job, notes| {
                let note = |line: String| notes.note(line);
                let events = |e: Event<'_>| match e {
                    Event::Phase(p) => note(format!("{}: {p}", scenario.name)),
                    Event::ClusterReady { cluster, boot_ms } => {
                        note(format!("cluster {cluster} ready in {boot_ms} ms"))
                    }
                    Event::StepDone(step) => note(format!(
                        "{} step {} ({} ms)",
                        if step.ok { "✔" } else { "✘" },
                        step.name,
                        step.duration_ms
                    )),
                    Event::ChecksDone { phase, results } => {
                        for r in results {
                            note(format!("{phase}: {}", rehearse_checks::render_line(r)));
                        }
                    }
                };
                let report = rehearse_scenario::run(&api.engine, &scenario, &opts, &events);
                let outcome = serde_json::to_value(report.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string));
                note(format!("finished: {}", outcome.clone().unwrap_or_default()));
                job.finish(|end| {
                    end.exit_code = Some(report.exit_code());
                    end.run_id = Some(report.run_id.clone());
                    end.outcome = outcome;
                    end.report = serde_json::to_value(&report).ok();
                });
            },
        ))
    }

    pub(crate) fn extend(&self, req: ExtendRequest) -> Result<ClusterInfo, ApiError> {
        let ttl = parse_ttl("ttl", &req.ttl)?;
        self.live(&req.cluster)?;
        Ok(cluster_info(
            &self.engine,
            &self.engine.extend(&req.cluster, ttl)?,
        ))
    }

    pub(crate) fn destroy(&self, id: &str) -> Result<Destroyed, ApiError> {
        self.engine.get(id)?;
        self.engine.down(id)?;
        if let Some(store) = self.recording_store() {
            rehearse_scenario::record_cluster_destroyed(&store, id);
        }
        Ok(Destroyed {
            cluster: id.to_string(),
            destroyed: true,
        })
    }

    pub(crate) fn list(&self) -> ClusterList {
        ClusterList {
            clusters: self
                .engine
                .list()
                .iter()
                .filter(|s| s.ttl_left() > 0)
                // Clusters waiting in the warm pool are nobody's yet.
                .filter(|s| !self.engine.is_pooled(&s.id))
                .map(|s| cluster_info(&self.engine, s))
                .collect(),
        }
    }

    pub(crate) fn cluster(&self, id: &str) -> Result<ClusterInfo, ApiError> {
        Ok(cluster_info(&self.engine, &self.live(id)?))
    }
}

/// Parses checks written in the scenario syntax, against the cluster's nodes
/// (so `on` may name its nodes and groups).
pub fn parse_checks(
    state: &ClusterState,
    checks: rehearse_spec::scenario::ChecksInput,
) -> Result<Scenario, ApiError> {
    let nodes: Vec<(String, Vec<String>)> = state
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.groups.clone()))
        .collect();
    Scenario::of_checks(&nodes, checks, &std::env::temp_dir())
        .map_err(|e| ApiError::spec("checks", &e))
}
