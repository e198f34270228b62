//! Full outputs of commands whose results were cut, kept under the state
//! directory for [`KEEP_FOR`]: a server that starts removes older ones.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::error::ErrorCode;
use crate::types::{OutputChunk, ReadOutputRequest, Stream};
use crate::{ApiError, OUTPUT_LIMIT};

pub(crate) struct Outputs {
    dir: PathBuf,
}

/// How long a kept output stays readable.
pub(crate) const KEEP_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

impl Outputs {
    pub(crate) fn new(dir: PathBuf) -> Self {
        let outputs = Outputs { dir };
        outputs.remove_older_than(KEEP_FOR);
        outputs
    }

    /// Removes kept outputs last written more than `age` ago; returns how many.
    pub(crate) fn remove_older_than(&self, age: std::time::Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age);
            if old && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Keeps both streams; returns the output id.
    pub(crate) fn keep(&self, stdout: &[u8], stderr: &[u8]) -> Result<String, ApiError> {
        let id = crate::jobs::new_id("out");
        let dir = self.dir.join(&id);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("stdout"), stdout)?;
            std::fs::write(dir.join("stderr"), stderr)
        };
        write().map_err(|e| {
            ApiError::new(
                ErrorCode::Io,
                format!("keeping the output in {}: {e}", dir.display()),
                true,
            )
        })?;
        Ok(id)
    }

    pub(crate) fn read(&self, req: &ReadOutputRequest) -> Result<OutputChunk, ApiError> {
        let not_found = || {
            ApiError::not_found(
                ErrorCode::OutputNotFound,
                format!(
                    "no output \"{}\"; output ids come from exec or job_status results",
                    req.output_id
                ),
            )
        };
        if !req
            .output_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(not_found());
        }
        let name = match req.stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let path = self.dir.join(&req.output_id).join(name);
        let mut file = std::fs::File::open(&path).map_err(|_| not_found())?;
        let io = |e: std::io::Error| {
            ApiError::new(
                ErrorCode::Io,
                format!("reading {}: {e}", path.display()),
                true,
            )
        };
        let total = file.metadata().map_err(io)?.len();
        let limit = req.limit.unwrap_or(OUTPUT_LIMIT as u64).clamp(1, 1 << 20);
        let offset = req.offset.min(total);
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut buf = Vec::new();
        file.take(limit).read_to_end(&mut buf).map_err(io)?;
        let next = offset + buf.len() as u64;
        Ok(OutputChunk {
            text: String::from_utf8_lossy(&buf).into_owned(),
            offset,
            next_offset: next,
            total_bytes: total,
            eof: next >= total,
        })
    }
}

/// The text of a stream cut at the limit, with a marker saying how to get the rest.
pub(crate) fn cut(bytes: &[u8], limit: usize) -> (String, bool) {
    if bytes.len() <= limit {
        return (String::from_utf8_lossy(bytes).into_owned(), false);
    }
    let mut text = String::from_utf8_lossy(&bytes[..limit]).into_owned();
    text.push_str(&format!(
        "\n[… truncated: {} more bytes; call read_output with the output_id]",
        bytes.len() - limit
    ));
    (text, true)
}

/// The last `limit` bytes of a stream still being written.
pub(crate) fn tail(bytes: &[u8], limit: usize) -> (String, bool) {
    if bytes.len() <= limit {
        return (String::from_utf8_lossy(bytes).into_owned(), false);
    }
    let start = bytes.len() - limit;
    (
        format!(
            "[… {start} earlier bytes cut]\n{}",
            String::from_utf8_lossy(&bytes[start..])
        ),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_outputs_are_removed_recent_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let outputs = Outputs::new(dir.path().to_path_buf());
        let old = outputs.keep(b"old", b"").unwrap();
        let recent = outputs.keep(b"recent", b"").unwrap();
        let past = std::time::SystemTime::now() - KEEP_FOR - std::time::Duration::from_secs(60);
        let f = std::fs::File::open(dir.path().join(&old)).unwrap();
        f.set_modified(past).unwrap();
        assert_eq!(outputs.remove_older_than(KEEP_FOR), 1);
        assert!(!dir.path().join(&old).exists());
        assert!(dir.path().join(&recent).join("stdout").exists());
    }
}
