//! What the daemon saw on the device, reduced to what the planner needs.

use std::collections::BTreeMap;

use drover_protocol::{Name, WorkloadSpec};

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
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedContainer {
    pub run: RunState,
    /// Restarts so far (not counting the first start).
    pub restarts: u32,
    /// Consecutive quick restarts, which sets the next back-off delay.
    pub backoff_level: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    /// Part of the workload but never started.
    NotCreated,
    /// Being started, or its shim is still finishing up.
    Starting,
    Running {
        pid: u32,
        started_at_ms: u64,
    },
    /// Exited; `code` is 128 + signal when killed by a signal.
    Exited {
        code: i32,
        oom_killed: bool,
        started_at_ms: u64,
        finished_at_ms: u64,
    },
    /// Could not be created or started.
    StartFailed {
        at_ms: u64,
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
        at_ms: u64,
    },
}
