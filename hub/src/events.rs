//! Fleet change notifications for live views (the dashboard's server-sent events).
//!
//! A bounded broadcast: a reader that falls behind loses the oldest notifications (and
//! is told so by `RecvError::Lagged`, after which it should re-read everything), and a
//! notification with no reader costs nothing. Notifications carry names only, never data:
//! readers fetch the current state through the API. This module must never block a sender.

use serde::Serialize;
use tokio::sync::broadcast;

/// Notifications kept for slow readers before the oldest are dropped.
const CAPACITY: usize = 1024;

/// What changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FleetEvent {
    /// A device's status changed (workloads, phases, restarts, health).
    Status { device: String },
    /// A device came online or went offline.
    Presence { device: String, online: bool },
    /// A telemetry sample from the device was accepted.
    Telemetry { device: String },
    /// Manifests were applied or deleted, or a rollout moved: deployments changed.
    Fleet,
}

/// Cheap to clone; every clone sends into the same channel.
#[derive(Clone)]
pub struct Events(broadcast::Sender<FleetEvent>);

impl Default for Events {
    fn default() -> Self {
        Events(broadcast::channel(CAPACITY).0)
    }
}

impl Events {
    /// Sends `event` to every current reader; never blocks, never fails.
    pub fn emit(&self, event: FleetEvent) {
        // Err only means nobody listens right now.
        let _ = self.0.send(event);
    }

    /// A new reader, receiving notifications sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FleetEvent> {
        self.0.subscribe()
    }

    /// Readers open now (one per live dashboard page).
    pub fn readers(&self) -> usize {
        self.0.receiver_count()
    }
}
