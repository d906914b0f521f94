//! Printing the API's answers: kubectl-like tables and `describe` text, or the views as
//! JSON / YAML (serde-saphyr's serializer). Pure formatting: strings in, strings out.

use std::collections::BTreeMap;
use std::fmt::Write;

use drover_protocol::{Health, WorkloadStatus};
use serde::Serialize;

use super::{CliError, Format};
use crate::views::{
    ChangeReport, DeploymentDetail, DeploymentView, DeviceDetail, DeviceView, EventView, ImageView,
    ImportReport, labels_string,
};

/// Prints `v` as JSON, YAML, or the text `table` makes of it.
pub fn print<T: Serialize>(
    v: &T,
    format: Format,
    table: impl Fn(&T) -> String,
) -> Result<(), CliError> {
    let text = match format {
        Format::Table => table(v),
        Format::Json => {
            serde_json::to_string_pretty(v).map_err(|e| CliError::Output {
                format: "json",
                message: e.to_string(),
            })? + "\n"
        }
        Format::Yaml => serde_saphyr::to_string(v).map_err(|e| CliError::Output {
            format: "yaml",
            message: e.to_string(),
        })?,
    };
    // A reader that goes away (`… | head -1`) is not an error; `print!` would panic.
    let mut out = std::io::stdout().lock();
    match std::io::Write::write_all(&mut out, text.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut out))
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Output {
            format: "stdout",
            message: e.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Left-aligned columns separated by three spaces, like kubectl.
pub(super) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&head).chain(&rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}   ");
            }
        }
        out.push('\n');
    }
    out
}

/// `5s`, `3m`, `2h`, `4d` ago; `never` for 0.
pub fn ago(ts_ms: u64, now_ms: u64) -> String {
    if ts_ms == 0 {
        return "never".to_owned();
    }
    let s = now_ms.saturating_sub(ts_ms) / 1000;
    match s {
        0..120 => format!("{s}s ago"),
        120..7200 => format!("{}m ago", s / 60),
        7200..172_800 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// A span in the largest whole unit under its double: `45s`, `3m`, `24h`, `30d`.
pub fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `3` when in sync, `observed/desired` otherwise.
fn generation(v: &DeviceView) -> String {
    if v.in_sync {
        v.desired_generation.to_string()
    } else {
        format!("{}/{}", v.observed_generation, v.desired_generation)
    }
}

pub fn devices_table(v: &[DeviceView], now_ms: u64) -> String {
    let rows = v
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                match (d.revoked_ms, d.online) {
                    (Some(_), _) => "revoked",
                    (None, true) => "yes",
                    (None, false) => "no",
                }
                .to_owned(),
                format!("{}/{}", d.ready, d.total),
                generation(d),
                ago(d.last_seen_ms, now_ms),
                labels_string(&d.labels),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "ONLINE",
        "READY",
        "GENERATION",
        "LAST SEEN",
        "LABELS",
    ];
    table(&header, rows)
}

pub fn deployments_table(v: &[DeploymentView]) -> String {
    let rows = v
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.replicas.map_or("all".to_owned(), |r| r.to_string()),
                format!("{}/{}", d.ready, d.total),
                d.selector.clone(),
                if d.devices.is_empty() {
                    "<none>".to_owned()
                } else {
                    d.devices.join(",")
                },
            ]
        })
        .collect();
    table(&["NAME", "REPLICAS", "READY", "SELECTOR", "DEVICES"], rows)
}

/// `1.5MiB`-style sizes (binary units, one decimal above KiB).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// `sha256:` and the first 12 hex digits, like `docker images`.
fn short_digest(d: &str) -> String {
    d.get(..19).unwrap_or(d).to_owned()
}

pub fn images_table(v: &[ImageView]) -> String {
    let rows = v
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.tag.clone(),
                short_digest(&i.digest),
                i.platforms.join(","),
                bytes(i.size),
            ]
        })
        .collect();
    table(&["NAME", "TAG", "DIGEST", "PLATFORMS", "SIZE"], rows)
}

