//! JSON mirrors for dashboards: the hub republishes each device's status (retained) and
//! each telemetry sample as JSON on `drover/v1/dev/{device}/status/json` and
//! `…/telemetry/json`, QoS 0, so Node-RED, Grafana's MQTT data source, Telegraf or Home
//! Assistant can subscribe without speaking postcard.
//!
//! A bounded queue to the MQTT task: when it is full, or the hub is not connected to the
//! broker, a mirror message is dropped and counted — mirrors never delay desired states
//! and never grow memory. This module must never publish anything but JSON views.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

/// Mirror messages waiting for the MQTT task at most.
pub const QUEUE: usize = 4096;

/// One JSON message for the broker, QoS 0.
#[derive(Debug)]
pub struct MirrorMsg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// The sending side; cheap to clone. `disabled()` drops everything silently.
#[derive(Clone, Default)]
pub struct Mirrors {
    tx: Option<mpsc::Sender<MirrorMsg>>,
    dropped: Arc<AtomicU64>,
}

impl Mirrors {
    /// Mirrors turned off (`dashboards.json_mirrors = false`).
    pub fn disabled() -> Self {
        Mirrors::default()
    }

    /// A bounded channel: the sender for the controller and the telemetry thread, the
    /// receiver for the MQTT task.
    pub fn channel() -> (Self, mpsc::Receiver<MirrorMsg>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let m = Mirrors {
            tx: Some(tx),
            dropped: Arc::default(),
        };
        (m, rx)
    }

    /// Queues `value` as JSON on `topic`; never blocks (full queue: dropped, counted).
    pub fn offer<T: serde::Serialize>(&self, topic: String, value: &T, retain: bool) {
        let Ok(payload) = serde_json::to_vec(value) else {
            return; // Views are plain data: serializing cannot fail.
        };
        self.offer_bytes(topic, payload, retain);
    }

    /// Queues a payload already encoded as JSON (or empty: a retained empty payload
    /// clears a topic); false when it was dropped (full queue, counted) or mirrors are
    /// off.
    pub fn offer_bytes(&self, topic: String, payload: Vec<u8>, retain: bool) -> bool {
        let Some(tx) = &self.tx else { return false };
        let msg = MirrorMsg {
            topic,
            payload,
            retain,
        };
        let sent = tx.try_send(msg).is_ok();
        if !sent {
            self.count_dropped();
        }
        sent
    }

    /// Counts a mirror message dropped (queue full, or the hub offline from the broker).
    pub fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Mirror messages dropped since the hub started.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Free places in the queue now (0 when mirrors are off): a bulk sender (the Home
    /// Assistant republish) waits for room instead of having its messages dropped.
    pub fn room(&self) -> usize {
        self.tx.as_ref().map_or(0, mpsc::Sender::capacity)
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }
}
