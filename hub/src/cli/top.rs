//! `drover-hub top [devices|workloads]`: current usage from the latest telemetry sample of
//! each device, like `kubectl top nodes|pods`. Pure formatting of `GET /v1/telemetry`.

use clap::ValueEnum;

use super::output::{self, ago, bytes, table};
use super::{CliError, Client, Format};
use crate::telemetry::view::DeviceTelemetryView;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TopKind {
    /// One line per device: CPU, load, memory, temperature, free disk.
    #[default]
    #[value(alias = "device", alias = "nodes")]
    Devices,
    /// One line per container: CPU, memory, pids, restarts, OOM kills.
    #[value(alias = "workload", alias = "pods", alias = "containers")]
    Workloads,
}

/// Prints the table (or the views as JSON/YAML).
pub fn top(client: &Client, kind: TopKind, format: Format) -> Result<(), CliError> {
    let v: Vec<DeviceTelemetryView> = client.get("/v1/telemetry")?;
    let now = crate::now_ms();
    match kind {
        TopKind::Devices => output::print(&v, format, |v| devices_table(v, now)),
        TopKind::Workloads => output::print(&v, format, |v| workloads_table(v)),
    }
}

/// `NAME CPU% LOAD MEMORY MEMORY% TEMP DISK-FREE SAMPLE`.
pub fn devices_table(v: &[DeviceTelemetryView], now_ms: u64) -> String {
    if v.is_empty() {
        return "No telemetry yet: devices send a sample every `telemetry.interval` (10s by default) once connected.\n".to_owned();
    }
    let rows = v
        .iter()
        .map(|d| {
            let total = d.memory_used_bytes + d.memory_available_bytes;
            let mem_pct = (total > 0).then(|| d.memory_used_bytes as f64 * 100.0 / total as f64);
            vec![
                d.device.clone(),
                format!("{:.0}%", d.cpu_percent),
                format!("{:.2}", d.load1),
                bytes(d.memory_used_bytes),
                mem_pct.map_or("-".into(), |p| format!("{p:.0}%")),
                d.temperature_celsius
                    .map_or("-".into(), |t| format!("{t:.1}°C")),
                bytes(d.disk_free_bytes),
                ago(d.received_ms, now_ms),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "CPU%",
            "LOAD",
            "MEMORY",
            "MEMORY%",
            "TEMP",
            "DISK-FREE",
            "SAMPLE",
        ],
        rows,
    )
}

/// `DEVICE WORKLOAD CONTAINER CPU% MEMORY PEAK PIDS RESTARTS OOM-KILLS`; CPU in percent of
/// one core (200% = two cores busy).
pub fn workloads_table(v: &[DeviceTelemetryView]) -> String {
    let rows: Vec<Vec<String>> = v
        .iter()
        .flat_map(|d| {
            d.containers.iter().map(|c| {
                vec![
                    d.device.clone(),
                    c.workload.clone(),
                    c.container.clone(),
                    c.cpu_percent.map_or("-".into(), |p| format!("{p:.1}%")),
                    bytes(c.memory_bytes),
                    bytes(c.memory_peak_bytes),
                    c.pids.to_string(),
                    c.restarts.to_string(),
                    c.oom_kills.to_string(),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return "No container usage yet: no device has sent telemetry with a running container.\n"
            .to_owned();
    }
    table(
        &[
            "DEVICE",
            "WORKLOAD",
            "CONTAINER",
            "CPU%",
            "MEMORY",
            "PEAK",
            "PIDS",
            "RESTARTS",
            "OOM-KILLS",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use drover_protocol::telemetry::*;

    use super::*;
    use crate::telemetry::view::device_view;

    fn sample(seq: u64, time_s: u64, cpu_ms: u64) -> Telemetry {
        Telemetry {
            seq,
            time_s,
            device: DeviceUsage {
                cpu_permille: 425,
                load1_centi: 131,
                memory_used_kib: 1024 * 1024,
                memory_available_kib: 3 * 1024 * 1024,
                disk_free_kib: 10 * 1024 * 1024,
                temperature_decicelsius: Some(512),
                ..Default::default()
            },
            workloads: vec![WorkloadUsage {
                name: drover_protocol::Name::new("web").unwrap(),
                containers: vec![ContainerUsage {
                    name: drover_protocol::Name::new("nginx").unwrap(),
                    cpu_ms,
                    memory_kib: 20 * 1024,
                    memory_peak_kib: 30 * 1024,
                    pids: 3,
                    oom_kills: 1,
                    restarts: 2,
                }],
            }],
            dropped: 0,
        }
    }

    #[test]
    fn tables_show_usage_with_rates_from_consecutive_samples() {
        let before = sample(1, 1000, 5_000);
        let now = sample(2, 1010, 10_000);
        let v = vec![device_view("pi-1", &now, 50_000, Some(&before))];
        let t = devices_table(&v, 52_000);
        assert!(t.starts_with("NAME   CPU%   LOAD"), "{t}");
        assert!(
            t.contains("pi-1   42%    1.31   1.0GiB   25%       51.2°C   10.0GiB     2s"),
            "{t}"
        );
        let w = workloads_table(&v);
        // 5 s of CPU over 10 s: half a core.
        assert!(
            w.contains(
                "pi-1     web        nginx       50.0%   20.0MiB   30.0MiB   3      2          1"
            ),
            "{w}"
        );
        let first = vec![device_view("pi-1", &now, 50_000, None)];
        assert!(
            workloads_table(&first).contains("nginx       -      "),
            "{}",
            workloads_table(&first)
        );
        assert!(devices_table(&[], 0).starts_with("No telemetry yet"));
    }
}
