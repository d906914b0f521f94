//! The controller: every change to the fleet goes through here, on one thread of its
//! own, behind a command channel.
//!
//! It owns the typed [`FleetSnapshot`](crate::fleet::FleetSnapshot) (loaded from the store
//! once at start) and the store's writing connection. For each change it runs the pure
//! fleet planner, signs only the changed devices' desired states (in parallel), commits
//! the change and the plan as one transaction, and only then hands the signed states to
//! the outbox (the MQTT publisher), in commit order. Statuses and presence messages are
//! folded in batches, one transaction per batch.
//!
//! HTTP handlers and the MQTT loop only send [`Command`]s and await replies: they never
//! plan and never hold a lock across planning. Reads go through [`ReadSide`], a separate
//! read-only store connection. It must never publish anything it has not committed.

mod changes;
mod clients;
mod config_objects;
mod core;
mod devices;
mod enroll;
mod freshness;
mod ingest;
mod read;
mod read_rollout;
mod retained;
mod rollout_actions;
mod rollouts;
mod sign;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use drover_protocol::codec::CodecError;
use drover_protocol::manifest::ManifestError;
use tokio::sync::oneshot;

use crate::keys::KeysError;
use crate::store::StoreError;
use crate::views::{ChangeReport, DeviceAdded, FileText, RolloutAction, RolloutAnswer};

pub use self::core::Controller;
pub use enroll::{EnrollCommand, Joining, NewToken};
pub use ingest::RejectReason;
pub use read::{ReadSide, is_online};

/// Device messages folded into one transaction at most.
pub const MAX_BATCH: usize = 1_000;
/// How long the first message of a batch waits for more to arrive.
pub const BATCH_WINDOW: Duration = Duration::from_millis(10);
/// Active rollouts are stepped at least this often (health timeouts pass without any
/// message arriving), and after every batch of device messages.
pub const STEP_EVERY: Duration = Duration::from_secs(1);

/// A retained QoS 1 message for the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What the controller asks the MQTT publisher to do, in order.
#[derive(Debug)]
pub enum Out {
    /// A desired state, published retained with QoS 1.
    Publish(Publish),
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error("cannot encode a desired state: {0}")]
    Codec(#[from] CodecError),
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("device {0:?} is already registered")]
    Exists(String),
    /// Devices and clients share one namespace.
    #[error("the name {name:?} is taken by a {kind}: devices and clients share one namespace")]
    NameTaken { name: String, kind: &'static str },
    #[error("{0}")]
    Invalid(String),
    #[error("the hub's controller has stopped")]
    Stopped,
}

/// Static facts the controller needs from the config.
#[derive(Clone, Debug)]
pub struct Settings {
    pub offline_after_ms: u64,
    /// Broker address put in agent config snippets.
    pub device_broker: String,
    /// The hub runs the embedded broker: warn when registrations outgrow it.
    pub embedded_broker: bool,
    /// The fleet CA (PEM) put in agent config snippets when devices are told to use TLS.
    pub device_ca: Option<String>,
    /// `[policy]`: checked at `apply` for every Deployment.
    pub policy: drover_protocol::SecurityPolicy,
}

/// Counters the controller keeps in memory for `get stats`, `/metrics` and the benchmarks.
#[derive(Debug)]
pub struct Metrics {
    /// Store transactions committed by the controller.
    pub transactions: AtomicU64,
    /// Batches of device messages folded (one transaction each).
    pub message_batches: AtomicU64,
    /// Device messages in those batches.
    pub messages: AtomicU64,
    /// Wall time of each `apply` / `delete` command that was not a dry run, seconds.
    pub apply_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            transactions: AtomicU64::default(),
            message_batches: AtomicU64::default(),
            messages: AtomicU64::default(),
            apply_seconds: crate::metrics::apply_histogram(),
        }
    }
}

