//! Work asked of any fleet host, placed through the queue on the host with
//! room: the command set's long commands (`run_scenario`, `converge`) and
//! `provision`, as an MCP client asks for them, and their status read back
//! in the command set's own shapes.

use std::path::Path;
use std::time::{Duration, Instant};

use rehearse_api::types::{ClusterInfo, JobState as ApiJobState, JobStatus};
use rehearse_api::{ApiError, Command, ErrorCode};

use crate::payload::{CommandPayload, ScenarioPayload};
use crate::{Fleet, FleetError, JobKind, JobRow, JobSpec, JobState};

/// The commands [`Fleet::place`] places; every other one runs where it is asked.
pub const PLACED: [&str; 3] = ["run_scenario", "converge", "provision"];

/// How long a placed `provision` may wait for a host with room.
pub const PROVISION_WAIT: Duration = Duration::from_secs(300);

/// A folder that cannot travel with its job: the one `path` names, or the
/// `base_dir` of inline YAML.
fn packing_error(from_path: bool, e: FleetError) -> ApiError {
    ApiError::invalid(if from_path { "path" } else { "base_dir" }, e.to_string())
}

fn fleet_error(e: FleetError) -> ApiError {
    match e {
        FleetError::Payload(m) => ApiError::invalid("path", m),
        FleetError::TooBig(m) => ApiError::new(ErrorCode::NoCapacity, m, false),
        FleetError::NoJob(_) => ApiError::not_found(ErrorCode::JobNotFound, e.to_string()),
        other => ApiError::new(ErrorCode::StoreUnavailable, other.to_string(), true),
    }
}

