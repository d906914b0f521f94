//! The shim's status file (`containers/{cid}/status.json`): the only channel through
//! which a shim tells the agent what its container is doing. Written atomically by the
//! shim, read by the agent and by `drover-agent ps`; it must never be written by both.

use std::path::Path;

use serde::{Deserialize, Serialize};

use drover_protocol::Health;

use crate::fsutil;

/// File name of the status file inside a container folder.
pub const STATUS_FILE: &str = "status.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShimState {
    /// The shim is creating the container.
    Starting,
    /// The container's init process runs (`pid`).
    Running,
    /// The container exited (`exit_code`/`signal`, `oom_killed`); it has been deleted.
    Exited,
    /// The container could not be created or started (`error`).
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimStatus {
    pub shim_pid: u32,
    /// Start time of the shim (`fsutil::proc_start_ticks`), to tell it from a reused PID.
    pub shim_start_ticks: u64,
    pub state: ShimState,
    /// The container's init process, once created.
    pub pid: Option<u32>,
    pub pid_start_ticks: Option<u64>,
    /// Wall clock (Unix ms), for people and the hub.
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// The same instants on the boot clock (`clock::boot_ms`), for back-off decisions.
    /// Absent in files written by shims of older agents.
    #[serde(default)]
    pub started_at_boot_ms: Option<u64>,
    #[serde(default)]
    pub finished_at_boot_ms: Option<u64>,
    /// Exit code, or 128 + signal number when killed by a signal (shell convention).
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub error: Option<String>,
    /// What the container's probes say while it runs (`ProbeStatus::default()` without
    /// probes). Absent in files written by shims of older agents.
    #[serde(default)]
    pub probes: ProbeStatus,
}

/// The probes' verdict, kept by the shim that runs them (see `shim::probe`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStatus {
    pub health: Health,
    /// Running, the startup probe (if any) has succeeded and the readiness probe (if any)
    /// passes; with no probe, simply running.
    pub ready: bool,
    /// Consecutive failures of the probe failing now (0 when none fails).
    pub failures: u32,
    /// The last failing probe's message, or the last message after a recovery (at most
    /// [`MAX_PROBE_MESSAGE`] bytes).
    pub message: Option<String>,
    /// Set when the shim stopped the container because its liveness or startup probe
    /// failed `failureThreshold` times: why, for the agent's `last_error`.
    pub killed_by_probe: Option<String>,
}

/// File in a container folder holding why a probe killed the container's last instance
/// (written by that instance's shim, removed by the next shim whose container ends
/// otherwise): the agent shows it as `last_error` after the restart.
pub const PROBE_KILL_FILE: &str = "probe-kill";

/// Why a probe killed the last instance of the container in folder `dir`, if it did.
pub fn last_probe_kill(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(PROBE_KILL_FILE)).ok()
}

/// Longest probe message kept (bytes; cut on a character boundary).
pub const MAX_PROBE_MESSAGE: usize = 256;

impl ShimStatus {
    /// Reads the status file of the container folder `dir`; `None` when absent or unreadable.
    pub fn read(dir: &Path) -> Option<ShimStatus> {
        let bytes = std::fs::read(dir.join(STATUS_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes it atomically into the container folder `dir`. Only the final states are
    /// made durable: `starting` and `running` describe processes that a power cut kills
    /// anyway, and the agent treats a missing or stale status of a dead shim as a lost
    /// container (so their two fsyncs each stay off the container start path).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let path = dir.join(STATUS_FILE);
        match self.state {
            ShimState::Starting | ShimState::Running => fsutil::replace_atomic(&path, &bytes),
            ShimState::Exited | ShimState::Failed => fsutil::write_atomic(&path, &bytes),
        }
    }
}
