//! JSON shapes of telemetry for the API, the CLI (`top`), the dashboard and the MQTT JSON
//! mirrors: SI units (bytes, seconds, percent of one CPU, degrees Celsius), rates computed
//! from the cumulative counters of two consecutive samples.
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

/// The view of `sample` from `device`, with CPU rates against `previous` (the sample
/// before it, if any).
pub fn device_view(
    device: &str,
    sample: &Telemetry,
    received_ms: u64,
    previous: Option<&Telemetry>,
) -> DeviceTelemetryView {
    let d = &sample.device;
    DeviceTelemetryView {
        device: device.to_owned(),
        received_ms,
        time_s: sample.time_s,
        seq: sample.seq,
        cpu_percent: f64::from(d.cpu_permille) / 10.0,
        load1: f64::from(d.load1_centi) / 100.0,
        memory_used_bytes: d.memory_used_kib.saturating_mul(KIB),
        memory_available_bytes: d.memory_available_kib.saturating_mul(KIB),
        disk_free_bytes: d.disk_free_kib.saturating_mul(KIB),
        temperature_celsius: d.temperature_decicelsius.map(|t| f64::from(t) / 10.0),
        throttled: d.throttled,
        net_rx_bytes: d.net_rx_bytes,
        net_tx_bytes: d.net_tx_bytes,
        uptime_s: d.uptime_s,
        agent_rss_bytes: d.agent_rss_kib.saturating_mul(KIB),
        dropped_samples: sample.dropped,
        containers: containers(sample, previous)
            .map(|(w, c, cpu_percent)| ContainerTelemetryView {
                workload: w.to_owned(),
                container: c.name.to_string(),
                cpu_percent,
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
        cpu_percent: f64::from(d.cpu_permille) / 10.0,
        memory_used_bytes: d.memory_used_kib.saturating_mul(KIB),
        memory_available_bytes: d.memory_available_kib.saturating_mul(KIB),
        temperature_celsius: d.temperature_decicelsius.map(|t| f64::from(t) / 10.0),
        containers: containers(sample, previous)
            .map(|(w, c, cpu_percent)| ContainerPoint {
                workload: w.to_owned(),
                container: c.name.to_string(),
                cpu_percent,
                memory_bytes: c.memory_kib.saturating_mul(KIB),
            })
            .collect(),
    }
}

/// Each container of `sample` with its CPU percent since `previous`.
fn containers<'a>(
    sample: &'a Telemetry,
    previous: Option<&'a Telemetry>,
) -> impl Iterator<Item = (&'a str, &'a drover_protocol::ContainerUsage, Option<f64>)> {
    sample.workloads.iter().flat_map(move |w| {
        w.containers.iter().map(move |c| {
            let before = previous.and_then(|p| find(p, w.name.as_str(), c.name.as_str()));
            let rate = before.and_then(|(b, b_time)| cpu_percent(b, c, b_time, sample.time_s));
            (w.name.as_str(), c, rate)
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
