//! Background jobs: long commands and scenario runs, each on a thread of its
//! own, living as long as the process that started them.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ErrorCode;
use crate::outputs::tail;
use crate::types::{JobState, JobStatus};
use crate::{ApiError, OUTPUT_LIMIT};
use rehearse_sandbox::SandboxError;

/// One progress report of a long command.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Increases with every report.
    pub progress: u64,
    pub message: String,
    /// A phase the next report replaces (a terminal shows it on a status
    /// line); otherwise a line worth keeping (a step done, a check's result).
    pub transient: bool,
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// A byte buffer several threads append to and read.
#[derive(Clone, Default)]
pub(crate) struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
pub(crate) struct JobEnd {
    pub state: Option<JobState>,
    pub exit_code: Option<i32>,
    pub events: Vec<String>,
    pub run_id: Option<String>,
    pub outcome: Option<String>,
    pub report: Option<serde_json::Value>,
    pub converge: Option<crate::types::ConvergeResult>,
    pub error: Option<ApiError>,
    pub output_id: Option<String>,
    pub elapsed_ms: Option<u64>,
}

pub(crate) struct Job {
    pub id: String,
    pub kind: &'static str,
    pub started: Instant,
    /// Where an exec job runs, and the file on the node holding its process
    /// group id (for job_kill).
    pub target: Option<(String, String, String)>,
    /// How a scenario or converge job is stopped (job_kill).
    pub cancel: Option<rehearse_scenario::Cancel>,
    pub stdout: SharedBuf,
    pub stderr: SharedBuf,
    pub inner: Mutex<JobEnd>,
}

impl Job {
    pub(crate) fn new(
        kind: &'static str,
        target: Option<(String, String, String)>,
        id: String,
    ) -> Arc<Job> {
        Arc::new(Job {
            id,
            kind,
            started: Instant::now(),
            target,
            cancel: None,
            stdout: SharedBuf::default(),
            stderr: SharedBuf::default(),
            inner: Mutex::new(JobEnd::default()),
        })
    }

    /// A scenario or converge job that job_kill stops through `cancel`.
    pub(crate) fn stoppable(
        kind: &'static str,
        id: String,
        cancel: rehearse_scenario::Cancel,
    ) -> Arc<Job> {
        let mut job = Job::new(kind, None, id);
        if let Some(j) = Arc::get_mut(&mut job) {
            j.cancel = Some(cancel);
        }
        job
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut JobEnd) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn finish(&self, f: impl FnOnce(&mut JobEnd)) {
        let elapsed = self.started.elapsed().as_millis() as u64;
        self.with(|end| {
            f(end);
            end.state.get_or_insert(JobState::Exited);
            end.elapsed_ms = Some(elapsed);
        })
    }

    pub(crate) fn status(&self) -> JobStatus {
        let (stdout, t1) = tail(&self.stdout.snapshot(), OUTPUT_LIMIT);
        let (stderr, t2) = tail(&self.stderr.snapshot(), OUTPUT_LIMIT);
        self.with(|end| JobStatus {
            job_id: self.id.clone(),
            kind: self.kind.to_string(),
            state: end.state.unwrap_or(JobState::Running),
            exit_code: end.exit_code,
            stdout,
            stderr,
            truncated: t1 || t2,
            output_id: end.output_id.clone(),
            events: end.events.clone(),
            run_id: end.run_id.clone(),
            outcome: end.outcome.clone(),
            report: end.report.clone(),
            converge: end.converge.clone(),
            error: end.error.clone(),
            elapsed_ms: end
                .elapsed_ms
                .unwrap_or_else(|| self.started.elapsed().as_millis() as u64),
        })
    }
}

#[derive(Default)]
pub(crate) struct Jobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

impl Jobs {
    pub(crate) fn add(&self, job: Arc<Job>) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id.clone(), job);
    }

    pub(crate) fn get(&self, id: &str) -> Result<Arc<Job>, ApiError> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(
                    ErrorCode::JobNotFound,
                    format!("no job \"{id}\" in this server; job ids come from exec_background, run_scenario and converge, and jobs do not survive a server restart"),
                )
            })
    }

    pub(crate) fn status(&self, id: &str) -> Result<JobStatus, ApiError> {
        Ok(self.get(id)?.status())
    }
}

/// Where a long command's progress goes: the caller's sink as it comes and,
/// for a background job, the job's events for job_status.
pub(crate) struct Notes {
    job: Option<Arc<Job>>,
    sink: Option<crate::ProgressSink>,
    count: std::sync::atomic::AtomicU64,
}

impl Notes {
    pub(crate) fn new(job: Option<Arc<Job>>, sink: Option<crate::ProgressSink>) -> Notes {
        Notes {
            job,
            sink,
            count: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A line worth keeping.
    pub(crate) fn note(&self, line: impl Into<String>) {
        self.send(line.into(), false)
    }

    /// A phase, replaced by the next report.
    pub(crate) fn phase(&self, line: impl Into<String>) {
        self.send(line.into(), true)
    }

    pub(crate) fn send(&self, message: String, transient: bool) {
        let n = self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if let Some(job) = &self.job {
            job.with(|end| end.events.push(message.clone()));
        }
        if let Some(sink) = &self.sink {
            sink(crate::Progress {
                progress: n,
                message,
                transient,
            });
        }
    }
}

impl crate::Api {
    /// Starts `work` on a thread of its own as a background job of `kind`
    /// (stoppable through `cancel` when given); returns its id at once.
    pub(crate) fn spawn_job(
        self: &Arc<Self>,
        kind: &'static str,
        cancel: Option<rehearse_scenario::Cancel>,
        progress: Option<crate::ProgressSink>,
        work: impl FnOnce(&crate::Api, &Job, &Notes) + Send + 'static,
    ) -> crate::types::JobStarted {
        let id = new_id("job");
        let job = match cancel {
            Some(cancel) => Job::stoppable(kind, id.clone(), cancel),
            None => Job::new(kind, None, id.clone()),
        };
        self.jobs.add(job.clone());
        let api = Arc::clone(self);
        std::thread::spawn(move || {
            let notes = Notes::new(Some(Arc::clone(&job)), progress);
            work(&api, &job, &notes);
        });
        crate::types::JobStarted { job_id: id }
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
}
