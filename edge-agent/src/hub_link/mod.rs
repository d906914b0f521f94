//! The agent's link to its hub over MQTT: receives signed desired states, sends sealed
//! status snapshots and MAC'd telemetry samples, and keeps reconnecting with jittered back-off while the hub or the
//! broker is away.
//!
//! Decisions are pure (`decide`, `backoff`, `queue`, `trim`); `link` is the thin async
//! shell around rumqttc. This module must never block the agent (every call on
//! `HubHandle` returns at once), never trust the broker (every desired state is verified
//! against the pinned key, the device name and the generation held), never send a status
//! larger than one MQTT message, and never panic on anything it receives.

pub mod backoff;
pub mod config;
pub mod decide;
mod link;
pub mod queue;
mod responder;
pub mod trim;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use drover_protocol::{DesiredState, DeviceStatus, Name, Telemetry};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tracing::warn;

pub use config::{HubConfig, HubConfigError};
pub use responder::{RespondError, Responder};

use decide::RateLimit;
use queue::StatusQueue;

use crate::telemetry::queue::{Room, TelemetryQueue};

/// At most one warning about trimmed status snapshots per this period.
const TRIM_WARN_PERIOD: Duration = Duration::from_secs(300);

/// What the link tells the daemon.
#[derive(Debug)]
pub enum HubEvent {
    /// A verified desired state newer than the one held; `payload` is the signed MQTT
    /// payload it came in, for the daemon to persist (and re-verify after a reboot).
    Desired {
        state: DesiredState,
        payload: Vec<u8>,
    },
    /// The broker accepted the connection (sent on every reconnect too).
    Connected,
    /// The connection was lost; the link keeps retrying by itself.
    Disconnected,
    /// A payload on the device's `cmd` topic, not verified yet (see `crate::commands`).
    Command { payload: Vec<u8> },
}

/// Counters of the link, for the agent's own status and tests.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LinkStats {
    pub connected: bool,
    /// Desired-state payloads refused, in total.
    pub rejected_desired: u64,
    /// The same, by reason: `bad_signature`, `wrong_device`, `stale_generation`, `malformed`.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Status snapshots dropped because the offline queue was full.
    pub dropped_status: u64,
    /// Status snapshots handed to the MQTT client while connected (heartbeats included).
    pub published_status: u64,
    /// Successful connections after the first one.
    pub reconnects: u64,
    /// Status snapshots too large for one MQTT message, trimmed before sending.
    #[serde(default)]
    pub trimmed_status: u64,
    /// Telemetry samples handed to the MQTT client (QoS 0) while connected.
    #[serde(default)]
    pub published_telemetry: u64,
    /// Telemetry samples dropped from a full offline queue (no two shared a minute).
    #[serde(default)]
    pub dropped_telemetry: u64,
    /// Telemetry samples thinned out of a full offline queue (one per minute kept).
    #[serde(default)]
    pub downsampled_telemetry: u64,
    /// Hub commands (logs, restart): accepted, refused by reason, streams.
    #[serde(default)]
    pub commands: crate::commands::CommandStats,
}

/// State shared by the handle and the link tasks. The mutex is never held across `.await`.
struct Shared {
    device: Name,
    held: AtomicU64,
    /// The next status / presence sequence number (`epoch << 32 | counter`, see
    /// `drover_protocol::freshness`): strictly rising across restarts.
    seq: AtomicU64,
    state: Mutex<LinkState>,
    /// Wakes the status sender: a new snapshot, or a fresh connection.
    wake: Notify,
}

struct LinkState {
    queue: StatusQueue,
    /// Telemetry samples waiting to be sent, oldest first.
    telemetry: TelemetryQueue,
    /// The newest snapshot, re-sent on every heartbeat and after every reconnect.
    latest: Option<DeviceStatus>,
    connected: bool,
    /// Set on ConnAck: send `latest` even if nothing new was queued.
    resend_latest: bool,
    stats: LinkStats,
    /// Rate limit of the warning about trimmed snapshots.
    trim_warned: RateLimit,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, LinkState> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `n` consecutive sequence numbers; returns the first.
    fn take_seq(&self, n: u64) -> u64 {
        self.seq.fetch_add(n, Ordering::SeqCst)
    }
}

/// Aborts the link's tasks when the last `HubHandle` is dropped (the broker then sees the
/// connection close and publishes the `offline` last will).
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The daemon's side of the link. Cheap to clone; every method returns at once.
#[derive(Clone)]
pub struct HubHandle {
    shared: Arc<Shared>,
    responder: Responder,
    _tasks: Arc<Tasks>,
}

