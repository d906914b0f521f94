//! `drover-hub top [devices|workloads]`: current usage from the latest telemetry sample of
//! each device, like `kubectl top nodes|pods`. Pure formatting of `GET /v1/telemetry`
//! joined with the hub's presence from `GET /v1/devices`: an offline device's last sample
//! is stale, so its figures are never shown as current.

use clap::ValueEnum;
use serde::Serialize;

use super::output::{self, ago, bytes, table};
use super::{CliError, Client, Format};
use crate::telemetry::view::DeviceTelemetryView;
use crate::views::DeviceView;

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

/// A device's latest sample with the hub's presence for it (`-o json|yaml`: the view's
/// fields plus `online` and `last_seen_ms`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopDevice {
    /// Online as `get devices` says (a status within `offline_after`, no offline will).
    pub online: bool,
    /// Unix ms of the device's last accepted status; 0 = never (or no longer registered).
    pub last_seen_ms: u64,
    #[serde(flatten)]
    pub telemetry: DeviceTelemetryView,
}

/// Each sample with its device's presence; a device no longer registered is offline.
pub fn join(telemetry: Vec<DeviceTelemetryView>, devices: &[DeviceView]) -> Vec<TopDevice> {
    telemetry
        .into_iter()
        .map(|t| {
            let d = devices.iter().find(|d| d.name == t.device);
            TopDevice {
                online: d.is_some_and(|d| d.online),
                last_seen_ms: d.map_or(0, |d| d.last_seen_ms),
                telemetry: t,
            }
        })
        .collect()
}

/// Prints the table (or the joined views as JSON/YAML).
pub fn top(client: &Client, kind: TopKind, format: Format) -> Result<(), CliError> {
    let t: Vec<DeviceTelemetryView> = client.get("/v1/telemetry")?;
    let devices: Vec<DeviceView> = client.get("/v1/devices")?;
    let v = join(t, &devices);
    let now = crate::now_ms();
    match kind {
        TopKind::Devices => output::print(&v, format, |v| devices_table(v, now)),
        TopKind::Workloads => output::print(&v, format, |v| workloads_table(v)),
    }
}

/// `NAME STATUS CPU% LOAD MEMORY MEMORY% TEMP DISK-FREE SAMPLE`; an offline device shows
/// `-` for every figure and the age of its last sample.
pub fn devices_table(v: &[TopDevice], now_ms: u64) -> String {
    if v.is_empty() {
        return "No telemetry yet: devices send a sample every `telemetry.interval` (10s by default) once connected.\n".to_owned();
    }
    let rows = v.iter().map(|d| device_row(d, now_ms)).collect();
    table(
        &[
            "NAME",
            "STATUS",
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

fn device_row(top: &TopDevice, now_ms: u64) -> Vec<String> {
    let d = &top.telemetry;
    let sample = ago(d.received_ms, now_ms);
    if !top.online {
        let mut row = vec![d.device.clone(), "offline".to_owned()];
        row.extend(std::iter::repeat_n("-".to_owned(), 6));
        row.push(sample);
        return row;
    }
    let total = d.memory_used_bytes + d.memory_available_bytes;
    let mem_pct = (total > 0).then(|| d.memory_used_bytes as f64 * 100.0 / total as f64);
    vec![
        d.device.clone(),
        "online".to_owned(),
        format!("{:.0}%", d.cpu_percent),
        format!("{:.2}", d.load1),
        bytes(d.memory_used_bytes),
        mem_pct.map_or("-".into(), |p| format!("{p:.0}%")),
        d.temperature_celsius
            .map_or("-".into(), |t| format!("{t:.1}°C")),
        bytes(d.disk_free_bytes),
        sample,
    ]
}

/// `DEVICE WORKLOAD CONTAINER CPU% MEMORY PEAK PIDS RESTARTS OOM-KILLS`; CPU in percent of
/// one core (200% = two cores busy). Containers of offline devices are left out (their
/// figures are stale), with a line saying how many devices that is.
pub fn workloads_table(v: &[TopDevice]) -> String {
    let offline = v.iter().filter(|d| !d.online).count();
    let note = match offline {
        0 => String::new(),
        1 => "1 offline device not shown (`top devices` shows when it last reported).\n".into(),
        n => format!(
            "{n} offline devices not shown (`top devices` shows when they last reported).\n"
        ),
    };
    let rows: Vec<Vec<String>> = v
        .iter()
        .filter(|d| d.online)
        .map(|d| &d.telemetry)
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
        return "No container usage yet: no online device has sent telemetry with a running container.\n"
            .to_owned()
            + &note;
    }
    let t = table(
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
    );
    t + &note
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

    fn online(t: DeviceTelemetryView) -> TopDevice {
        TopDevice {
            online: true,
            last_seen_ms: t.received_ms,
            telemetry: t,
        }
    }

    #[test]
    fn tables_show_usage_with_rates_from_earlier_samples() {
        let before = sample(1, 1000, 5_000);
        let now = sample(2, 1010, 10_000);
        let v = vec![online(device_view("pi-1", &now, 50_000, &[&before]))];
        let t = devices_table(&v, 52_000);
        assert!(t.starts_with("NAME   STATUS   CPU%   LOAD"), "{t}");
        assert!(
            t.contains("pi-1   online   42%    1.31   1.0GiB   25%       51.2°C   10.0GiB     2s"),
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
        let first = vec![online(device_view("pi-1", &now, 50_000, &[]))];
        assert!(
            workloads_table(&first).contains("nginx       -      "),
            "{}",
            workloads_table(&first)
        );
        assert!(devices_table(&[], 0).starts_with("No telemetry yet"));
    }

    #[test]
    fn offline_devices_show_no_stale_figures() {
        let now = sample(2, 1010, 10_000);
        let registered = |name: &str, online: bool| -> DeviceView {
            serde_json::from_value(serde_json::json!({
                "name": name, "labels": {}, "online": online, "last_seen_ms": 40_000,
                "desired_generation": 1, "observed_generation": 1, "in_sync": true,
                "ready": 0, "total": 0, "workloads": [],
            }))
            .unwrap()
        };
        let t = vec![
            device_view("pi-1", &now, 50_000, &[]),
            device_view("pi-2", &now, 40_000, &[]),
            device_view("gone", &now, 30_000, &[]),
        ];
        let v = join(t, &[registered("pi-1", true), registered("pi-2", false)]);
        assert_eq!(
            v.iter()
                .map(|d| (d.online, d.last_seen_ms))
                .collect::<Vec<_>>(),
            [(true, 40_000), (false, 40_000), (false, 0)]
        );
        let t = devices_table(&v, 340_000);
        assert!(
            t.contains(
                "pi-2   offline   -      -      -        -         -        -           5m ago"
            ),
            "{t}"
        );
        assert!(t.contains("gone   offline   -"), "{t}");
        assert!(t.contains("pi-1   online    42%"), "{t}");
        let w = workloads_table(&v);
        assert!(
            w.contains("pi-1 ") && !w.contains("pi-2") && !w.contains("gone"),
            "{w}"
        );
        assert!(
            w.ends_with(
                "2 offline devices not shown (`top devices` shows when they last reported).\n"
            ),
            "{w}"
        );
        let json = serde_json::to_value(&v[1]).unwrap();
        assert_eq!(
            (&json["device"], &json["online"]),
            (&"pi-2".into(), &false.into())
        );
    }
}
