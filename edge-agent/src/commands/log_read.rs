//! Reading a container's rotated log (written by `shim::logs`): one consistent snapshot of
//! its files, where `--tail N` and `--since T` start in it, and following what the shim
//! appends afterwards across rotations. Used by `drover-agent logs` and by the hub's
//! `logs` command.
//!
//! Everything reads at most one buffer at a time: a log of any size never sits in memory.
//! It must never write to the log files or their indexes.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::shim::logs::{INDEX_ENTRY_BYTES, index_path};

/// Bytes read at once when scanning backwards for lines.
const SCAN_BLOCK: usize = 16 * 1024;

/// The files of log `file` that exist, oldest first: `FILE.(n-1)`, …, `FILE.1`, `FILE`.
pub fn log_files(file: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|i| {
            let mut s = file.as_os_str().to_owned();
            s.push(format!(".{i}"));
            PathBuf::from(s)
        })
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    if file.exists() {
        files.push(file.to_path_buf());
    }
    files
}

/// One file of a snapshot, held open: a rotation meanwhile does not change what it reads.
struct Part {
    path: PathBuf,
    file: File,
    /// Its length when the snapshot was taken; nothing beyond is read through the snapshot.
    len: u64,
    /// Last modification, Unix ms.
    mtime_ms: u64,
}

/// The log's files as they were when opened, read as one byte sequence (oldest first).
/// Positions are offsets into that sequence.
pub struct Snapshot {
    parts: Vec<Part>,
    /// The current file (`FILE`), for following.
    current: PathBuf,
}

impl Snapshot {
    /// Opens every file of log `file`; `NotFound` when there is none.
    pub fn open(file: &Path) -> io::Result<Snapshot> {
        let mut parts = Vec::new();
        for path in log_files(file) {
            let Ok(f) = File::open(&path) else { continue }; // rotated away meanwhile
            let meta = f.metadata()?;
            let mtime_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            parts.push(Part {
                path,
                file: f,
                len: meta.len(),
                mtime_ms,
            });
        }
        if parts.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} does not exist", file.display()),
            ));
        }
        Ok(Snapshot {
            parts,
            current: file.to_path_buf(),
        })
    }

    /// Bytes in the snapshot.
    pub fn total(&self) -> u64 {
        self.parts.iter().map(|p| p.len).sum()
    }

    /// Where the output written at or after `since_ms` (Unix ms) starts, by the files'
    /// time indexes: at most a second early, or the few bytes of a quiet writer's last
    /// line (see `shim::logs`); a file without an index counts whole unless it was last
    /// written before `since_ms`. Never skips a line written after it.
    pub fn since_start(&self, since_ms: u64) -> u64 {
        let mut base = 0;
        for p in &self.parts {
            if p.mtime_ms >= since_ms {
                let entries = read_index(&index_path(&p.path), p.len);
                return base + index_start(&entries, since_ms);
            }
            base += p.len;
        }
        base
    }

    /// Where the last `n` lines at or after `from` start (a last line without a newline
    /// counts as a line).
    pub fn tail_start(&self, n: u32, from: u64) -> io::Result<u64> {
        let total = self.total();
        if n == 0 {
            return Ok(total);
        }
        let mut end = total;
        if end > from && self.byte_at(end - 1)? == Some(b'\n') {
            end -= 1;
        }
        let mut found = 0;
        let mut buf = vec![0u8; SCAN_BLOCK];
        while end > from {
            let start = end.saturating_sub(SCAN_BLOCK as u64).max(from);
            // Within one part: a block never spans two files.
            let start = start.max(self.part_base(end - 1));
            let len = (end - start) as usize;
            self.read_exact_at(start, &mut buf[..len])?;
            for (i, b) in buf[..len].iter().enumerate().rev() {
                if *b == b'\n' {
                    found += 1;
                    if found == n {
                        return Ok(start + i as u64 + 1);
                    }
                }
            }
            end = start;
        }
        Ok(from)
    }

    /// Reads from position `pos` into `buf`, at most to the end of the file holding `pos`;
    /// 0 at the end of the snapshot.
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut base = 0;
        for p in &self.parts {
            if pos < base + p.len {
                let local = pos - base;
                let room = (p.len - local).min(buf.len() as u64) as usize;
                return p.file.read_at(&mut buf[..room], local);
            }
            base += p.len;
        }
        Ok(0)
    }

    /// Follows the current file from the end of the snapshot.
    pub fn follow(self) -> Follower {
        let last = self.parts.into_iter().next_back();
        match last.filter(|p| p.path == self.current) {
            Some(p) => Follower {
                ino: p.file.metadata().map(|m| m.ino()).unwrap_or(0),
                pos: p.len,
                file: Some(p.file),
                path: self.current,
            },
            None => Follower {
                path: self.current,
                file: None,
                pos: 0,
                ino: 0,
            },
        }
    }

    fn part_base(&self, pos: u64) -> u64 {
        let mut base = 0;
        for p in &self.parts {
            if pos < base + p.len {
                return base;
            }
            base += p.len;
        }
        base
    }

    fn byte_at(&self, pos: u64) -> io::Result<Option<u8>> {
        let mut b = [0u8; 1];
        Ok((self.read_at(pos, &mut b)? == 1).then_some(b[0]))
    }

    fn read_exact_at(&self, mut pos: u64, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(pos, buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            pos += n as u64;
            buf = &mut buf[n..];
        }
        Ok(())
    }
}

/// The current log file followed past a snapshot: what the shim appends, reopened when
/// it rotates (after the rest of the old file was read).
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    pos: u64,
    ino: u64,
}

impl Follower {
    /// Reads what was appended since the last call; 0 when nothing new (never waits).
    pub fn poll(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = &self.file {
            let n = f.read_at(buf, self.pos)?;
            if n > 0 {
                self.pos += n as u64;
                return Ok(n);
            }
        }
        let Ok(meta) = fs::metadata(&self.path) else {
            return Ok(0); // between a rotation's rename and the new file
        };
        if self.file.is_some() && meta.ino() == self.ino && meta.len() >= self.pos {
            return Ok(0);
        }
        // Rotated (or truncated): the old handle was read to its end just above.
        self.file = Some(File::open(&self.path)?);
        self.ino = meta.ino();
        self.pos = 0;
        Ok(0)
    }
}

/// Index entries `(offset, unix_ms)` of a file of `len` bytes; unreadable, out-of-range
/// or out-of-order entries (an index of an older file) end the list.
fn read_index(path: &Path, len: u64) -> Vec<(u64, u64)> {
    let bytes = fs::read(path).unwrap_or_default();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(bytes.len() / INDEX_ENTRY_BYTES);
    for e in bytes.chunks_exact(INDEX_ENTRY_BYTES) {
        let (o, t) = e.split_at(8);
        let entry = (
            u64::from_le_bytes(o.try_into().unwrap_or_default()),
            u64::from_le_bytes(t.try_into().unwrap_or_default()),
        );
        let ordered = out.last().is_none_or(|l| l.0 <= entry.0 && l.1 <= entry.1);
        if entry.0 > len || !ordered {
            break;
        }
        out.push(entry);
    }
    out
}

/// Where, in a file with index `entries`, the bytes written at or after `since_ms` start:
/// the last entry at or before it (the bytes after an entry were written from its time
/// on), or the start of the file.
pub fn index_start(entries: &[(u64, u64)], since_ms: u64) -> u64 {
    entries
        .iter()
        .rev()
        .find(|(_, at)| *at <= since_ms)
        .map_or(0, |(off, _)| *off)
}

#[cfg(test)]
#[path = "log_read_tests.rs"]
mod tests;