impl Metrics {
    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

type Reply<T> = oneshot::Sender<Result<T, ControllerError>>;

/// A request to the controller thread.
pub enum Command {
    Apply {
        files: Vec<FileText>,
        dry_run: bool,
        reply: Reply<ChangeReport>,
    },
    Delete {
        files: Vec<FileText>,
        dry_run: bool,
        reply: Reply<ChangeReport>,
    },
    AddDevice {
        name: String,
        labels: std::collections::BTreeMap<String, String>,
        reply: Reply<DeviceAdded>,
    },
    ImportDevices {
        file: FileText,
        reply: Reply<Vec<DeviceAdded>>,
    },
    /// An MQTT message from a device (status or presence), received at `at_ms`.
    Message {
        topic: String,
        payload: Vec<u8>,
        at_ms: u64,
    },
    /// The hub's MQTT client (re)connected and queued its subscription: republish every
    /// stored desired state.
    Connected,
    /// `client add`.
    AddClient {
        req: crate::clients::AddClientRequest,
        reply: Reply<crate::clients::ClientAdded>,
    },
    /// `client rm`.
    RemoveClient {
        name: String,
        reply: Reply<crate::clients::ClientView>,
    },
    /// `rollout pause|resume|undo|restart DEPLOYMENT`.
    Rollout {
        deployment: String,
        action: RolloutAction,
        reply: Reply<RolloutAnswer>,
    },
    /// Join tokens, joins and `device revoke` (`controller/enroll.rs`).
    Enroll(EnrollCommand),
}

/// The sending side of the controller's command channel: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Command>,
}

impl Handle {
    /// Queues a command that needs no answer (device messages, reconnects).
    pub fn send(&self, cmd: Command) {
        // Fails only when the controller thread is gone, i.e. the hub is stopping.
        let _ = self.tx.send(cmd);
    }

    /// Sends a command built around a reply channel and awaits the answer.
    pub async fn ask<T>(
        &self,
        build: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, ControllerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(build(reply))
            .map_err(|_| ControllerError::Stopped)?;
        rx.await.map_err(|_| ControllerError::Stopped)?
    }
}

/// Starts the controller on its own thread. The thread ends when every [`Handle`] is
/// dropped.
pub fn spawn(controller: Controller) -> std::io::Result<Handle> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("controller".to_owned())
        .spawn(move || run(controller, rx))?;
    Ok(Handle { tx })
}

fn run(mut c: Controller, rx: Receiver<Command>) {
    let mut held: Option<Command> = None;
    let mut stepped = Instant::now();
    loop {
        if stepped.elapsed() >= STEP_EVERY {
            c.step_rollouts(crate::now_ms());
            stepped = Instant::now();
        }
        let cmd = match held.take() {
            Some(cmd) => cmd,
            None => match rx.recv_timeout(STEP_EVERY.saturating_sub(stepped.elapsed())) {
                Ok(cmd) => cmd,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            },
        };
        let Command::Message {
            topic,
            payload,
            at_ms,
        } = cmd
        else {
            let timed = matches!(
                cmd,
                Command::Apply { dry_run: false, .. } | Command::Delete { dry_run: false, .. }
            );
            let started = Instant::now();
            c.handle(cmd);
            if timed {
                let secs = started.elapsed().as_secs_f64();
                c.metrics.apply_seconds.observe(secs);
            }
            continue;
        };
        let mut batch = vec![(topic, payload, at_ms)];
        held = collect_batch(&rx, &mut batch);
        let now = crate::now_ms();
        // Plain heartbeats change nothing a rollout judges: the 1 s timer covers waits.
        if c.ingest_batch(&batch, now) {
            c.step_rollouts(now);
            stepped = Instant::now();
        }
    }
}

/// Adds queued device messages to `batch` until it is full, the window has passed or
/// another command arrives (returned, to run after the batch).
fn collect_batch(
    rx: &Receiver<Command>,
    batch: &mut Vec<(String, Vec<u8>, u64)>,
) -> Option<Command> {
    let deadline = Instant::now() + BATCH_WINDOW;
    while batch.len() < MAX_BATCH {
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Command::Message {
                topic,
                payload,
                at_ms,
            }) => batch.push((topic, payload, at_ms)),
            Ok(other) => return Some(other),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
    None
}

/// Shared between the controller and the read side.
pub type SharedWarnings = Arc<std::sync::RwLock<std::collections::BTreeMap<String, Vec<String>>>>;
