//! What the daemon saw on the device, reduced to what the planner needs.

use std::collections::BTreeMap;

use drover_protocol::{Name, WorkloadSpec};
use serde::{Deserialize, Serialize};

use crate::clock::BootMs;

/// A snapshot of the device: the workloads that exist (created from some spec) and the
/// state of the images the planner asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub workloads: BTreeMap<Name, ObservedWorkload>,
    /// Keyed by image reference; absent means not prepared yet.
    pub images: BTreeMap<String, ImageState>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedWorkload {
    /// The spec the workload was created from.
    pub spec: WorkloadSpec,
    pub containers: BTreeMap<Name, ObservedContainer>,
    /// Boot-clock time its stop was requested: it is being removed or replaced.
    pub stopping_since: Option<BootMs>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedContainer {
    pub run: RunState,
    /// Restarts so far (not counting the first start).
    pub restarts: u32,
    /// Consecutive quick restarts, which sets the next back-off delay.
    pub backoff_level: u32,
    /// Running, and its probes say ready (or it has none): what `dependsOn` with
    /// `condition: healthy` waits for.
    pub ready: bool,
    /// What its shim's probes said last (default without probes or status), for the
    /// status report: read once per pass with the rest of the shim's status.
    pub probes: crate::shim::status::ProbeStatus,
    /// Someone asked for a restart (`drover-hub restart`): once down, it starts again at
    /// once, whatever its restart policy and back-off.
    pub restart_requested: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    /// Part of the workload but never started.
    NotCreated,
    /// Being started, or its shim is still finishing up.
    Starting,
    Running {
        pid: u32,
        /// Wall clock, for the status.
        started_at_ms: u64,
    },
    /// Exited; `code` is 128 + signal when killed by a signal.
    Exited {
        code: i32,
        oom_killed: bool,
        /// Killed by its shim because a liveness (or startup) probe failed: a failure
        /// whatever the exit code (a process that exits 0 on SIGTERM included), as
        /// kubelet treats it under `OnFailure`.
        killed_by_probe: bool,
        /// Wall clock, for the status.
        started_at_ms: u64,
        finished_at_ms: u64,
        /// How long it ran (boot clock; 0 when unknown).
        ran_ms: u64,
        /// When it ended, on the boot clock (0 when unknown: long ago).
        finished_at_boot_ms: BootMs,
    },
    /// Could not be created or started.
    StartFailed {
        /// Boot clock (0 when unknown: long ago).
        at_boot_ms: BootMs,
        kind: StartErrorKind,
        error: String,
    },
    /// Was running, but neither its shim nor a final status remain (power cut, kill -9).
    Lost,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageState {
    Ready,
    /// Being pulled (or unpacked); asked for already.
    Pulling {
        done_bytes: u64,
        total_bytes: u64,
    },
    Failed {
        error: String,
        /// Boot clock.
        at_boot_ms: BootMs,
    },
}

/// Which step of a container start failed: it decides how the planner retries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartErrorKind {
    /// The image is not in the local store: pulled again, then retried.
    Image,
    /// The container's root filesystem could not be set up (mount, disk): retried with
    /// back-off.
    Rootfs,
    /// The workload's spec cannot work with its image (bad user, mount, limits): never
    /// retried until the spec changes.
    Spec,
    /// The host lacks what the spec needs (a device, a host path to mount): retried with
    /// back-off, since it may appear (a USB adapter plugged in).
    Host,
    /// The runtime or the shim refused or failed: retried with back-off.
    #[default]
    Runtime,
}

impl StartErrorKind {
    /// True when retrying the same spec cannot help.
    pub fn is_permanent(self) -> bool {
        self == StartErrorKind::Spec
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StartErrorKind::Image => "image",
            StartErrorKind::Rootfs => "rootfs",
            StartErrorKind::Spec => "spec",
            StartErrorKind::Host => "host",
            StartErrorKind::Runtime => "runtime",
        }
    }
}