/// `apply` / `delete` / `diff`: one line per object, then the devices that change.
pub fn change_report(r: &ChangeReport) -> String {
    let mut out = String::new();
    let suffix = if r.dry_run { " (dry run)" } else { "" };
    for l in &r.results {
        let _ = writeln!(out, "{l}{suffix}");
    }
    for d in &r.devices {
        let marks: Vec<String> = d
            .diff
            .added
            .iter()
            .map(|w| format!("+{w}"))
            .chain(d.diff.changed.iter().map(|w| format!("~{w}")))
            .chain(d.diff.removed.iter().map(|w| format!("-{w}")))
            .collect();
        let _ = writeln!(
            out,
            "device/{} generation {}: {}",
            d.device,
            d.generation,
            marks.join(" ")
        );
    }
    let n = r.changed_devices;
    let (verb, plural) = (
        if r.dry_run { "would get" } else { "got" },
        if n == 1 { "" } else { "s" },
    );
    let _ = writeln!(out, "{n} device{plural} {verb} a new desired state");
    out
}

pub fn import_report(r: &ImportReport) -> String {
    let mut out = String::new();
    for i in &r.images {
        let _ = writeln!(
            out,
            "imported {}:{} {} ({}, {})",
            i.name,
            i.tag,
            i.digest,
            i.platforms.join(","),
            bytes(i.size)
        );
    }
    let _ = writeln!(
        out,
        "{} blobs copied ({})",
        r.blobs_copied,
        bytes(r.bytes_copied)
    );
    out
}

pub fn stats_table(v: &BTreeMap<String, u64>) -> String {
    let rows = v
        .iter()
        .map(|(k, n)| vec![k.clone(), n.to_string()])
        .collect();
    table(&["COUNTER", "VALUE"], rows)
}

fn events(out: &mut String, events: &[EventView], now_ms: u64) {
    out.push_str("Events:\n");
    if events.is_empty() {
        out.push_str("  <none>\n");
    }
    for e in events {
        let _ = writeln!(out, "  {:>8}  {}", ago(e.ts_ms, now_ms), e.message);
    }
}

pub fn describe_device(d: &DeviceDetail, now_ms: u64) -> String {
    let v = &d.device;
    let mut out = String::new();
    let presence = match d.presence {
        Some(true) => "online",
        Some(false) => "offline",
        None => "none seen",
    };
    let _ = writeln!(out, "Name:         {}", v.name);
    let _ = writeln!(out, "Labels:       {}", labels_string(&v.labels));
    let _ = writeln!(
        out,
        "Online:       {} (presence: {presence})",
        if v.online { "yes" } else { "no" }
    );
    let _ = writeln!(out, "Last seen:    {}", ago(v.last_seen_ms, now_ms));
    let sync = if v.in_sync { "in sync" } else { "not in sync" };
    let _ = writeln!(
        out,
        "Generation:   desired {}, observed {} ({sync})",
        v.desired_generation, v.observed_generation
    );
    if let Some(c) = d.capacity {
        let _ = writeln!(
            out,
            "Capacity:     memory {} MiB (reserved {} MiB), cpu {}m",
            c.memory_bytes >> 20,
            c.memory_reserved_bytes >> 20,
            c.cpu_millis
        );
    }
    out.push_str("Desired workloads:\n");
    if d.desired.is_empty() {
        out.push_str("  <none>\n");
    }
    for w in &d.desired {
        let images: Vec<String> = w
            .containers
            .iter()
            .map(|c| format!("{}={}", c.name, c.image))
            .collect();
        let _ = writeln!(out, "  {}: {}", w.name, images.join(" "));
    }
    out.push_str("Reported workloads:\n");
    if d.reported.is_empty() {
        out.push_str("  <none>\n");
    }
    for w in &d.reported {
        reported_workload(&mut out, w, now_ms);
    }
    events(&mut out, &d.events, now_ms);
    out
}

/// One reported workload of `describe device`: state, reason, error, then its containers
/// with their health (`healthy, ready`; probe failures and message when failing).
fn reported_workload(out: &mut String, w: &WorkloadStatus, now_ms: u64) {
    let _ = writeln!(
        out,
        "  {}: {} (restarts {})",
        w.name,
        w.display_state(),
        w.restarts
    );
    if let Some(r) = &w.reason {
        let _ = writeln!(out, "    reason: {}", r.describe(now_ms));
    }
    if let Some(e) = &w.last_error {
        let _ = writeln!(out, "    last error: {e}");
    }
    for c in &w.containers {
        let pid = c.pid.map_or("-".to_owned(), |p| p.to_string());
        let ready = if c.ready { "ready" } else { "not ready" };
        let health = match c.health {
            Health::None => String::new(),
            h => format!(", {}", h.as_str()),
        };
        let _ = writeln!(
            out,
            "    {}: {} pid {pid} restarts {}{health}, {ready}",
            c.name, c.phase, c.restarts
        );
        if c.probe_failures > 0 || c.probe_message.is_some() {
            let msg = c.probe_message.as_deref().unwrap_or("");
            let _ = writeln!(
                out,
                "      probe: {} consecutive failures {msg}",
                c.probe_failures
            );
        }
        if let Some(e) = &c.last_error {
            let _ = writeln!(out, "      last error: {e}");
        }
    }
}

