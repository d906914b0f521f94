//! The latest telemetry of every device, in memory, shared by the telemetry thread (the
//! only writer) and the readers: API, `/metrics`, dashboard, `top`.
//!
//! Readers get views (owned copies) and never hold the lock while serializing. This module
//! must never touch the store or the network.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use drover_protocol::Telemetry;

use super::view::{DeviceTelemetryView, device_view};

/// Least device time a rate spans once the cache has it. Sample times are whole seconds
/// of the device clock, so a rate over two samples 10 s apart is off by up to 10 %; over
/// at least 30 s (30 to about 70 s at a 10 s interval) it is off by less than 1/30
/// (3.3 %), and a rate still follows a change within a minute or so.
pub const RATE_SPAN_S: u64 = 30;

/// Oldest a base may be: after a longer silence the sample just before serves.
const MAX_BASE_AGE_S: u64 = 3 * RATE_SPAN_S;

/// The latest samples of a device and when the last one arrived. Rates are taken against
/// `base` (at least [`RATE_SPAN_S`] older than `sample`), else against `previous`
/// (the sample just before: the first minute, or a container new since `base`).
#[derive(Clone, Debug)]
struct Entry {
    sample: Telemetry,
    received_ms: u64,
    previous: Option<Telemetry>,
    /// The base of rates, once one is [`RATE_SPAN_S`] old.
    base: Option<Telemetry>,
    /// The next base: becomes `base` when `sample` is [`RATE_SPAN_S`] past it.
    next_base: Option<Telemetry>,
}

impl Entry {
    fn new(sample: Telemetry, received_ms: u64) -> Self {
        Entry {
            next_base: Some(sample.clone()),
            sample,
            received_ms,
            previous: None,
            base: None,
        }
    }

    /// Takes `sample` as the latest; moves the bases along.
    fn push(&mut self, sample: Telemetry, received_ms: u64) {
        let time_s = sample.time_s;
        self.previous = Some(std::mem::replace(&mut self.sample, sample));
        self.received_ms = received_ms;
        match &self.next_base {
            // The device clock went back: older bases would give no rate or a wrong one.
            Some(next) if time_s < next.time_s => {
                self.base = None;
                self.next_base = Some(self.sample.clone());
            }
            Some(next) if time_s - next.time_s >= RATE_SPAN_S => {
                self.base = self.next_base.replace(self.sample.clone());
            }
            Some(_) => {}
            None => self.next_base = Some(self.sample.clone()),
        }
    }

    /// The samples rates are computed against, preferred first.
    fn bases(&self) -> Vec<&Telemetry> {
        let in_span =
            |b: &&Telemetry| self.sample.time_s.saturating_sub(b.time_s) <= MAX_BASE_AGE_S;
        self.base
            .iter()
            .filter(in_span)
            .chain(self.previous.iter())
            .collect()
    }

    fn view(&self, device: &str) -> DeviceTelemetryView {
        device_view(device, &self.sample, self.received_ms, &self.bases())
    }
}

/// Counters of the telemetry path since the hub started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TelemetryCounters {
    /// Samples accepted.
    pub accepted: u64,
    /// Samples dropped, by reason (`super::REJECT_REASONS`).
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
        Some(inner.devices.get(device)?.view(device))
    }

    /// The latest sample of every device that sent one, sorted by device name.
    pub fn all(&self) -> Vec<DeviceTelemetryView> {
        let inner = self.read();
        let mut out: Vec<_> = inner.devices.iter().map(|(d, e)| e.view(d)).collect();
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
            Some(e) => e.push(sample, received_ms),
            None => {
                inner
                    .devices
                    .insert(device.to_owned(), Entry::new(sample, received_ms));
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

#[cfg(test)]
mod tests {
    use drover_protocol::telemetry::{ContainerUsage, WorkloadUsage};
    use drover_protocol::{Name, Telemetry};

    use super::*;

    /// A sample at `time_s` of a container that used `cpu_ms` so far.
    fn at(seq: u64, time_s: u64, cpu_ms: u64) -> Telemetry {
        let c = ContainerUsage {
            name: Name::new("app").unwrap(),
            cpu_ms,
            memory_kib: 0,
            memory_peak_kib: 0,
            pids: 1,
            oom_kills: 0,
            restarts: 0,
        };
        Telemetry {
            seq,
            time_s,
            workloads: vec![WorkloadUsage {
                name: Name::new("web").unwrap(),
                containers: vec![c],
            }],
            ..Default::default()
        }
    }

    fn rate(cache: &TelemetryCache) -> Option<f64> {
        cache.latest("pi").unwrap().containers[0].cpu_percent
    }

    /// A container using exactly 25 % of a core, sampled every 10 s of real time, but each
    /// sample stamped with whole seconds taken 0.9 s into a second (the device clock's
    /// truncation): real time 0.9, 10.9, … is stamped 0, 10, …, and every other sample
    /// lands 0.2 s later (stamped one second on).
    #[test]
    fn rates_span_at_least_30_seconds_and_stay_within_a_few_percent() {
        let cache = TelemetryCache::default();
        let mut worst: f64 = 0.0;
        for i in 0..20u64 {
            let real_ms = 900 + i * 10_000 + if i % 2 == 1 { 200 } else { 0 };
            cache.accept("pi", at(i + 1, real_ms / 1000, real_ms / 4), real_ms);
            let Some(r) = rate(&cache) else {
                assert_eq!(i, 0, "a rate from the second sample on");
                continue;
            };
            if i >= 4 {
                worst = worst.max((r - 25.0).abs() / 25.0);
            }
        }
        // Over two consecutive samples the same stamps give 23.2 % and 27.2 % (up to 9 % off).
        assert!(worst <= 1.0 / 30.0, "worst relative error {worst}");
        let inner = cache.read();
        let e = &inner.devices["pi"];
        let span = e.sample.time_s - e.bases()[0].time_s;
        assert!((RATE_SPAN_S..=MAX_BASE_AGE_S).contains(&span), "{span}");
    }

    #[test]
    fn a_recreated_container_or_a_clock_going_back_falls_back_to_the_sample_before() {
        let cache = TelemetryCache::default();
        for (seq, t, cpu) in [(1, 0, 0), (2, 10, 1_000), (3, 20, 2_000), (4, 30, 3_000)] {
            cache.accept("pi", at(seq, t, cpu), 0);
        }
        cache.accept("pi", at(5, 40, 4_000), 0);
        assert_eq!(rate(&cache), Some(10.0));
        // Recreated: its counter went back from the sample just before, so no base serves
        // (the older one, at 0 ms, would give a wrong 1 %) until the next sample.
        cache.accept("pi", at(6, 50, 500), 0);
        assert_eq!(rate(&cache), None);
        cache.accept("pi", at(7, 60, 2_500), 0);
        assert_eq!(rate(&cache), Some(20.0));
        // The device clock went back an hour: the sample just before gives no rate.
        cache.accept("pi", at(8, 20, 3_000), 0);
        assert_eq!(rate(&cache), None);
        cache.accept("pi", at(9, 30, 4_000), 0);
        assert_eq!(rate(&cache), Some(10.0));
    }
}
