//! Containers as the agent sees them: started, stopped and deleted through shims.
//!
//! The agent never calls libcontainer itself (it is multi-threaded; libcontainer clones
//! the caller). It prepares a bundle, spawns `drover-agent shim run`, reads the shim's
//! one-line report, and later talks to the shim only through its status file and signals.

pub mod netns;
pub mod rootfs;
pub mod spec;

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
use crate::shim::status::{ShimState, ShimStatus};

/// How long a shim may take to report that its container runs.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time, beyond the grace period, for a shim to finish after SIGTERM.
const STOP_SLACK: Duration = Duration::from_secs(5);

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

/// The seam between the daemon and containers.
pub trait Runtime {
    /// Starts a container from the bundle in `args.dir`; returns its init PID.
    fn start(&self, args: &RunArgs) -> Result<u32, RuntimeError>;
    /// Asks the shim of the container folder `dir` to stop its container (SIGTERM, then
    /// SIGKILL after the grace period). Returns at once.
    fn request_stop(&self, dir: &Path);
    /// Waits until the container of `dir` is gone, at most `grace` plus slack, then makes
    /// sure of it (kills the shim and force-deletes what is left).
    fn wait_stopped(&self, id: &str, dir: &Path, grace: Duration) -> Result<(), RuntimeError>;
}

/// The real runtime: one `drover-agent shim` process per container.
pub struct ShimRuntime {
    pub exe: PathBuf,
    /// libcontainer's state root (`S/runtime`).
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

    fn wait_stopped(&self, id: &str, dir: &Path, grace: Duration) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + grace + STOP_SLACK;
        loop {
            let st = ShimStatus::read(dir);
            let final_state = st
                .as_ref()
                .is_some_and(|s| matches!(s.state, ShimState::Exited | ShimState::Failed));
            let alive = st.as_ref().is_some_and(shim_alive);
            if final_state && !alive {
                return Ok(());
            }
            if !alive || Instant::now() >= deadline {
                if let Some(s) = st.filter(shim_alive) {
                    let _ = kill(Pid::from_raw(s.shim_pid as i32), Signal::SIGKILL);
                }
                return self.force_delete(id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