impl Fleet {
    /// Queues the command set's `command` with `args` for the host of the
    /// fleet with room. Input is checked here first, with the command set's
    /// own errors. Answers the queued job.
    pub fn place(
        &self,
        command: &str,
        args: serde_json::Value,
        submitter: &str,
    ) -> Result<JobRow, ApiError> {
        let (kind, payload, shape) = match Command::parse(command, args.clone())? {
            Command::RunScenario(req) => {
                // Checked here with the command set's own reading, so a
                // mistake is answered at once, not by a host later.
                let scenario = rehearse_api::inputs::scenario_of(&req)?;
                let mut payload = match (&req.path, &req.yaml) {
                    (Some(path), _) => ScenarioPayload::pack(Path::new(path)),
                    (_, Some(yaml)) => {
                        ScenarioPayload::inline(yaml, req.base_dir.as_deref().map(Path::new))
                    }
                    _ => unreachable!("scenario_of takes exactly one of path and yaml"),
                }
                .map_err(|e| packing_error(req.path.is_some(), e))?;
                payload.reboot = req.reboot;
                payload.idempotence = req.idempotence.unwrap_or(true);
                if let Some(keep) = req.keep.as_deref() {
                    keep.parse::<rehearse_scenario::Keep>()
                        .map_err(|e| ApiError::invalid("keep", e))?;
                }
                payload.keep = req.keep.clone();
                payload.ttl = req.ttl.clone();
                payload.backend = req.backend.clone();
                // One job runs one platform; a matrix is one call per platform.
                match req.platforms.as_slice() {
                    [] => {}
                    [one] => {
                        rehearse_spec::scenario::Scenario::validate_platforms(&req.platforms)
                            .map_err(|e| ApiError::invalid("platforms", e.to_string()))?;
                        payload.platform = Some(one.clone())
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            "platforms",
                            "a fleet places one platform per run_scenario; call it once per platform (each answers a job of its own)",
                        ))
                    }
                }
                if let Some(backend) = &req.backend {
                    backend
                        .parse::<rehearse_spec::topology::NodeBackend>()
                        .map_err(|e| ApiError::invalid("backend", e.to_string()))?;
                }
                if let Some(ttl) = &req.ttl {
                    rehearse_api::duration("ttl", ttl)?;
                }
                let scenario = match &payload.platform {
                    Some(platform) => scenario.on_platform(platform),
                    None => scenario,
                };
                let value = serde_json::to_value(&payload)
                    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string(), false))?;
                (JobKind::Scenario, value, scenario.topology)
            }
            Command::Converge(req) => {
                let task = rehearse_api::inputs::task_of(&req)?;
                let payload = match &req.path {
                    Some(path) => {
                        CommandPayload::with_path("converge", args, Path::new(path), "task.yaml")
                    }
                    None => CommandPayload::with_base_dir(
                        "converge",
                        args,
                        req.base_dir.as_deref().map(Path::new),
                    ),
                }
                .map_err(|e| packing_error(req.path.is_some(), e))?;
                let value = serde_json::to_value(&payload)
                    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string(), false))?;
                (JobKind::Converge, value, task.topology)
            }
            Command::Provision(req) => (
                JobKind::Provision,
                args,
                rehearse_api::inputs::topology_of(&req)?,
            ),
            other => {
                return Err(ApiError::new(
                    ErrorCode::Refused,
                    format!(
                        "{} runs on the host asked; it is not placed on the fleet",
                        other.name()
                    ),
                    false,
                ))
            }
        };
        self.submit(&JobSpec {
            kind,
            payload,
            nodes: shape.nodes.len() as u32,
            submitter: submitter.to_owned(),
            max_attempts: None,
            images: crate::images_of(&shape),
        })
        .map_err(fleet_error)
    }

    /// Waits until the job is final (or `limit` passed: then the job as it is).
    pub fn wait_final(&self, job_id: &str, limit: Duration) -> Result<JobRow, FleetError> {
        let deadline = Instant::now() + limit;
        loop {
            let job = self.job(job_id)?;
            if job.state.is_final() || Instant::now() >= deadline {
                return Ok(job);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A placed `provision`: queued, waited for, answered as the command set
    /// answers it on the host that booted the cluster.
    pub fn provision(
        &self,
        args: serde_json::Value,
        submitter: &str,
    ) -> Result<(ClusterInfo, JobRow), ApiError> {
        let job = self.place("provision", args, submitter)?;
        let job = self
            .wait_final(&job.id, PROVISION_WAIT)
            .map_err(fleet_error)?;
        if !job.state.is_final() {
            let _ = self.cancel(&job.id);
            return Err(ApiError::new(
                ErrorCode::NoCapacity,
                format!(
                    "no host of the fleet had room for the cluster within {} s (job {}, cancelled): destroy clusters you no longer need, or add a host",
                    PROVISION_WAIT.as_secs(),
                    job.id
                ),
                true,
            ));
        }
        let result = job.result.clone().unwrap_or_default();
        if job.state == JobState::Done {
            let info: ClusterInfo =
                serde_json::from_value(result["cluster"].clone()).map_err(|e| {
                    ApiError::new(
                        ErrorCode::Internal,
                        format!(
                            "job {} answered a cluster this host cannot read: {e}",
                            job.id
                        ),
                        false,
                    )
                })?;
            return Ok((info, job));
        }
        Err(serde_json::from_value::<ApiError>(result["error"].clone())
            .unwrap_or_else(|_| job_error(&job)))
    }

    /// A placed job's status in the command set's shape (`job_status`), or
    /// None when the fleet has no such job.
    pub fn job_status(&self, job_id: &str) -> Result<Option<JobStatus>, FleetError> {
        match self.job(job_id) {
            Ok(job) => Ok(Some(status_of(&job))),
            Err(FleetError::NoJob(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Why a job ended without a result, as the command set says errors.
fn job_error(job: &JobRow) -> ApiError {
    let why = job
        .error
        .clone()
        .unwrap_or_else(|| format!("the job is {}", job.state));
    match job.state {
        JobState::Lost => ApiError::new(
            ErrorCode::HostUnreachable,
            format!(
                "{why} (job {} was lost with its host after {} attempt(s))",
                job.id, job.attempt
            ),
            true,
        ),
        JobState::Cancelled => ApiError::new(
            ErrorCode::Refused,
            format!("job {} was cancelled: {why}", job.id),
            false,
        ),
        _ => ApiError::new(ErrorCode::Internal, why, false),
    }
}

/// A fleet job as `job_status` shows a background job: where it is in the
/// queue and on which host, and once done the same report, converge result
/// or error a job on this host would give.
pub fn status_of(job: &JobRow) -> JobStatus {
    let mut events = vec![format!("queued on the fleet by {}", job.submitter)];
    if let Some(host) = &job.host {
        events.push(format!(
            "placed on host {host} (attempt {} of {})",
            job.attempt, job.max_attempts
        ));
    }
    let elapsed_ms = job
        .finished_at_ms
        .unwrap_or_else(crate::now_ms)
        .saturating_sub(job.submitted_at_ms)
        .max(0) as u64;
    let mut status = JobStatus {
        job_id: job.id.clone(),
        kind: match job.kind {
            JobKind::Scenario | JobKind::MatrixLeg => "scenario",
            other => other.as_str(),
        }
        .to_owned(),
        state: ApiJobState::Running,
        exit_code: job.exit_code,
        stdout: String::new(),
        stderr: String::new(),
        truncated: false,
        output_id: None,
        events,
        run_id: job.run_id.clone(),
        outcome: None,
        report: None,
        converge: None,
        error: None,
        elapsed_ms,
    };
    // What the host running it reported so far.
    let mut lines = job.progress.clone();
    if !job.state.is_final() {
        status.events.extend(lines);
        return status;
    }
    let result = job.result.clone().unwrap_or_default();
    match (job.state, job.kind) {
        (JobState::Done, JobKind::Converge) => {
            // The worker kept the command set's own final status.
            if let Ok(inner) = serde_json::from_value::<JobStatus>(result) {
                // Its events are every line, the reported ones included.
                lines = inner.events;
                status.state = inner.state;
                status.outcome = inner.outcome;
                status.converge = inner.converge;
                status.error = inner.error;
                status.stdout = inner.stdout;
                status.stderr = inner.stderr;
                status.run_id = inner.run_id.or(status.run_id);
            } else {
                status.state = ApiJobState::Exited;
            }
        }
        (JobState::Done, _) => {
            status.state = ApiJobState::Exited;
            let report = if result.get("report").is_some() {
                result["report"].clone()
            } else {
                result.clone()
            };
            status.outcome = report["outcome"].as_str().map(str::to_owned);
            status.report = Some(report);
        }
        _ => {
            status.state = ApiJobState::Failed;
            status.error = Some(
                serde_json::from_value::<ApiError>(result["error"].clone())
                    .unwrap_or_else(|_| job_error(job)),
            );
        }
    }
    status.events.extend(lines);
    if let Some(host) = &job.host {
        status.events.push(format!("{} on host {host}", job.state));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use rehearse_api::types::{ConvergeResult, TokenUse};

    fn job(kind: JobKind, state: JobState, result: Option<serde_json::Value>) -> JobRow {
        JobRow {
            id: "job-000000000001".into(),
            kind,
            nodes: 1,
            submitter: "mcp@alpha".into(),
            priority: 0,
            state,
            host_id: Some("h1".into()),
            host: Some("beta".into()),
            attempt: 1,
            max_attempts: 2,
            cancel_requested: false,
            run_id: Some("r1".into()),
            exit_code: Some(0),
            error: None,
            submitted_at_ms: 1_000,
            started_at_ms: Some(1_100),
            finished_at_ms: Some(3_000),
            result,
            progress: vec!["cluster c1 ready in 400 ms".into()],
        }
    }

    #[test]
    fn a_converge_job_reads_back_as_the_command_sets_status() {
        // What a host's worker keeps: the command set's own final status, with
        // no progress lines and no review findings (fields left out when empty).
        let inner = JobStatus {
            job_id: "local-job".into(),
            kind: "converge".into(),
            state: ApiJobState::Exited,
            exit_code: Some(0),
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            output_id: None,
            events: Vec::new(),
            run_id: Some("c1".into()),
            outcome: Some("converged".into()),
            report: None,
            converge: Some(ConvergeResult {
                converged: true,
                verdict: "converged".into(),
                summary: "done".into(),
                script: Some("echo ok\n".into()),
                run_id: "c1".into(),
                report_path: "/r".into(),
                model: None,
                rules_only: true,
                iterations: Vec::new(),
                review: Vec::new(),
                tokens: TokenUse::default(),
                cost_usd: None,
                wall_ms: 5,
            }),
            error: None,
            elapsed_ms: 5,
        };
        let stored = serde_json::to_value(&inner).unwrap();
        let status = status_of(&job(JobKind::Converge, JobState::Done, Some(stored)));
        assert_eq!(status.job_id, "job-000000000001");
        assert_eq!(status.state, ApiJobState::Exited);
        let converge = status
            .converge
            .expect("the converge result survives the queue");
        assert_eq!(converge.script.as_deref(), Some("echo ok\n"));
        assert_eq!(status.run_id.as_deref(), Some("c1"));
        assert!(status.events.iter().any(|e| e.contains("host beta")));
        // The command set's own events are the whole story: the lines the
        // host reported while it ran are not said twice.
        assert!(!status.events.iter().any(|e| e.contains("ready in")));
    }

    #[test]
    fn a_scenario_job_shows_its_report_and_a_lost_one_why() {
        let report = serde_json::json!({"outcome": "passed", "run_id": "r1"});
        let done = status_of(&job(
            JobKind::Scenario,
            JobState::Done,
            Some(serde_json::json!({"report": report, "text": "…"})),
        ));
        assert_eq!(done.state, ApiJobState::Exited);
        assert_eq!(done.outcome.as_deref(), Some("passed"));
        assert_eq!(done.report, Some(report));
        // What the host reported as it ran, while it runs and once it ended.
        let running = status_of(&job(JobKind::Scenario, JobState::Running, None));
        for status in [&running, &done] {
            assert!(
                status
                    .events
                    .iter()
                    .any(|e| e == "cluster c1 ready in 400 ms"),
                "{:?}",
                status.events
            );
        }

        let mut gone = job(JobKind::Scenario, JobState::Lost, None);
        gone.error = Some("host beta stopped beating".into());
        let lost = status_of(&gone);
        assert_eq!(lost.state, ApiJobState::Failed);
        let error = lost.error.unwrap();
        assert_eq!(error.code, ErrorCode::HostUnreachable);
        assert!(error.message.contains("stopped beating"), "{error}");
        assert!(error.retryable);

        let queued = status_of(&job(JobKind::Provision, JobState::Queued, None));
        assert_eq!(queued.state, ApiJobState::Running);
        assert_eq!(queued.kind, "provision");
    }
}
