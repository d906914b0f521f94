//! The latest telemetry of every device, in memory, shared by the telemetry thread (the
//! only writer) and the readers: API, `/metrics`, dashboard, `top`.
//!
//! Readers get views (owned copies) and never hold the lock while serializing. This module
//! must never touch the store or the network.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use drover_protocol::Telemetry;

use super::view::{DeviceTelemetryView, device_view};

/// The last two samples of a device (two, for rates) and when the last one arrived.
#[derive(Clone, Debug)]
struct Entry {
    sample: Telemetry,
    received_ms: u64,
    previous: Option<Telemetry>,
}

/// Counters of the telemetry path since the hub started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TelemetryCounters {
    /// Samples accepted.
    pub accepted: u64,
    /// Samples dropped, by reason: `unknown_device`, `bad_mac`, `replayed`, `malformed`.
    pub rejected: BTreeMap<String, u64>,
    /// History rows written (one per device per minute).
    pub history_rows: u64,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<String, Entry>,
    counters: TelemetryCounters,
}

/// Cheap to clone; all clones share one table.
#[derive(Clone, Default)]
pub struct TelemetryCache(Arc<RwLock<Inner>>);

impl TelemetryCache {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Plain data: a panic elsewhere while holding the lock leaves it usable.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest sample of `device`, as a view.
    pub fn latest(&self, device: &str) -> Option<DeviceTelemetryView> {
        let inner = self.read();
        let e = inner.devices.get(device)?;
        Some(device_view(
            device,
            &e.sample,
            e.received_ms,
            e.previous.as_ref(),
        ))
    }

    /// The latest sample of every device that sent one, sorted by device name.
    pub fn all(&self) -> Vec<DeviceTelemetryView> {
        let inner = self.read();
        let mut out: Vec<_> = inner
            .devices
            .iter()
            .map(|(d, e)| device_view(d, &e.sample, e.received_ms, e.previous.as_ref()))
            .collect();
        out.sort_by(|a, b| a.device.cmp(&b.device));
        out
    }

    /// The latest sample of `device` as sent (for history charts).
    pub fn latest_sample(&self, device: &str) -> Option<Telemetry> {
        self.read().devices.get(device).map(|e| e.sample.clone())
    }

    /// The highest `seq` accepted from `device` (0 for none).
    pub fn held_seq(&self, device: &str) -> u64 {
        self.read().devices.get(device).map_or(0, |e| e.sample.seq)
    }

    /// A copy of the counters.
    pub fn counters(&self) -> TelemetryCounters {
        self.read().counters.clone()
    }

    /// Records an accepted sample (the caller checked it is newer than `held_seq`).
    pub fn accept(&self, device: &str, sample: Telemetry, received_ms: u64) {
        let mut inner = self.write();
        inner.counters.accepted += 1;
        match inner.devices.get_mut(device) {
            Some(e) => {
                let old = std::mem::replace(&mut e.sample, sample);
                e.previous = Some(old);
                e.received_ms = received_ms;
            }
            None => {
                inner.devices.insert(
                    device.to_owned(),
                    Entry {
                        sample,
                        received_ms,
                        previous: None,
                    },
                );
            }
        }
    }

    /// Counts a sample dropped for `reason`.
    pub fn count_rejected(&self, reason: &str) {
        *self
            .write()
            .counters
            .rejected
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Adds `rows` history rows written.
    pub fn count_history_rows(&self, rows: u64) {
        self.write().counters.history_rows += rows;
    }
}
