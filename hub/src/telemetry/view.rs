//! JSON shapes of telemetry for the API, the CLI (`top`), the dashboard and the MQTT JSON
//! mirrors: SI units (bytes, seconds, percent of one CPU, degrees Celsius), rates computed
//! from the cumulative counters of two samples (see [`device_view`] for which two), every
//! derived float rounded by [`round_centi`] so that JSON never shows `2.0500000000000003`.
//!
//! This module must never read anything: it converts wire samples into views, purely.

use drover_protocol::Telemetry;
use serde::{Deserialize, Serialize};

/// The latest sample of one device, as the hub holds it in memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceTelemetryView {
    pub device: String,
    /// When the hub received the sample (Unix ms, hub clock).
    pub received_ms: u64,
    /// When the device took it (Unix s, device clock).
    pub time_s: u64,
    pub seq: u64,
    /// CPU busy over all cores, percent (0–100).
    pub cpu_percent: f64,
    pub load1: f64,
    pub memory_used_bytes: u64,
    pub memory_available_bytes: u64,
    pub disk_free_bytes: u64,
    pub temperature_celsius: Option<f64>,
    /// Raspberry Pi `get_throttled` bits, where the board exposes them.
    pub throttled: Option<u32>,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub uptime_s: u64,
    pub agent_rss_bytes: u64,
    /// Samples the agent dropped because its offline queue was full; cumulative.
    pub dropped_samples: u64,
    pub containers: Vec<ContainerTelemetryView>,
}

/// One container's usage in the latest sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerTelemetryView {
    pub workload: String,
    pub container: String,
    /// CPU used since the previous sample, percent of one CPU (150 = 1.5 cores); None on
    /// the first sample or when the container was recreated between the two.
    pub cpu_percent: Option<f64>,
    /// Cumulative CPU time, seconds.
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    pub pids: u32,
    pub oom_kills: u32,
    pub restarts: u32,
}

/// One point of a device's history (one per minute): the last sample of that minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Unix s (device clock) of the sample.
    pub time_s: u64,
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_available_bytes: u64,
    pub temperature_celsius: Option<f64>,
    pub containers: Vec<ContainerPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerPoint {
    pub workload: String,
    pub container: String,
    /// Percent of one CPU over the interval since the previous point; None at the first.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: u64,
}

/// `GET /v1/telemetry/devices/{name}/history`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceHistory {
    pub device: String,
    /// Oldest first.
    pub points: Vec<HistoryPoint>,
}

const KIB: u64 = 1024;

/// `x` rounded to two decimals (0.01 % for percentages, 10 ms for seconds): what every
/// float of a view goes through. Sample counters are integers (permille, centi-load,
/// deci-°C, ms), so two decimals keep all they say and drop only binary-fraction noise.
pub fn round_centi(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The view of `sample` from `device`, with container CPU rates against the oldest of
/// `bases` (earlier samples, oldest first) the container's counter grew from: the cache
/// passes a sample at least 30 s old, then the one just before, so that rates span enough
/// whole seconds of the device clock to be accurate.
pub fn device_view(
    device: &str,
    sample: &Telemetry,
    received_ms: u64,
    bases: &[&Telemetry],
) -> DeviceTelemetryView {
    let d = &sample.device;
    DeviceTelemetryView {
        device: device.to_owned(),
        received_ms,
        time_s: sample.time_s,
        seq: sample.seq,
        cpu_percent: round_centi(f64::from(d.cpu_permille) / 10.0),
        load1: round_centi(f64::from(d.load1_centi) / 100.0),
        memory_used_bytes: d.memory_used_kib.saturating_mul(KIB),
        memory_available_bytes: d.memory_available_kib.saturating_mul(KIB),
        disk_free_bytes: d.disk_free_kib.saturating_mul(KIB),
        temperature_celsius: d
            .temperature_decicelsius
            .map(|t| round_centi(f64::from(t) / 10.0)),
        throttled: d.throttled,
        net_rx_bytes: d.net_rx_bytes,
        net_tx_bytes: d.net_tx_bytes,
        uptime_s: d.uptime_s,
        agent_rss_bytes: d.agent_rss_kib.saturating_mul(KIB),
        dropped_samples: sample.dropped,
        containers: containers(sample, bases)
            .map(|(w, c, cpu_percent)| ContainerTelemetryView {
                workload: w.to_owned(),
                container: c.name.to_string(),
                cpu_percent,
                // Milliseconds: three decimals say it exactly.
                cpu_seconds: c.cpu_ms as f64 / 1000.0,
                memory_bytes: c.memory_kib.saturating_mul(KIB),
                memory_peak_bytes: c.memory_peak_kib.saturating_mul(KIB),
                pids: c.pids,
                oom_kills: c.oom_kills,
                restarts: c.restarts,
            })
            .collect(),
    }
}

/// The history point of `sample`, with CPU rates against `previous`.
pub fn history_point(sample: &Telemetry, previous: Option<&Telemetry>) -> HistoryPoint {
    let d = &sample.device;
    HistoryPoint {
        time_s: sample.time_s,
        cpu_percent: round_centi(f64::from(d.cpu_permille) / 10.0),
        memory_used_bytes: d.memory_used_kib.saturating_mul(KIB),
        memory_available_bytes: d.memory_available_kib.saturating_mul(KIB),
        temperature_celsius: d
            .temperature_decicelsius
            .map(|t| round_centi(f64::from(t) / 10.0)),
        containers: containers(sample, previous.as_slice())
            .map(|(w, c, cpu_percent)| ContainerPoint {
                workload: w.to_owned(),
                container: c.name.to_string(),
                cpu_percent,
                memory_bytes: c.memory_kib.saturating_mul(KIB),
            })
            .collect(),
    }
}

/// Each container of `sample` with its CPU percent since the oldest of `bases` (ordered
/// oldest first) from which its counter only grew: every base from that one on holds the
/// container with as many restarts and no more CPU time (else it was recreated since).
fn containers<'a>(
    sample: &'a Telemetry,
    bases: &'a [&'a Telemetry],
) -> impl Iterator<Item = (&'a str, &'a drover_protocol::ContainerUsage, Option<f64>)> {
    sample.workloads.iter().flat_map(move |w| {
        w.containers.iter().map(move |c| {
            let mut rate = None;
            for b in bases.iter().rev() {
                let Some((before, b_time)) = find(b, w.name.as_str(), c.name.as_str()) else {
                    break;
                };
                match cpu_percent(before, c, b_time, sample.time_s) {
                    Some(r) if before.restarts == c.restarts => rate = Some(r),
                    _ => break,
                }
            }
            (w.name.as_str(), c, rate.map(round_centi))
        })
    })
}

