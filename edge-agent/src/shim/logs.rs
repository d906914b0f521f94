//! Size-bounded rotating log for a container's stdout/stderr, written by the shim.
//!
//! `FILE` grows up to `max_bytes`, then `FILE → FILE.1 → … → FILE.(files-1)` and a new
//! `FILE` starts: disk use never exceeds `max_bytes × files`. Lines are kept whole where
//! possible; the partial-line buffer is capped, so this never buffers without bound.
//! It must never block on anything but the local file system.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Largest partial line held back while waiting for its newline.
const MAX_PENDING: usize = 8 * 1024;

/// An append-only log file with numbered rotations.
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    files: u32,
    file: File,
    size: u64,
    /// The tail of the input after its last newline, not yet written.
    pending: Vec<u8>,
}

impl RotatingLog {
    /// Opens (appends to) `path`, creating parent folders. `max_bytes` and `files` are
    /// clamped to at least 1.
    pub fn open(path: &Path, max_bytes: u64, files: u32) -> io::Result<RotatingLog> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            files: files.max(1),
            file,
            size,
            pending: Vec::new(),
        })
    }

    /// Appends `data`; complete lines are written now, a trailing partial line is held
    /// back (up to [`MAX_PENDING`] bytes) until its newline or [`Self::flush_partial`].
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(last_nl) = data.iter().rposition(|&b| b == b'\n') else {
            self.pending.extend_from_slice(data);
            if self.pending.len() >= self.pending_cap() {
                self.flush_partial()?;
            }
            return Ok(());
        };
        let (lines, tail) = data.split_at(last_nl + 1);
        if self.pending.is_empty() {
            self.write_bounded(lines)?;
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(lines);
            self.write_bounded(&joined)?;
        }
        self.write(tail)
    }

    /// Writes out a held-back partial line (on idle, at EOF, before exit).
    pub fn flush_partial(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.write_bounded(&pending)
    }

    /// True when a partial line waits for its newline.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }

    fn pending_cap(&self) -> usize {
        usize::try_from(self.max_bytes)
            .unwrap_or(usize::MAX)
            .min(MAX_PENDING)
    }

    /// Writes `buf` so that no file exceeds `max_bytes`, rotating at line ends where it can.
    fn write_bounded(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let room =
                usize::try_from(self.max_bytes.saturating_sub(self.size)).unwrap_or(usize::MAX);
            if buf.len() <= room {
                return self.append(buf);
            }
            let cut = match buf[..room].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                // Nothing fits whole: start a fresh file, or split a line longer than a file.
                None if self.size > 0 => 0,
                None => room,
            };
            self.append(&buf[..cut])?;
            buf = &buf[cut..];
            self.rotate()?;
        }
        Ok(())
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    /// `FILE.(n-2) → FILE.(n-1)`, …, `FILE → FILE.1`, then a new empty `FILE`.
    fn rotate(&mut self) -> io::Result<()> {
        if self.files > 1 {
            for k in (1..self.files - 1).rev() {
                let from = self.numbered(k);
                if from.exists() {
                    fs::rename(&from, self.numbered(k + 1))?;
                }
            }
            fs::rename(&self.path, self.numbered(1))?;
        } else {
            fs::remove_file(&self.path)?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }

    fn numbered(&self, k: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{k}"));
        PathBuf::from(name)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn appends_whole_lines_and_holds_partial_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c.log");
        let mut log = RotatingLog::open(&p, 1024, 2).unwrap();
        log.write(b"one\ntw").unwrap();
        assert_eq!(read(&p), "one\n");
        assert!(log.has_partial());
        log.write(b"o\nthree").unwrap();
        assert_eq!(read(&p), "one\ntwo\n");
        log.flush_partial().unwrap();
        assert_eq!(read(&p), "one\ntwo\nthree");
    }

    #[test]
    fn rotates_at_line_ends_and_bounds_disk_use() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut log = RotatingLog::open(&p, 10, 3).unwrap();
        for i in 0..20 {
            log.write(format!("line{i}\n").as_bytes()).unwrap();
        }
        assert_eq!(read(&p), "line19\n");
        assert_eq!(read(&dir.path().join("c.log.1")), "line18\n");
        assert_eq!(read(&dir.path().join("c.log.2")), "line17\n");
        assert!(!dir.path().join("c.log.3").exists());
        let total: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 30);
    }

    #[test]
    fn splits_lines_longer_than_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut log = RotatingLog::open(&p, 4, 3).unwrap();
        log.write(b"abcdefghij\n").unwrap();
        assert_eq!(read(&dir.path().join("c.log.2")), "abcd");
        assert_eq!(read(&dir.path().join("c.log.1")), "efgh");
        assert_eq!(read(&p), "ij\n");
    }

    #[test]
    fn partial_line_buffer_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut log = RotatingLog::open(&p, 1 << 20, 2).unwrap();
        log.write(&vec![b'x'; MAX_PENDING + 10]).unwrap();
        assert!(!log.has_partial());
        assert_eq!(read(&p).len(), MAX_PENDING + 10);
    }

    #[test]
    fn single_file_truncates_and_reopen_appends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut log = RotatingLog::open(&p, 8, 1).unwrap();
        log.write(b"aaaa\nbbbb\n").unwrap();
        assert_eq!(read(&p), "bbbb\n");
        drop(log);
        let mut log = RotatingLog::open(&p, 8, 1).unwrap();
        log.write(b"cc\n").unwrap();
        assert_eq!(read(&p), "bbbb\ncc\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
