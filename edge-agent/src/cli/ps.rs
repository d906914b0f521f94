//! `drover-agent ps`: the workloads as the agent last reported them, with live memory.

use std::path::Path;

use drover_protocol::{ContainerStatus, DeviceStatus, Phase, WorkloadReason, WorkloadStatus};

use super::load_config;
use crate::cgroups;
use crate::fsutil::now_ms;
use crate::state::{self, StatePaths};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Prints the status; exit code 1 when there is none to print.
pub fn ps(config: &Path, format: Format) -> u8 {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drover-agent: {e}");
            return 1;
        }
    };
    let paths = StatePaths::of(&cfg);
    let mut report = match state::load_report(&paths) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "drover-agent: no status yet ({e}); is the agent running with this state folder?"
            );
            return 1;
        }
    };
    if !agent_running(&paths) {
        eprintln!(
            "warning: no agent is running on {}; this is its last report",
            paths.root.display()
        );
    }
    let floor = cfg.images.min_free_disk.0.max(1 << 20);
    if let Some(free) = crate::fsutil::disk_free_bytes(&paths.root)
        && free < floor
    {
        eprintln!(
            "warning: only {free} bytes free on the state folder's filesystem ({}): records and new images may not be saved; running workloads keep running (free space, then see the agent's log)",
            paths.root.display()
        );
    }
    if let Some(e) = &report.manifest_error {
        eprintln!("warning: manifests not applied: {e}");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(h) = &report.hub {
        eprint!("{}", hub_lines(h, report.status.observed_generation));
    }
    refresh_memory(&mut report.status, cfg.cgroup_parent.trim_matches('/'));
    match format {
        Format::Json => match json(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("drover-agent: {e}");
                return 1;
            }
        },
        Format::Table => print!("{}", table(&report.status, now_ms())),
    }
    0
}

/// The status as JSON, with each workload's labels, and the agent's own view (manifest
/// errors, hub link) under `agent`.
fn json(report: &state::AgentReport) -> serde_json::Result<String> {
    let mut v = serde_json::to_value(&report.status)?;
    if let Some(workloads) = v["workloads"].as_array_mut() {
        for (w, status) in workloads.iter_mut().zip(&report.status.workloads) {
            let labels = report.labels.get(&status.name).cloned().unwrap_or_default();
            w["labels"] = serde_json::to_value(labels)?;
        }
    }
    v["agent"] = serde_json::json!({
        "pid": report.agent_pid,
        "manifest_error": report.manifest_error,
        "warnings": report.warnings,
        "hub": report.hub,
    });
    serde_json::to_string_pretty(&v)
}

/// True when some process holds the state folder's lock.
/// The link's counters for the text output: connection, desired states and status
/// updates on one line, telemetry samples and hub commands on the next.
fn hub_lines(h: &crate::hub_link::LinkStats, generation: u64) -> String {
    let state = if h.connected {
        "connected"
    } else {
        "disconnected"
    };
    let c = &h.commands;
    format!(
        "hub: {state}, desired generation {generation}, rejected desired states {}, \
         dropped status updates {}, trimmed status updates {}\n\
         telemetry: published {}, downsampled {}, dropped {}; \
         commands: accepted {}, rejected {}, log streams {}, restarts {}\n",
        h.rejected_desired,
        h.dropped_status,
        h.trimmed_status,
        h.published_telemetry,
        h.downsampled_telemetry,
        h.dropped_telemetry,
        c.accepted,
        c.rejected,
        c.streams,
        c.restarts,
    )
}

