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