fn find<'a>(
    sample: &'a Telemetry,
    workload: &str,
    container: &str,
) -> Option<(&'a drover_protocol::ContainerUsage, u64)> {
    let w = sample
        .workloads
        .iter()
        .find(|w| w.name.as_str() == workload)?;
    let c = w.containers.iter().find(|c| c.name.as_str() == container)?;
    Some((c, sample.time_s))
}

/// Percent of one CPU between two readings; None when time did not advance or the
/// counter went back (the container was recreated).
fn cpu_percent(
    before: &drover_protocol::ContainerUsage,
    after: &drover_protocol::ContainerUsage,
    before_s: u64,
    after_s: u64,
) -> Option<f64> {
    let dt_s = after_s.checked_sub(before_s).filter(|d| *d > 0)?;
    let used_ms = after.cpu_ms.checked_sub(before.cpu_ms)?;
    Some(used_ms as f64 / (dt_s as f64 * 1000.0) * 100.0)
}

#[cfg(test)]
mod tests {
    use drover_protocol::telemetry::{ContainerUsage, WorkloadUsage};
    use drover_protocol::{Name, Telemetry};

    use super::*;

    fn at(time_s: u64, cpu_ms: u64) -> Telemetry {
        Telemetry {
            seq: time_s,
            time_s,
            workloads: vec![WorkloadUsage {
                name: Name::new("web").unwrap(),
                containers: vec![ContainerUsage {
                    name: Name::new("app").unwrap(),
                    cpu_ms,
                    memory_kib: 0,
                    memory_peak_kib: 0,
                    pids: 1,
                    oom_kills: 0,
                    restarts: 0,
                }],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn floats_are_rounded_to_two_decimals() {
        assert_eq!(round_centi(2.0500000000000003), 2.05);
        assert_eq!(round_centi(0.1 + 0.2), 0.3);
        assert_eq!(round_centi(33.333_333), 33.33);
        assert_eq!(round_centi(66.666_666), 66.67);
        assert_eq!(round_centi(0.0), 0.0);
        // 41 ms of CPU over 2 s: 2.05 %, which f64 division alone prints as 2.0500000000000003.
        let v = device_view("pi", &at(12, 1_041), 0, &[&at(10, 1_000)]);
        assert_eq!(v.containers[0].cpu_percent, Some(2.05));
        assert_eq!(
            serde_json::to_value(&v).unwrap()["containers"][0]["cpu_percent"],
            2.05
        );
    }

    #[test]
    fn rates_use_the_oldest_base_the_counter_grew_from() {
        let now = at(100, 30_000);
        // 20 s of CPU over 40 s against the older base: half a core.
        let v = device_view("pi", &now, 0, &[&at(60, 10_000), &at(90, 29_000)]);
        assert_eq!(v.containers[0].cpu_percent, Some(50.0));
        // The container was recreated after the older base (counter went back): the
        // sample just before is used.
        let v = device_view("pi", &now, 0, &[&at(60, 40_000), &at(90, 29_000)]);
        assert_eq!(v.containers[0].cpu_percent, Some(10.0));
        let mut restarted = at(60, 10_000);
        restarted.workloads[0].containers[0].restarts = 1;
        let v = device_view("pi", &now, 0, &[&at(30, 0), &restarted, &at(90, 29_000)]);
        assert_eq!(v.containers[0].cpu_percent, Some(10.0));
        let v = device_view("pi", &now, 0, &[]);
        assert_eq!(v.containers[0].cpu_percent, None);
    }
}
