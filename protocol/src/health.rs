//! Wire types of health: probes (Kubernetes-shaped), start order and what status reports.
//!
//! Encoded with postcard like everything in `types`: never reorder or remove fields, only
//! append enum variants, and bump `codec::VERSION` when a struct changes shape.

use serde::{Deserialize, Serialize};

use crate::Name;

/// One probe of a container: what to run and how often (Kubernetes' `Probe`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub action: ProbeAction,
    /// Seconds after the container started before the first probe (default 0).
    pub initial_delay_s: u32,
    /// Seconds between probes (default 10, at least 1).
    pub period_s: u32,
    /// Seconds after which one probe counts as failed (default 1, at least 1).
    pub timeout_s: u32,
    /// Consecutive successes that make a failing container healthy again (default 1).
    pub success_threshold: u32,
    /// Consecutive failures that make it unhealthy (default 3).
    pub failure_threshold: u32,
}

impl Probe {
    /// A probe with Kubernetes' defaults.
    pub fn new(action: ProbeAction) -> Probe {
        Probe {
            action,
            initial_delay_s: 0,
            period_s: 10,
            timeout_s: 1,
            success_threshold: 1,
            failure_threshold: 3,
        }
    }
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeAction {
    /// Runs `command` inside the container (its namespaces and cgroup); exit 0 = success.
    Exec { command: Vec<String> },
    /// `GET path` on `port` of the container's network; a status 200–399 = success.
    HttpGet {
        path: String,
        port: u16,
        scheme: HttpScheme,
        /// Extra request headers, `(name, value)`.
        headers: Vec<(String, String)>,
    },
    /// A TCP connection to `port` of the container's network is accepted = success.
    TcpSocket { port: u16 },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpScheme {
    #[default]
    Http,
    /// TLS without verifying the certificate, as Kubernetes probes do.
    Https,
}

/// Start after another workload (or container of the same workload) reached `condition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// A workload of the same device (on a workload) or a container of the same workload
    /// (on a container).
    pub name: Name,
    pub condition: DependencyCondition,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DependencyCondition {
    /// Its containers are running.
    Started,
    /// Its containers are running and ready (readiness probe, else running).
    Healthy,
    /// It ran to completion with exit code 0.
    Completed,
}

/// A container's health as its probes see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    /// No probe.
    #[default]
    None,
    /// Probes have not decided yet (startup probe running, or within the initial delay).
    Starting,
    Healthy,
    Unhealthy,
}

/// Why a workload is not simply running, when there is more to say than its phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadReason {
    /// Restarted repeatedly: the next try is at `next_retry_ms` (Unix time, ms).
    CrashLoopBackOff { next_retry_ms: u64 },
    /// Not started until `dependency` (a workload or container) reaches its condition.
    WaitingForDependency { dependency: Dependency },
}

/// A device's own rollback: revision `from` did not become healthy within its health
/// timeout, so the device went back to revision `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    pub from: u64,
    pub to: u64,
    /// Why, e.g. `liveness probe failed 3 times: HTTP 500` or `CrashLoopBackOff`.
    pub reason: String,
}

impl WorkloadReason {
    /// One line for people: `back-off: next try in 40s`, `waiting for workload db to be
    /// healthy`. `now_ms` is Unix ms.
    pub fn describe(&self, now_ms: u64) -> String {
        match self {
            WorkloadReason::CrashLoopBackOff { next_retry_ms } => {
                let secs = next_retry_ms.saturating_sub(now_ms).div_ceil(1000);
                format!("CrashLoopBackOff: restarting failed container, next try in {secs}s")
            }
            WorkloadReason::WaitingForDependency { dependency } => format!(
                "waiting for {} to be {}",
                dependency.name,
                dependency.condition.as_str()
            ),
        }
    }
}

impl DependencyCondition {
    /// As written in manifests: `started`, `healthy`, `completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyCondition::Started => "started",
            DependencyCondition::Healthy => "healthy",
            DependencyCondition::Completed => "completed",
        }
    }
}

impl Health {
    /// `none`, `starting`, `healthy`, `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::None => "none",
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_kubectl_would_say_them() {
        let back_off = WorkloadReason::CrashLoopBackOff {
            next_retry_ms: 50_500,
        };
        assert_eq!(
            back_off.describe(10_000),
            "CrashLoopBackOff: restarting failed container, next try in 41s"
        );
        let wait = WorkloadReason::WaitingForDependency {
            dependency: Dependency {
                name: Name::new("db").unwrap(),
                condition: DependencyCondition::Healthy,
            },
        };
        assert_eq!(wait.describe(0), "waiting for db to be healthy");
    }
}