fn agent_running(paths: &StatePaths) -> bool {
    let Ok(f) = std::fs::File::open(paths.lock()) else {
        return false;
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: flock on a descriptor we own; released when `f` is dropped.
    unsafe { libc::flock(fd, libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

/// A container's PHASE cell, as kubectl shows it: `CrashLoopBackOff (retry in 40s)` for a
/// container in the back-off of its workload's crash loop, `Waiting` for one held back
/// by `dependsOn`, else its phase (`(OOMKilled)` added when memory killed it).
fn phase_cell(wl: &WorkloadStatus, c: &ContainerStatus, now: u64) -> String {
    let oom = if c.oom_killed { " (OOMKilled)" } else { "" };
    match &wl.reason {
        Some(WorkloadReason::CrashLoopBackOff { next_retry_ms })
            if matches!(c.phase, Phase::BackOff | Phase::Error) =>
        {
            let secs = next_retry_ms.saturating_sub(now).div_ceil(1000);
            format!("CrashLoopBackOff{oom} (retry in {secs}s)")
        }
        Some(WorkloadReason::WaitingForDependency { .. }) if c.phase == Phase::Pending => {
            "Waiting".into()
        }
        _ => format!("{}{oom}", c.phase),
    }
}

fn refresh_memory(status: &mut DeviceStatus, parent: &str) {
    for wl in &mut status.workloads {
        for c in &mut wl.containers {
            if c.pid.is_some()
                && let Some((used, limit)) =
                    cgroups::memory_usage(&format!("/{parent}/{}/{}", wl.name, c.name))
            {
                c.memory_bytes = Some(used);
                c.memory_limit_bytes = limit;
            }
        }
    }
}

/// The table `ps` prints: one row per container.
pub fn table(status: &DeviceStatus, now: u64) -> String {
    let mut rows = vec![
        [
            "WORKLOAD",
            "CONTAINER",
            "PHASE",
            "READY",
            "HEALTH",
            "PID",
            "RESTARTS",
            "MEMORY",
            "STARTED",
            "REV",
            "IMAGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for wl in &status.workloads {
        for c in &wl.containers {
            let mem = match (c.memory_bytes, c.memory_limit_bytes) {
                (Some(u), Some(l)) => format!("{}/{}", human(u), human(l)),
                (Some(u), None) => format!("{}/-", human(u)),
                _ => "-".into(),
            };
            let started = c.started_at_ms.map_or("-".into(), |t| {
                format!("{} ago", age(now.saturating_sub(t)))
            });
            let phase = phase_cell(wl, c, now);
            rows.push(vec![
                wl.name.to_string(),
                c.name.to_string(),
                phase,
                if c.ready { "yes" } else { "no" }.into(),
                health(c),
                c.pid.map_or("-".into(), |p| p.to_string()),
                c.restarts.to_string(),
                mem,
                started,
                match wl.revision {
                    0 => "-".into(),
                    r => r.to_string(),
                },
                c.image.clone(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for wl in &status.workloads {
        for c in wl.containers.iter().filter(|c| c.probe_failures > 0) {
            // Probe output is the container's: one line here, whatever it printed.
            let msg = c.probe_message.as_deref().unwrap_or_default();
            let msg: String = msg
                .chars()
                .map(|ch| if ch.is_control() { ' ' } else { ch })
                .collect();
            out.push_str(&format!("{}/{}: {}\n", wl.name, c.name, msg.trim_end()));
        }
    }
    for wl in status.workloads.iter().filter(|w| w.last_error.is_some()) {
        out.push_str(&format!(
            "{}: {}\n",
            wl.name,
            wl.last_error.as_deref().unwrap_or_default()
        ));
    }
    for wl in &status.workloads {
        if let Some(r) = &wl.reason {
            out.push_str(&format!("{}: {}\n", wl.name, r.describe(now)));
        }
        if let Some(rb) = &wl.rolled_back {
            out.push_str(&format!(
                "{}: rolled back by this device from revision {} to {}: {}\n",
                wl.name, rb.from, rb.to, rb.reason
            ));
        }
    }
    out
}

/// `healthy`, `starting`, `-` without probes; failures so far when some probe fails.
fn health(c: &drover_protocol::ContainerStatus) -> String {
    let h = match c.health {
        drover_protocol::Health::None => "-",
        other => other.as_str(),
    };
    match c.probe_failures {
        0 => h.to_owned(),
        n => format!("{h} ({n} failed)"),
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "Ki", "Mi", "Gi"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hub_lines_show_telemetry_and_command_counters() {
        let mut h = crate::hub_link::LinkStats {
            connected: true,
            published_telemetry: 12,
            downsampled_telemetry: 3,
            dropped_telemetry: 1,
            ..Default::default()
        };
        h.commands.accepted = 4;
        h.commands.rejected = 2;
        h.commands.restarts = 1;
        assert_eq!(
            super::hub_lines(&h, 7),
            "hub: connected, desired generation 7, rejected desired states 0, dropped status \
             updates 0, trimmed status updates 0\ntelemetry: published 12, downsampled 3, \
             dropped 1; commands: accepted 4, rejected 2, log streams 0, restarts 1\n"
        );
    }

    use super::*;

    #[test]
    fn sizes_and_ages_read_like_kubectl() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(64 * 1024 * 1024), "64.0Mi");
        assert_eq!(age(5_000), "5s");
        assert_eq!(age(125_000), "2m5s");
        assert_eq!(age(7_300_000), "2h1m");
    }

    #[test]
    fn the_table_shows_readiness_health_and_the_failing_probe() {
        use drover_protocol::{ContainerStatus, Health, Name, Phase, WorkloadStatus};
        let name = |s: &str| Name::new(s).expect("valid name");
        let c = ContainerStatus {
            pid: Some(7),
            restarts: 1,
            health: Health::Unhealthy,
            probe_failures: 2,
            probe_message: Some("readiness probe: HTTP 503\nbody line 2\n".into()),
            ..ContainerStatus::new(name("main"), "busybox".into(), Phase::Running)
        };
        let status = DeviceStatus {
            device: name("pi"),
            observed_generation: 1,
            time_ms: 0,
            capacity: Default::default(),
            workloads: vec![WorkloadStatus {
                name: name("web"),
                phase: Phase::Running,
                restarts: 1,
                containers: vec![c],
                last_error: Some("restarted: liveness probe failed 3 times: HTTP 500".into()),
                reason: None,
                revision: 3,
                rolled_back: Some(drover_protocol::RolledBack {
                    from: 4,
                    to: 3,
                    reason: "not healthy within 60s: main: readiness probe: HTTP 503".into(),
                }),
            }],
        };
        let t = table(&status, 0);
        let mut lines = t.lines();
        let head: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            &head[..5],
            ["WORKLOAD", "CONTAINER", "PHASE", "READY", "HEALTH"]
        );
        let row = lines.next().unwrap_or_default();
        assert!(row.contains("Running  no     unhealthy (2 failed)"), "{t}");
        assert!(
            t.contains("web/main: readiness probe: HTTP 503 body line 2\n"),
            "probe output stays on one line: {t}"
        );
        assert!(row.contains(" 3 "), "the REV column: {row}");
        assert!(
            t.contains("web: restarted: liveness probe failed 3 times"),
            "{t}"
        );
        assert!(
            t.contains(
                "web: rolled back by this device from revision 4 to 3: not healthy within 60s"
            ),
            "{t}"
        );
    }

    #[test]
    fn a_crash_loop_and_a_wait_show_in_the_phase_column_and_below_the_table() {
        use drover_protocol::{Dependency, DependencyCondition, Name};
        let name = |s: &str| Name::new(s).expect("valid name");
        let container = |phase| ContainerStatus {
            restarts: 4,
            exit_code: Some(1),
            ..ContainerStatus::new(name("app"), "oci:/img".into(), phase)
        };
        let workload = |n: &str, phase, reason| WorkloadStatus {
            name: name(n),
            phase,
            restarts: 0,
            containers: vec![container(phase)],
            last_error: None,
            reason: Some(reason),
            revision: 0,
            rolled_back: None,
        };
        let status = DeviceStatus {
            device: name("pi"),
            observed_generation: 1,
            time_ms: 0,
            workloads: vec![
                workload(
                    "api",
                    Phase::BackOff,
                    WorkloadReason::CrashLoopBackOff {
                        next_retry_ms: 50_000,
                    },
                ),
                workload(
                    "web",
                    Phase::Pending,
                    WorkloadReason::WaitingForDependency {
                        dependency: Dependency {
                            name: name("api"),
                            condition: DependencyCondition::Healthy,
                        },
                    },
                ),
            ],
            capacity: Default::default(),
        };
        let out = table(&status, 10_000);
        assert!(out.contains("CrashLoopBackOff (retry in 40s)"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("web ") && l.contains(" Waiting ")),
            "{out}"
        );
        assert!(out.contains("web: waiting for api to be healthy"), "{out}");
        assert!(
            out.contains("api: CrashLoopBackOff: restarting failed container, next try in 40s"),
            "{out}"
        );
    }

    #[test]
    fn json_shows_each_workload_with_its_labels() {
        use drover_protocol::{Name, Phase, WorkloadStatus};
        let name = |s: &str| Name::new(s).expect("valid name");
        let workload = |n: &str| WorkloadStatus {
            name: name(n),
            phase: Phase::Running,
            restarts: 0,
            containers: vec![],
            last_error: None,
            reason: None,
            revision: 0,
            rolled_back: None,
        };
        let report = state::AgentReport {
            agent_pid: 1,
            status: DeviceStatus {
                device: name("pi"),
                observed_generation: 1,
                time_ms: 0,
                workloads: vec![workload("web"), workload("db")],
                capacity: Default::default(),
            },
            manifest_error: None,
            warnings: vec![],
            hub: None,
            labels: [(name("web"), [("app".to_owned(), "web".to_owned())].into())].into(),
        };
        let v: serde_json::Value =
            serde_json::from_str(&json(&report).expect("json")).expect("parses");
        assert_eq!(
            v["workloads"][0]["labels"],
            serde_json::json!({"app": "web"})
        );
        assert_eq!(v["workloads"][1]["labels"], serde_json::json!({}));
        assert_eq!(v["agent"]["pid"], 1);
    }
}
