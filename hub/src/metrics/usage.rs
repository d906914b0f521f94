//! Device and container usage from the latest telemetry samples, as metric families:
//! SI base units, cumulative counters (CPU seconds, network bytes, OOM kills) as
//! Prometheus counters so that `rate()` does the arithmetic. Pure: never reads anything.
//!
//! Container restarts are exported from the status (`drover_container_restarts`, in
//! `families`), which every heartbeat carries, not a second time from telemetry.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;

use super::families::{counter, gauge};
use crate::telemetry::view::{ContainerTelemetryView, DeviceTelemetryView};

/// `get_throttled` bits 0–3: under-voltage, frequency capped, throttled, soft temperature
/// limit — now (bits 16–19 say the same since boot).
const THROTTLED_NOW: u32 = 0xF;

/// Per-device families, one sample per device that sent telemetry.
pub(super) fn devices(enc: &mut DescriptorEncoder, views: &[DeviceTelemetryView]) -> fmt::Result {
    let each = || views.iter().map(|v| ([("device", v.device.as_str())], v));
    let help = "CPU busy over all cores in the last telemetry interval (0-1)";
    let rows = each().map(|(l, v)| (l, v.cpu_percent / 100.0));
    gauge(enc, "drover_device_cpu_ratio", help, rows)?;
    let rows = each().map(|(l, v)| (l, v.load1));
    gauge(enc, "drover_device_load1", "One-minute load average", rows)?;
    let rows = each().map(|(l, v)| (l, v.memory_used_bytes));
    gauge(
        enc,
        "drover_device_memory_used_bytes",
        "Memory in use",
        rows,
    )?;
    let help = "Memory available for new work (MemAvailable)";
    let rows = each().map(|(l, v)| (l, v.memory_available_bytes));
    gauge(enc, "drover_device_memory_available_bytes", help, rows)?;
    let help = "Free space on the filesystem of the agent's state folder";
    let rows = each().map(|(l, v)| (l, v.disk_free_bytes));
    gauge(enc, "drover_device_disk_free_bytes", help, rows)?;
    let help = "SoC temperature, where the board exposes it";
    let rows = each().filter_map(|(l, v)| v.temperature_celsius.map(|t| (l, t)));
    gauge(enc, "drover_device_temperature_celsius", help, rows)?;
    let help = "1 while the board is under-voltage, frequency-capped or throttled (Raspberry Pi)";
    let rows =
        each().filter_map(|(l, v)| v.throttled.map(|t| (l, u32::from(t & THROTTLED_NOW != 0))));
    gauge(enc, "drover_device_throttled", help, rows)?;
    let help = "Raw get_throttled bits, where the firmware exposes them";
    let rows = each().filter_map(|(l, v)| v.throttled.map(|t| (l, t)));
    gauge(enc, "drover_device_throttled_flags", help, rows)?;
    network(enc, views)?;
    let rows = each().map(|(l, v)| (l, v.uptime_s));
    gauge(
        enc,
        "drover_device_uptime_seconds",
        "Seconds since the device booted",
        rows,
    )?;
    let help = "Resident memory of the Drover agent process";
    let rows = each().map(|(l, v)| (l, v.agent_rss_bytes));
    gauge(enc, "drover_device_agent_resident_memory_bytes", help, rows)?;
    let help = "Telemetry samples the agent dropped while offline (queue full)";
    let rows = each().map(|(l, v)| (l, v.dropped_samples));
    counter(enc, "drover_device_telemetry_dropped_samples", help, rows)?;
    let help = "When the hub received the device's latest telemetry sample (Unix time, hub clock)";
    let rows = each().map(|(l, v)| (l, v.received_ms as f64 / 1000.0));
    gauge(
        enc,
        "drover_device_telemetry_received_timestamp_seconds",
        help,
        rows,
    )
}

fn network(enc: &mut DescriptorEncoder, views: &[DeviceTelemetryView]) -> fmt::Result {
    let each = || views.iter().map(|v| ([("device", v.device.as_str())], v));
    let help = "Bytes received on every interface but loopback since boot";
    let rows = each().map(|(l, v)| (l, v.net_rx_bytes));
    counter(enc, "drover_device_network_receive_bytes", help, rows)?;
    let help = "Bytes sent on every interface but loopback since boot";
    let rows = each().map(|(l, v)| (l, v.net_tx_bytes));
    counter(enc, "drover_device_network_transmit_bytes", help, rows)
}

type Labels<'a> = [(&'static str, &'a str); 3];

/// Per-container families from each device's latest sample.
pub(super) fn containers(
    enc: &mut DescriptorEncoder,
    views: &[DeviceTelemetryView],
) -> fmt::Result {
    let each = || {
        views.iter().flat_map(|v| {
            v.containers.iter().map(move |c| {
                let l: Labels = [
                    ("device", v.device.as_str()),
                    ("workload", c.workload.as_str()),
                    ("container", c.container.as_str()),
                ];
                (l, c)
            })
        })
    };
    let field = |f: fn(&ContainerTelemetryView) -> u64| each().map(move |(l, c)| (l, f(c)));
    let help = "CPU time the container's cgroup used (resets when the container is recreated)";
    let rows = each().map(|(l, c)| (l, c.cpu_seconds));
    counter(enc, "drover_container_cpu_seconds", help, rows)?;
    let help = "Memory charged to the container's cgroup";
    gauge(
        enc,
        "drover_container_memory_bytes",
        help,
        field(|c| c.memory_bytes),
    )?;
    let help =
        "Highest memory charged to the container's cgroup (0 where the kernel does not track it)";
    let rows = field(|c| c.memory_peak_bytes);
    gauge(enc, "drover_container_memory_peak_bytes", help, rows)?;
    let help = "Processes and threads in the container's cgroup";
    gauge(
        enc,
        "drover_container_pids",
        help,
        field(|c| u64::from(c.pids)),
    )?;
    let help = "Processes of the container the kernel's OOM killer killed";
    counter(
        enc,
        "drover_container_oom_kills",
        help,
        field(|c| u64::from(c.oom_kills)),
    )
}