/// Starts the link on the current tokio runtime. `held_generation` is the generation of
/// the desired state the daemon already persisted (0 for none). Telemetry samples wait
/// in a queue of the default `telemetry.queue` while offline.
pub fn spawn(
    cfg: &HubConfig,
    device: &Name,
    held_generation: u64,
    events: mpsc::Sender<HubEvent>,
) -> Result<HubHandle, HubConfigError> {
    let queue = crate::telemetry::TelemetryConfig::default().queue;
    let epoch = crate::telemetry::seq::next_epoch(None, crate::telemetry::now_s());
    spawn_with_telemetry_queue(cfg, queue, device, held_generation, epoch, events)
}

/// [`spawn`], with `telemetry_queue` samples kept while offline (`telemetry.queue`)
/// and status / presence sequence numbers from `seq_epoch` (see
/// `telemetry::seq::open_file` with `LINK_EPOCH_FILE`; [`spawn`] takes the clock's
/// seconds).
pub fn spawn_with_telemetry_queue(
    cfg: &HubConfig,
    telemetry_queue: u32,
    device: &Name,
    held_generation: u64,
    seq_epoch: u64,
    events: mpsc::Sender<HubEvent>,
) -> Result<HubHandle, HubConfigError> {
    cfg.validate()?;
    let rt = tokio::runtime::Handle::try_current().map_err(|_| HubConfigError::NoRuntime)?;
    let shared = Arc::new(Shared {
        device: device.clone(),
        held: AtomicU64::new(held_generation),
        seq: AtomicU64::new(seq_epoch.max(1) << 32),
        state: Mutex::new(LinkState {
            queue: StatusQueue::new(cfg.status_queue),
            telemetry: TelemetryQueue::new(telemetry_queue),
            latest: None,
            connected: false,
            resend_latest: false,
            stats: LinkStats::default(),
            trim_warned: RateLimit::new(TRIM_WARN_PERIOD),
        }),
        wake: Notify::new(),
    });
    let (receiver, sender) = link::build(cfg, telemetry_queue, shared.clone(), events)?;
    let responder = Responder::new(sender.client(), shared.clone(), cfg.status_key()?);
    let tasks = vec![rt.spawn(receiver.run()), rt.spawn(sender.run())];
    Ok(HubHandle {
        shared,
        responder,
        _tasks: Arc::new(Tasks(tasks)),
    })
}

impl HubHandle {
    /// Queues a status snapshot for the hub. Never blocks; while offline at most
    /// `status_queue` snapshots are kept, the oldest dropped and counted. A snapshot too
    /// large for one MQTT message is trimmed (see `trim`), counted and sent anyway.
    pub fn publish_status(&self, mut status: DeviceStatus) {
        let trimmed = trim::fit(&mut status, trim::STATUS_BUDGET_BYTES);
        {
            let mut st = self.shared.lock();
            if let Some(t) = trimmed {
                st.stats.trimmed_status += 1;
                if let Some(suppressed) = st.trim_warned.allow("trimmed", Instant::now()) {
                    warn!(device = %self.shared.device, bytes_before = t.bytes_before,
                        bytes_after = t.bytes_after, errors_cut = t.errors_cut,
                        details_dropped = t.details_dropped,
                        workloads_dropped = t.workloads_dropped, suppressed,
                        "status too large for one MQTT message ({} bytes): trimmed to fit",
                        drover_protocol::MAX_MESSAGE_BYTES);
                }
            }
            st.latest = Some(status.clone());
            let dropped = st.queue.push(status);
            st.stats.dropped_status += dropped;
        }
        self.shared.wake.notify_one();
    }

    /// Queues a telemetry sample for the hub. Never blocks; while offline at most
    /// `telemetry.queue` samples are kept, thinned to one per minute and then dropped
    /// from the oldest (see [`crate::telemetry::queue`]), both counted.
    pub fn publish_telemetry(&self, sample: Telemetry) {
        {
            let mut st = self.shared.lock();
            match st.telemetry.push(sample) {
                Room::Free => {}
                Room::Downsampled => st.stats.downsampled_telemetry += 1,
                Room::Dropped => st.stats.dropped_telemetry += 1,
            }
        }
        self.shared.wake.notify_one();
    }

    /// Tells the link which generation the daemon now holds (after persisting it). The
    /// held generation only ever rises: a lower value is ignored.
    pub fn set_held_generation(&self, generation: u64) {
        self.shared.held.fetch_max(generation, Ordering::SeqCst);
    }

    /// The generation the link currently treats as held.
    pub fn held_generation(&self) -> u64 {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// A copy of the link's counters.
    pub fn stats(&self) -> LinkStats {
        self.shared.lock().stats.clone()
    }

    /// The device this link speaks for.
    pub fn device(&self) -> &Name {
        &self.shared.device
    }

    /// Sends answers to hub commands over this link.
    pub fn responder(&self) -> Responder {
        self.responder.clone()
    }
}
