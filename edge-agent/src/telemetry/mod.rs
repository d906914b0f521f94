//! Telemetry: a compact usage sample of the device and each container, taken every
//! `telemetry.interval` and handed to the hub link, which queues it while offline
//! ([`queue`]) and sends it on `drover/v1/dev/{device}/telemetry` (QoS 0, MAC'd with the
//! device credential) while connected.
//!
//! Runs only with a `[hub]` configured and a non-zero interval. Pure parts: [`units`]
//! (raw readings to wire units), [`queue`] (bounded, downsampling), [`seq`] (the epoch
//! rule); IO parts: [`device`] (sysinfo, sysfs), [`cgroup`] (cgroupfs) and the task
//! below, which reads on a blocking thread so the event loop never waits on a file.
//! It must never block the agent, never grow without bound, and never read anything
//! between two samples.

pub mod cgroup;
pub mod config;
pub mod device;
pub mod queue;
pub mod sampler;
pub mod seq;
pub mod units;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

pub use config::TelemetryConfig;
pub use sampler::{ContainerTarget, WorkloadTarget};

use crate::hub_link::HubHandle;
use cgroup::CgroupReader;
use device::{DeviceError, DeviceReader};
use sampler::Sampler;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("telemetry must be started from inside a tokio runtime")]
    NoRuntime,
}

/// The daemon's side of the sampler: tells it what to sample; dropping it stops it.
pub struct TelemetryHandle {
    targets: Arc<Mutex<Vec<WorkloadTarget>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TelemetryHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TelemetryHandle {
    /// The containers to sample from now on (after each reconcile pass).
    pub fn set_targets(&self, targets: Vec<WorkloadTarget>) {
        let mut held = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if *held != targets {
            *held = targets;
        }
    }
}

/// Starts sampling every `cfg.interval` into `link` (the first sample one interval from
/// now, so its CPU % covers a whole interval). The restart epoch is saved in `state_dir`
/// first (see [`seq`]).
pub fn spawn(
    cfg: &TelemetryConfig,
    state_dir: &Path,
    link: HubHandle,
) -> Result<TelemetryHandle, TelemetryError> {
    let rt = tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
    let (seq, saved) = seq::open(state_dir, now_s());
    if let Some(e) = saved {
        warn!(
            epoch = seq.epoch(),
            "{e}; telemetry sequence numbers fall back on the clock"
        );
    }
    let device = DeviceReader::new(state_dir)?;
    info!(
        interval_ms = cfg.interval.0,
        queue = cfg.queue,
        epoch = seq.epoch(),
        thermal_zone = ?device.thermal_zone(),
        "telemetry on"
    );
    let sampler = Sampler::new(device, CgroupReader::host(), seq);
    let targets = Arc::new(Mutex::new(Vec::new()));
    let every = cfg.interval.as_duration();
    let task = rt.spawn(run(sampler, targets.clone(), every, link));
    Ok(TelemetryHandle { targets, task })
}

async fn run(
    mut sampler: Sampler,
    targets: Arc<Mutex<Vec<WorkloadTarget>>>,
    every: Duration,
    link: HubHandle,
) {
    let start = tokio::time::Instant::now() + every;
    let mut tick = tokio::time::interval_at(start, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = targets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let taken = tokio::task::spawn_blocking(move || {
            let sample = sampler.sample(&now, now_s());
            (sampler, sample)
        })
        .await;
        match taken {
            Ok((s, sample)) => {
                sampler = s;
                link.publish_telemetry(sample);
            }
            Err(e) => {
                warn!("telemetry sampler stopped: {e}");
                return;
            }
        }
    }
}

pub(crate) fn now_s() -> u64 {
    crate::fsutil::now_ms() / 1000
}
