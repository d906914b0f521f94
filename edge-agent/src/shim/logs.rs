//! Size-bounded rotating log for a container's stdout/stderr, written by the shim.
//!
//! `FILE` grows up to `max_bytes`, then `FILE → FILE.1 → … → FILE.(files-1)` and a new
//! `FILE` starts: disk use never exceeds `max_bytes × files`. Lines are kept whole where
//! possible; the partial-line buffer is capped, so this never buffers without bound.
//! It must never block on anything but the local file system.
//!
//! Beside each file a sparse time index (`FILE.idx`, rotated with it as `FILE.N.idx`)
//! tells when its bytes were written, so that `logs --since` can start at the right place
//! in lines that carry no timestamps: 16-byte entries `(offset, unix_ms)`, little endian,
//! one before a write when at least [`INDEX_EVERY_MS`] passed and [`INDEX_EVERY_BYTES`]
//! were written since the previous entry (and before the first write of a file).
//!
//! So `--since` starts at most a second early, or — for a container writing less than
//! [`INDEX_EVERY_BYTES`] a second — at most that many bytes early (its last line or so).
//! The index is bounded both ways: at most one entry a second (16 bytes per second of
//! writing, however fast the writer: under a quarter of the log for anything writing 64
//! bytes a second or more), and at most one per [`INDEX_EVERY_BYTES`] of log (so never
//! more than twice the log's size, reached only by 8-byte lines written once a second).
//! A failing index never stops the log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Largest partial line held back while waiting for its newline.
const MAX_PENDING: usize = 8 * 1024;
/// Time between two index entries, at least.
pub const INDEX_EVERY_MS: u64 = 1_000;
/// Bytes written between two index entries, at least: a line of a quiet container (a
/// counter, a short status) gets an entry of its own, and the index stays at most twice
/// the log's size.
pub const INDEX_EVERY_BYTES: u64 = 8;
/// Size of one index entry: offset and Unix milliseconds, both `u64` little endian.
pub const INDEX_ENTRY_BYTES: usize = 16;

/// An append-only log file with numbered rotations.
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    files: u32,
    file: File,
    size: u64,
    /// The tail of the input after its last newline, not yet written.
    pending: Vec<u8>,
    /// `FILE.idx`; `None` once writing it failed.
    index: Option<File>,
    /// The last index entry of the current file: `(offset, unix_ms)`.
    indexed: Option<(u64, u64)>,
    /// Unix milliseconds now (replaced in tests).
    clock: fn() -> u64,
}

/// The index file of log file `path` (`FILE.idx`).
pub fn index_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".idx");
    PathBuf::from(name)
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
            index: open_append(&index_path(path)).ok(),
            indexed: None,
            clock: crate::fsutil::now_ms,
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
        if buf.is_empty() {
            return Ok(());
        }
        self.mark_time();
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Adds an index entry for the bytes about to be written at `size`, when due.
    fn mark_time(&mut self) {
        let now = (self.clock)();
        let due = self.indexed.is_none_or(|(off, at)| {
            now >= at.saturating_add(INDEX_EVERY_MS)
                && self.size >= off.saturating_add(INDEX_EVERY_BYTES)
        });
        let Some(index) = self.index.as_mut().filter(|_| due) else {
            return;
        };
        let mut entry = [0u8; INDEX_ENTRY_BYTES];
        entry[..8].copy_from_slice(&self.size.to_le_bytes());
        entry[8..].copy_from_slice(&now.to_le_bytes());
        match index.write_all(&entry) {
            Ok(()) => self.indexed = Some((self.size, now)),
            Err(_) => self.index = None,
        }
    }

    /// `FILE.(n-2) → FILE.(n-1)`, …, `FILE → FILE.1`, then a new empty `FILE` (and the
    /// same for their indexes).
    fn rotate(&mut self) -> io::Result<()> {
        if self.files > 1 {
            for k in (1..self.files - 1).rev() {
                let from = self.numbered(k);
                if from.exists() {
                    fs::rename(&from, self.numbered(k + 1))?;
                    let _ = fs::rename(index_path(&from), index_path(&self.numbered(k + 1)));
                }
            }
            fs::rename(&self.path, self.numbered(1))?;
            let _ = fs::rename(index_path(&self.path), index_path(&self.numbered(1)));
        } else {
            fs::remove_file(&self.path)?;
            let _ = fs::remove_file(index_path(&self.path));
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        self.index = open_index(&index_path(&self.path)).ok();
        self.indexed = None;
        Ok(())
    }

    fn numbered(&self, k: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{k}"));
        PathBuf::from(name)
    }
}

