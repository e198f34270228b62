//! Full outputs of commands whose results were cut, kept under the state
//! directory until the server's state is cleaned.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::types::{OutputChunk, ReadOutputRequest, Stream};
use crate::{ApiError, OUTPUT_LIMIT};

pub(crate) struct Outputs {
    dir: PathBuf,
}

impl Outputs {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Outputs { dir }
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
                "io",
                format!("keeping the output in {}: {e}", dir.display()),
                true,
            )
        })?;
        Ok(id)
    }

    pub(crate) fn read(&self, req: &ReadOutputRequest) -> Result<OutputChunk, ApiError> {
        let not_found = || {
            ApiError::not_found(
                "output_not_found",
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
            ApiError::new("io", format!("reading {}: {e}", path.display()), true)
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
