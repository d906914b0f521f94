//! Small filesystem and process helpers shared by the agent's modules.
//!
//! Every state file the agent or a shim writes goes through [`write_atomic`] (durable: a
//! power cut at any point leaves either the old or the new file, never a torn one, and
//! once it returns the new one survives) or [`replace_atomic`] (the same rename without
//! the two fsyncs, for files whose loss at a power cut is harmless: timestamps, states
//! that a power cut makes stale anyway). Readers treat an unreadable file as absent.
//! The agent's own files (signed desired states, records, image records) use the
//! `_private` forms (mode 0600) and live in folders made by [`ensure_private_dir`] (0700);
//! files a container reads (bundle `/etc` files) keep the plain forms (0644).

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes `bytes` to `path` via a temporary file, fsync, rename and fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_via_rename(path, bytes, true, 0o644)
}

/// [`write_atomic`] for a file only the agent may read (mode 0600).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_via_rename(path, bytes, true, PRIVATE_FILE)
}

/// [`replace_atomic`] for a file only the agent may read (mode 0600).
pub fn replace_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_via_rename(path, bytes, false, PRIVATE_FILE)
}

/// Mode of the agent's own files.
pub const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` (and missing parents, as usual) with mode 0700, or tightens an existing
/// one that others can read or enter. Returns the mode it had when it was tightened.
pub fn ensure_private_dir(dir: &Path) -> io::Result<Option<u32>> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    fs::set_permissions(dir, Permissions::from_mode(0o700))?;
    Ok(Some(mode))
}

/// Writes `bytes` to `path` via a temporary file and a rename, without fsync: readers
/// never see a torn file, but after a power cut the file may hold its old content (or,
/// if it was new, be empty or missing). Only for files whose loss is harmless; each
/// fsync costs milliseconds on flash and on the container start path.
pub fn replace_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_via_rename(path, bytes, false, 0o644)
}

fn write_via_rename(path: &Path, bytes: &[u8], durable: bool, mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        if mode == PRIVATE_FILE {
            // A leftover temporary file keeps its old mode.
            f.set_permissions(Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Free space (for unprivileged users) of the file system holding `path`.
pub fn disk_free_bytes(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    // The field types are 32-bit on some ARM boards: keep the conversions.
    #[allow(clippy::useless_conversion)]
    Some(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/PID/stat`).
/// Together with the PID it identifies a process: PIDs are reused, this pair is not.
pub fn proc_start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: skip past it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// True when `pid` is alive (not a zombie waiting to be reaped) and still the process
/// that started at `start_ticks`.
pub fn process_matches(pid: u32, start_ticks: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let mut fields = after.split_whitespace();
    let alive = fields
        .next()
        .is_some_and(|state| state != "Z" && state != "X");
    alive && fields.nth(18).and_then(|t| t.parse().ok()) == Some(start_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn replace_without_fsync_is_still_a_whole_file_swap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status.json");
        replace_atomic(&p, b"starting").unwrap();
        replace_atomic(&p, b"running").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"running");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_files_are_0600_and_private_dirs_0700_even_when_they_existed() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let p = dir.path().join("desired.bin");
        write_private(&p, b"signed").unwrap();
        assert_eq!(mode(&p), 0o600);
        replace_private(&p, b"again").unwrap();
        assert_eq!(mode(&p), 0o600);
        let plain = dir.path().join("hosts");
        write_atomic(&plain, b"127.0.0.1 localhost").unwrap();
        assert_eq!(mode(&plain), 0o644, "files a container reads stay readable");

        let state = dir.path().join("a/state");
        assert_eq!(ensure_private_dir(&state).unwrap(), None);
        assert_eq!(mode(&state), 0o700);
        fs::set_permissions(&state, Permissions::from_mode(0o755)).unwrap();
        assert_eq!(ensure_private_dir(&state).unwrap(), Some(0o755));
        assert_eq!(mode(&state), 0o700);
        assert_eq!(ensure_private_dir(&state).unwrap(), None, "already tight");
    }

    #[test]
    fn own_start_time_is_stable_and_identifies_us() {
        let me = std::process::id();
        let t = proc_start_ticks(me).unwrap();
        assert!(process_matches(me, t));
        assert!(!process_matches(me, t + 1));
    }
}
