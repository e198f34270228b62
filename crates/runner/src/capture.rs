//! Output capture: the whole stream to a log file, its tail to the report.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A sink keeping the last `cap` bytes written to it, and every byte in `file`
/// when one is given.
pub(crate) struct Capture {
    tail: Vec<u8>,
    cap: usize,
    total: u64,
    file: Option<(File, PathBuf)>,
}

impl Capture {
    pub fn new(cap: usize) -> Self {
        Capture {
            tail: Vec::new(),
            cap,
            total: 0,
            file: None,
        }
    }

    /// A capture that also writes everything to `path` (a log the report points
    /// to). A file that cannot be created only loses the full log.
    pub fn logged(cap: usize, path: &Path) -> Self {
        let mut capture = Capture::new(cap);
        match File::create(path) {
            Ok(f) => capture.file = Some((f, path.to_path_buf())),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot write a step log"),
        }
        capture
    }

    /// The kept text: the tail, after a line saying how much was cut and where
    /// the whole output is.
    pub fn into_text(self) -> String {
        tail_text(&self.tail, self.cap, self.total, self.file.map(|(_, p)| p))
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some((f, _)) = &mut self.file {
            // A full disk must not stop the step; the tail is still kept.
            let _ = f.write_all(buf);
        }
        self.total += buf.len() as u64;
        self.tail.extend_from_slice(buf);
        // Trim in batches so long output costs amortised O(n).
        if self.tail.len() > 2 * self.cap {
            let cut = self.tail.len() - self.cap;
            self.tail.drain(..cut);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some((f, _)) = &mut self.file {
            let _ = f.flush();
        }
        Ok(())
    }
}

/// The last `cap` bytes of `bytes` (whose stream was `total` bytes long) as text,
/// starting at a character boundary, with a marker line when anything was cut.
pub(crate) fn tail_text(bytes: &[u8], cap: usize, total: u64, whole: Option<PathBuf>) -> String {
    let mut start = bytes.len().saturating_sub(cap);
    // Never start inside a UTF-8 sequence.
    while start < bytes.len() && (bytes[start] & 0b1100_0000) == 0b1000_0000 {
        start += 1;
    }
    let kept = &bytes[start..];
    let text = String::from_utf8_lossy(kept);
    let cut = total - kept.len() as u64;
    if cut == 0 {
        return text.into_owned();
    }
    let where_ = match whole {
        Some(p) => format!("; whole output in {}", p.display()),
        None => String::new(),
    };
    format!("[rehearse: first {cut} bytes cut{where_}]\n{text}")
}

/// The last `cap` bytes of a file as text, with the same marker; empty when the
/// file cannot be read.
pub(crate) fn file_tail(path: &Path, cap: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = total.saturating_sub(cap as u64);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let total = start + bytes.len() as u64;
    tail_text(&bytes, cap, total, Some(path.to_path_buf()))
}

/// Text cut to its last `cap` bytes, with the same marker.
pub(crate) fn cap_text(text: &str, cap: usize) -> String {
    tail_text(text.as_bytes(), cap, text.len() as u64, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_is_kept_whole() {
        let mut c = Capture::new(16);
        c.write_all(b"hello\n").unwrap();
        assert_eq!(c.into_text(), "hello\n");
    }

    #[test]
    fn long_output_keeps_its_tail_and_says_how_much_was_cut() {
        let mut c = Capture::new(10);
        for i in 0..100 {
            writeln!(c, "{i:03}").unwrap();
        }
        let text = c.into_text();
        assert!(
            text.starts_with("[rehearse: first 390 bytes cut]\n"),
            "{text}"
        );
        assert!(text.ends_with("098\n099\n"), "{text}");
    }

    #[test]
    fn a_file_tail_points_to_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ansible.log");
        std::fs::write(&path, "line 1\nline 2\n").unwrap();
        assert_eq!(file_tail(&path, 100), "line 1\nline 2\n");
        let tail = file_tail(&path, 7);
        assert!(tail.ends_with("\nline 2\n"), "{tail}");
        assert!(tail.contains("first 7 bytes cut"), "{tail}");
        assert_eq!(file_tail(&dir.path().join("missing"), 10), "");
    }

    #[test]
    fn tail_never_starts_inside_a_character() {
        let text = "ééééé"; // two bytes each
        let kept = cap_text(text, 5);
        assert!(kept.ends_with("éé"), "{kept}");
        assert!(!kept.contains('\u{fffd}'), "{kept}");
    }

    #[test]
    fn logged_capture_writes_everything_to_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut c = Capture::logged(4, &path);
        c.write_all(b"0123456789").unwrap();
        let text = c.into_text();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0123456789");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.ends_with("6789"), "{text}");
    }
}
