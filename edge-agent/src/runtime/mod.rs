//! Containers as the agent sees them: started, stopped and deleted through shims.
//!
//! The agent never calls libcontainer itself (it is multi-threaded; libcontainer clones
//! the caller). It prepares a bundle, spawns `drover-agent shim run`, reads the shim's
//! one-line report, and later talks to the shim only through its status file and signals.

pub mod files;
pub mod netns;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod spec;

#[cfg(test)]
pub mod fake;

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::fsutil::process_matches;
use crate::shim::RunArgs;
use crate::shim::status::{STATUS_FILE, ShimState, ShimStatus};

/// How long a shim may take to report that its container runs.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot start shim {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: {message}")]
    StartFailed { id: String, message: String },
    #[error("container {id}: shim did not report within {START_TIMEOUT:?}")]
    StartTimeout { id: String },
    #[error("container {id}: shim cleanup failed: {message}")]
    Delete { id: String, message: String },
}

/// What the runtime can tell about the container of one container folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShimView {
    /// The shim's last status file.
    pub status: ShimStatus,
    /// The shim that wrote it is still alive.
    pub shim_alive: bool,
    /// The container's init process (`status.pid`) is still the process that started.
    pub init_alive: bool,
}

/// The seam between the daemon and containers. No method waits for a container to stop:
/// a stop is requested, and later passes see it in [`Runtime::inspect`].
pub trait Runtime: Send {
    /// Starts a container from the bundle in `args.dir`; returns its init PID once the
    /// shim reports it running (at most a few seconds: creation, not the workload).
    fn start(&self, args: &RunArgs) -> Result<u32, RuntimeError>;
    /// Asks the shim of the container folder `dir` to stop its container (SIGTERM, then
    /// SIGKILL after the grace period it was started with). Returns at once.
    fn request_stop(&self, dir: &Path);
    /// The shim's status and liveness for container folder `dir`; `None` when no shim
    /// ever wrote one there (or it is unreadable).
    fn inspect(&self, dir: &Path) -> Option<ShimView>;
    /// Ends container `id` now: SIGKILL to its shim, then force-deletes what is left. For
    /// a stop whose deadline passed, or a leftover of a dead shim. Does not wait for the
    /// container's processes beyond what the kernel needs to deliver SIGKILL.
    fn force_stop(&self, id: &str, dir: &Path) -> Result<(), RuntimeError>;
    /// Makes sure no earlier instance of container `id` is left before a new start (a
    /// clean exit needs nothing; a power cut or a dead shim is force-deleted), and forgets
    /// its last status: in the container folder `dir` and its durable copy in the data
    /// folder `data` (see [`RunArgs::data_dir`]).
    fn clear(&self, id: &str, dir: &Path, data: &Path) -> Result<(), RuntimeError>;
}

/// The real runtime: one `drover-agent shim` process per container.
pub struct ShimRuntime {
    pub exe: PathBuf,
    /// libcontainer's state root (`run_dir/runtime`).
    pub root: PathBuf,
}

impl ShimRuntime {
    pub fn new(root: PathBuf) -> Self {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
        ShimRuntime { exe, root }
    }

    /// Force-deletes a container left behind by a dead shim (`drover-agent shim delete`).
    pub fn force_delete(&self, id: &str) -> Result<(), RuntimeError> {
        let out = Command::new(&self.exe)
            .args(["shim", "delete", "--id", id, "--root"])
            .arg(&self.root)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::Spawn {
                exe: self.exe.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(RuntimeError::Delete {
            id: id.to_string(),
            message,
        })
    }
}

/// True while the shim that wrote `status` is alive.
pub fn shim_alive(status: &ShimStatus) -> bool {
    process_matches(status.shim_pid, status.shim_start_ticks)
}

impl Runtime for ShimRuntime {
    fn start(&self, args: &RunArgs) -> Result<u32, RuntimeError> {
        let mut child = Command::new(&self.exe)
            .args(args.to_command_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| RuntimeError::Spawn {
                exe: self.exe.clone(),
                source,
            })?;
        let report = child
            .stdout
            .take()
            .map(read_report)
            .unwrap_or(Ok(String::new()));
        let _ = child.wait(); // the shim's first process exits as soon as it has forked
        let id = args.id.clone();
        let report = report.map_err(|_| RuntimeError::StartTimeout { id: id.clone() })?;
        match report.trim_end().split_once(' ') {
            Some(("running", pid)) => pid.parse().map_err(|_| RuntimeError::StartFailed {
                id,
                message: format!("bad shim report {report:?}"),
            }),
            Some(("failed", message)) => Err(RuntimeError::StartFailed {
                id,
                message: message.to_string(),
            }),
            _ => Err(RuntimeError::StartFailed {
                id,
                message: format!("shim ended without a report ({report:?}); see shim.log"),
            }),
        }
    }

    fn request_stop(&self, dir: &Path) {
        if let Some(st) = ShimStatus::read(dir).filter(shim_alive) {
            let _ = kill(Pid::from_raw(st.shim_pid as i32), Signal::SIGTERM);
        }
    }

    fn inspect(&self, dir: &Path) -> Option<ShimView> {
        let status = ShimStatus::read(dir)?;
        let shim_alive = shim_alive(&status);
        let init_alive = match (status.pid, status.pid_start_ticks) {
            (Some(pid), Some(ticks)) => process_matches(pid, ticks),
            _ => false,
        };
        Some(ShimView {
            status,
            shim_alive,
            init_alive,
        })
    }

    fn force_stop(&self, id: &str, dir: &Path) -> Result<(), RuntimeError> {
        if let Some(s) = ShimStatus::read(dir).filter(shim_alive) {
            let _ = kill(Pid::from_raw(s.shim_pid as i32), Signal::SIGKILL);
        }
        self.force_delete(id)
    }

    fn clear(&self, id: &str, dir: &Path, data: &Path) -> Result<(), RuntimeError> {
        let st = ShimStatus::read(dir);
        let unfinished = st.as_ref().is_some_and(|s| s.state != ShimState::Exited)
            || (st.is_none() && dir.join("bundle").exists());
        let result = if unfinished {
            self.force_stop(id, dir)
        } else {
            Ok(())
        };
        let _ = std::fs::remove_file(dir.join(STATUS_FILE));
        let _ = std::fs::remove_file(data.join(STATUS_FILE));
        // Adopted from an older agent: a link to its libcontainer state, dangling once
        // the old shim deleted its container; a new container of this id needs the name.
        let link = self.root.join(id);
        if link.is_symlink() && !link.exists() {
            let _ = std::fs::remove_file(&link);
        }
        result
    }
}

/// Reads the shim's report line, waiting at most `START_TIMEOUT` for it.
fn read_report(mut out: std::process::ChildStdout) -> std::io::Result<String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(out.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(ms)).map_err(std::io::Error::from)? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
        }
        match out.read(&mut chunk)? {
            0 => return Ok(String::from_utf8_lossy(&buf).into_owned()),
            n if buf.len() < 4096 => buf.extend_from_slice(&chunk[..n]),
            _ => {}
        }
    }
}