pub fn describe_deployment(d: &DeploymentDetail, now_ms: u64) -> String {
    let v = &d.deployment;
    let mut out = String::new();
    let _ = writeln!(out, "Name:         {}", v.name);
    let _ = writeln!(out, "Selector:     {}", v.selector);
    let replicas = v.replicas.map_or("every matching device".to_owned(), |r| {
        format!("{r} ({})", v.placement)
    });
    let _ = writeln!(out, "Replicas:     {replicas}");
    let _ = writeln!(out, "Ready:        {}/{}", v.ready, v.total);
    if d.revision > 0 {
        let _ = writeln!(out, "Revision:     {}", d.revision);
    }
    if let Some(r) = &d.rollout {
        let _ = writeln!(
            out,
            "Rollout:      {} → {} {} (updated {}/{}, healthy {}, failed {}, pending {})",
            r.from, r.to, r.phase, r.updated, r.total, r.healthy, r.failed, r.pending
        );
        if let Some(reason) = &r.reason {
            let _ = writeln!(out, "  RolledBack:  {reason}");
        }
    }
    out.push_str("Containers:\n");
    for c in &d.spec.template.containers {
        let _ = writeln!(out, "  {}: {}", c.name, c.image);
    }
    out.push_str("Devices:\n");
    if d.placed.is_empty() {
        out.push_str("  <none>\n");
    }
    for p in &d.placed {
        let online = if p.online { "online" } else { "offline" };
        let sync = if p.in_sync { "in sync" } else { "not in sync" };
        let ready = if p.ready { "ready" } else { "not ready" };
        let _ = writeln!(
            out,
            "  {}: {} (restarts {}, {ready}, {online}, {sync})",
            p.device, p.phase, p.restarts
        );
        if let Some(r) = &p.reason {
            let _ = writeln!(out, "    reason: {r}");
        }
        if let Some(e) = &p.last_error {
            let _ = writeln!(out, "    last error: {e}");
        }
    }
    for w in &d.warnings {
        let _ = writeln!(out, "Warning:      {w}");
    }
    events(&mut out, &d.events, now_ms);
    out
}

#[cfg(test)]
mod tests {
    use drover_protocol::{ContainerStatus, Name, Phase, WorkloadReason};

    use super::*;

    #[test]
    fn spans_use_the_largest_whole_unit_under_its_double() {
        assert_eq!(span(45_000), "45s");
        assert_eq!(span(3_600_000), "60m");
        assert_eq!(span(86_400_000), "24h");
        assert_eq!(span(30 * 86_400_000), "30d");
    }

    fn container(ready: bool, health: Health, failures: u32) -> ContainerStatus {
        ContainerStatus {
            pid: Some(42),
            restarts: 1,
            health,
            ready,
            probe_failures: failures,
            probe_message: (failures > 0).then(|| "HTTP 500".to_owned()),
            ..ContainerStatus::new(Name::new("main").unwrap(), "oci:/a".into(), Phase::Running)
        }
    }

    fn workload(c: ContainerStatus, reason: Option<WorkloadReason>) -> WorkloadStatus {
        WorkloadStatus {
            name: Name::new("web").unwrap(),
            phase: Phase::Running,
            restarts: 1,
            containers: vec![c],
            last_error: None,
            reason,
            revision: 0,
            rolled_back: None,
        }
    }

    #[test]
    fn describe_shows_health_readiness_probe_failures_and_reasons() {
        let mut out = String::new();
        reported_workload(
            &mut out,
            &workload(container(false, Health::Unhealthy, 2), None),
            0,
        );
        assert_eq!(
            out,
            "  web: Running (unhealthy) (restarts 1)\n    main: Running pid 42 restarts 1, unhealthy, not ready\n      probe: 2 consecutive failures HTTP 500\n"
        );
        let mut out = String::new();
        let back_off = WorkloadReason::CrashLoopBackOff {
            next_retry_ms: 20_000,
        };
        reported_workload(
            &mut out,
            &workload(container(true, Health::None, 0), Some(back_off)),
            10_000,
        );
        assert_eq!(
            out,
            "  web: CrashLoopBackOff (restarts 1)\n    reason: CrashLoopBackOff: restarting failed container, next try in 10s\n    main: Running pid 42 restarts 1, ready\n"
        );
    }
}
