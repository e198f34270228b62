//! The `newc` cpio format the kernel unpacks an initramfs from. Written here
//! rather than by a host `cpio` (not installed on a minimal Debian): the format
//! is a fixed ASCII header per entry, and the kernel accepts archives
//! concatenated, so a node's own files follow the shared part unchanged.

use std::io::{self, Write};

/// One archive member.
pub enum Entry<'a> {
    Dir {
        path: &'a str,
        mode: u32,
    },
    File {
        path: &'a str,
        mode: u32,
        uid: u32,
        gid: u32,
        data: &'a [u8],
    },
    Symlink {
        path: &'a str,
        target: &'a str,
    },
}

/// Writes entries in `newc` form; `finish` ends the archive.
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    ino: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            out,
            written: 0,
            // Low inode numbers could collide with the archive it is appended to;
            // the kernel only uses them to detect hard links.
            ino: 0x4000_0000 + u32::from(rand::random::<u16>()) * 0x1000,
        }
    }

    pub fn add(&mut self, entry: &Entry<'_>) -> io::Result<()> {
        let (path, mode, uid, gid, data): (&str, u32, u32, u32, &[u8]) = match entry {
            Entry::Dir { path, mode } => (path, 0o040_000 | mode, 0, 0, &[]),
            Entry::File {
                path,
                mode,
                uid,
                gid,
                data,
            } => (path, 0o100_000 | mode, *uid, *gid, data),
            Entry::Symlink { path, target } => (path, 0o120_777, 0, 0, target.as_bytes()),
        };
        self.ino = self.ino.wrapping_add(1);
        self.record(path.trim_start_matches('/'), mode, uid, gid, data)
    }

    fn record(&mut self, name: &str, mode: u32, uid: u32, gid: u32, data: &[u8]) -> io::Result<()> {
        let header = format!(
            "070701{ino:08X}{mode:08X}{uid:08X}{gid:08X}{nlink:08X}{mtime:08X}{size:08X}\
             {z:08X}{z:08X}{z:08X}{z:08X}{namesize:08X}{z:08X}",
            ino = self.ino,
            nlink = if mode & 0o040_000 != 0 { 2 } else { 1 },
            mtime = 0,
            size = data.len(),
            z = 0,
            namesize = name.len() + 1,
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..rem])
    }

    /// Writes the trailer and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.ino = 0;
        self.record("TRAILER!!!", 0, 0, 0, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_the_archive_ends_with_a_trailer() {
        let mut w = Writer::new(Vec::new());
        w.add(&Entry::Dir {
            path: "/etc",
            mode: 0o755,
        })
        .unwrap();
        w.add(&Entry::File {
            path: "/etc/hostname",
            mode: 0o644,
            uid: 0,
            gid: 0,
            data: b"web1\n",
        })
        .unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("070701"));
        assert!(text.contains("etc/hostname\0"));
        assert!(text.contains("web1\n"));
        assert!(text.contains("TRAILER!!!\0"));
        // The file's header records its size (5) in hex.
        let at = text.find("etc/hostname").unwrap();
        let header = &text[at - 110..at];
        assert_eq!(&header[54..62], "00000005", "{header}");
    }
}
