//! Commands on a node: run a command (waiting, or as a background job),
//! write and read a file.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use rehearse_sandbox::{CapturedBytes, ExecIo, NodeExec};

use crate::error::ErrorCode;
use crate::jobs::{new_id, Job};
use crate::outputs::cut;
use crate::types::*;
use crate::{Api, ApiError, OUTPUT_LIMIT};

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

impl Api {
    pub(crate) fn exec(&self, req: ExecRequest) -> Result<ExecResult, ApiError> {
        self.live_node(&req.cluster, &req.node)?;
        let timeout = timeout_of(req.timeout_s, Some(DEFAULT_EXEC_TIMEOUT))?;
        let sreq = sandbox_request(&req.command, &req.env, &req.workdir, timeout);
        let CapturedBytes {
            outcome,
            stdout: out,
            stderr: err,
        } = self
            .engine
            .capture_bytes(&req.cluster, &req.node, &sreq, None)?;
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
        let CapturedBytes {
            outcome,
            stderr: err,
            ..
        } = self.engine.capture_bytes(
            &req.cluster,
            &req.node,
            &sreq,
            Some(Box::new(std::io::Cursor::new(bytes))),
        )?;
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
        let CapturedBytes {
            outcome,
            stdout: mut out,
            stderr: err,
        } = self
            .engine
            .capture_bytes(&req.cluster, &req.node, &sreq, None)?;
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
}