fn open_index(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(crate::fsutil::PRIVATE_FILE)
        .open(path)
}

fn open_append(path: &Path) -> io::Result<File> {
    // Container output may hold secrets: only the agent reads it.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(crate::fsutil::PRIVATE_FILE)
        .open(path)
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
            .map(|e| e.unwrap())
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".idx"))
            .map(|e| e.metadata().unwrap().len())
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

    fn entries(p: &Path) -> Vec<(u64, u64)> {
        fs::read(index_path(p))
            .unwrap_or_default()
            .chunks_exact(INDEX_ENTRY_BYTES)
            .map(|e| {
                let (o, t) = e.split_at(8);
                (
                    u64::from_le_bytes(o.try_into().unwrap()),
                    u64::from_le_bytes(t.try_into().unwrap()),
                )
            })
            .collect()
    }

    thread_local! { static NOW: std::cell::Cell<u64> = const { std::cell::Cell::new(0) }; }
    fn fake_now() -> u64 {
        NOW.with(|n| n.get())
    }
    fn set_now(ms: u64) {
        NOW.with(|n| n.set(ms));
    }

    #[test]
    fn the_time_index_marks_at_most_once_a_second_and_every_8_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut log = RotatingLog::open(&p, 1 << 20, 2).unwrap();
        log.clock = fake_now;
        set_now(10_000);
        log.write(b"first\n").unwrap(); // the first write of a file is marked
        set_now(10_500);
        log.write(&[b'x'; 70]).unwrap(); // under a second since the mark
        log.write(b"\n").unwrap();
        set_now(12_000);
        log.write(b"short\n").unwrap(); // a second and 77 bytes later: marked
        set_now(14_000);
        log.write(b"hi\n").unwrap(); // only 6 bytes since the mark
        log.write(b"later\n").unwrap(); // now 9 bytes since it
        assert_eq!(entries(&p), vec![(0, 10_000), (77, 12_000), (86, 14_000)]);
    }

    /// A quiet container (a short line a second) gets an entry for every line, so that
    /// `--since` is exact to the second; a fast one one entry a second, however much it
    /// writes; and the index never grows beyond twice the log.
    #[test]
    fn the_time_index_is_exact_for_slow_writers_and_bounded_for_fast_ones() {
        let dir = tempfile::tempdir().unwrap();
        let slow = dir.path().join("slow.log");
        let mut log = RotatingLog::open(&slow, 1 << 20, 2).unwrap();
        log.clock = fake_now;
        for i in 0..100u64 {
            set_now(1_000_000 + i * 1_000);
            log.write(format!("tick {:02}\n", i % 100).as_bytes())
                .unwrap();
        }
        let e = entries(&slow);
        assert_eq!(e.len(), 100, "one entry per line a second apart");
        assert!(
            e.iter()
                .enumerate()
                .all(|(i, (off, _))| *off == i as u64 * 8)
        );
        let log_len = fs::metadata(&slow).unwrap().len();
        assert!(fs::metadata(index_path(&slow)).unwrap().len() <= 2 * log_len);

        let fast = dir.path().join("fast.log");
        let mut log = RotatingLog::open(&fast, 1 << 30, 2).unwrap();
        log.clock = fake_now;
        for i in 0..10_000u64 {
            set_now(5_000_000 + i * 10); // 100 lines of 50 bytes a second, for 100 s
            log.write(&[b'y'; 49]).unwrap();
            log.write(b"\n").unwrap();
        }
        let e = entries(&fast);
        assert!(
            (99..=101).contains(&e.len()),
            "one entry a second: {}",
            e.len()
        );
        let index_len = fs::metadata(index_path(&fast)).unwrap().len();
        assert!(index_len * 100 < fs::metadata(&fast).unwrap().len());
    }

    #[test]
    fn the_time_index_rotates_with_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut log = RotatingLog::open(&p, 100, 3).unwrap();
        log.clock = fake_now;
        set_now(1_000);
        log.write(&[b'a'; 99]).unwrap();
        log.write(b"\n").unwrap();
        set_now(5_000);
        log.write(b"b\n").unwrap();
        assert_eq!(entries(&dir.path().join("c.log.1")), vec![(0, 1_000)]);
        assert_eq!(entries(&p), vec![(0, 5_000)]);
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
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "the log and its index: {names:?}");
    }
}
