//! The fleet as `/metrics` reports it: devices (online, generation lag), the workloads they
//! report (phase, readiness, health, restarts) and each Deployment's rollout, read from
//! the store with one query per kind of row and folded in memory.
//!
//! `collect` only reads; `facts` is pure. Neither may query the store per device.

use std::collections::{BTreeMap, BTreeSet};

use drover_protocol::health::Health;
use drover_protocol::{Phase, WorkloadStatus};

use crate::controller::{ControllerError, ReadSide, is_online};
use crate::fleet::rollout::Phase as RolloutPhase;
use crate::store::{RolloutStateRow, StatusRow};

/// Every device, workload and Deployment at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetFacts {
    /// Sorted by name.
    pub devices: Vec<DeviceFacts>,
    /// Sorted by name.
    pub deployments: Vec<DeploymentFacts>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeviceFacts {
    pub name: String,
    pub online: bool,
    /// Desired generation minus the one the device last reported (0 when in sync).
    pub generation_lag: u64,
    /// The workloads of the Deployments placed on it, then those it still reports
    /// without being placed (being removed).
    pub workloads: Vec<WorkloadFacts>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadFacts {
    pub name: String,
    /// `Phase::as_str`; `Pending` while the device has not reported it.
    pub phase: &'static str,
    /// Running with every container ready.
    pub ready: bool,
    /// The worst of its containers' probe verdicts ([`health_label`]).
    pub health: &'static str,
    /// Running, and every container's probes pass or it has none (see [`is_healthy`]).
    pub healthy: bool,
    pub restarts: u32,
    /// Each reported container's name and restarts.
    pub containers: Vec<(String, u32)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentFacts {
    pub name: String,
    /// The revision of its current template.
    pub revision: u64,
    /// Devices it is placed on.
    pub devices: usize,
    /// Placed devices that report its workload ready.
    pub ready: usize,
    /// Its last rollout, if it had one.
    pub rollout: Option<RolloutFacts>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutFacts {
    /// The revision it moves devices to.
    pub to: u64,
    pub updated: usize,
    pub healthy: usize,
    pub failed: usize,
    pub paused: bool,
    pub rolled_back: bool,
    /// Progressing or paused.
    pub active: bool,
}

/// Reads the fleet through the read connection: devices, statuses, desired states,
/// Deployments, placement and rollout states — one query each.
pub fn collect(read: &ReadSide, now_ms: u64) -> Result<FleetFacts, ControllerError> {
    let store = read.store();
    let settings = read.settings();
    let statuses = store.statuses()?;
    let generations: BTreeMap<String, u64> = store
        .all_desired()?
        .into_iter()
        .map(|(d, row)| (d, row.generation))
        .collect();
    let devices: Vec<(String, bool)> = store
        .devices()?
        .into_iter()
        .map(|d| {
            let online = is_online(statuses.get(&d.name), settings, now_ms);
            (d.name, online)
        })
        .collect();
    let deployments: Vec<String> = store
        .deployments()?
        .into_iter()
        .map(|d| d.deployment.name.to_string())
        .collect();
    Ok(facts(&Inputs {
        devices,
        statuses,
        generations,
        deployments,
        placement: store.placement()?,
        rollouts: store.rollout_states()?,
    }))
}

/// What `collect` read, for the pure fold.
pub struct Inputs {
    /// Every registered device with whether it is online.
    pub devices: Vec<(String, bool)>,
    pub statuses: BTreeMap<String, StatusRow>,
    /// Desired generation by device.
    pub generations: BTreeMap<String, u64>,
    /// Deployment names.
    pub deployments: Vec<String>,
    /// Deployment → the devices it is placed on.
    pub placement: BTreeMap<String, BTreeSet<String>>,
    pub rollouts: BTreeMap<String, RolloutStateRow>,
}

/// Folds what was read into facts, in O(devices + placements).
pub fn facts(i: &Inputs) -> FleetFacts {
    let mut placed_on: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (deployment, devices) in &i.placement {
        for d in devices {
            placed_on.entry(d).or_default().push(deployment);
        }
    }
    let mut devices: Vec<DeviceFacts> = i
        .devices
        .iter()
        .map(|(name, online)| {
            let reported = reported(i.statuses.get(name));
            let observed = i
                .statuses
                .get(name)
                .and_then(|r| r.status.as_ref())
                .map_or(0, |s| s.observed_generation);
            let desired = i.generations.get(name).copied().unwrap_or(0);
            let wanted = placed_on.get(name.as_str()).map_or(&[][..], Vec::as_slice);
            DeviceFacts {
                name: name.clone(),
                online: *online,
                generation_lag: desired.saturating_sub(observed),
                workloads: workloads(wanted, reported),
            }
        })
        .collect();
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    let mut deployments: Vec<DeploymentFacts> = i
        .deployments
        .iter()
        .map(|name| deployment(name, i))
        .collect();
    deployments.sort_by(|a, b| a.name.cmp(&b.name));
    FleetFacts {
        devices,
        deployments,
    }
}

fn reported(row: Option<&StatusRow>) -> &[WorkloadStatus] {
    row.and_then(|r| r.status.as_ref())
        .map_or(&[], |s| s.workloads.as_slice())
}

/// The placed workloads (`Pending` until reported), then the reported ones not placed.
fn workloads(wanted: &[&str], reported: &[WorkloadStatus]) -> Vec<WorkloadFacts> {
    let mut out: Vec<WorkloadFacts> = wanted
        .iter()
        .map(|w| match reported.iter().find(|r| r.name.as_str() == *w) {
            Some(r) => workload(r),
            None => WorkloadFacts {
                name: (*w).to_owned(),
                phase: Phase::Pending.as_str(),
                ready: false,
                health: health_label(Health::None),
                healthy: false,
                restarts: 0,
                containers: Vec::new(),
            },
        })
        .collect();
    out.extend(
        reported
            .iter()
            .filter(|r| !wanted.contains(&r.name.as_str()))
            .map(workload),
    );
    out
}

fn workload(r: &WorkloadStatus) -> WorkloadFacts {
    let health = worst_health(r);
    WorkloadFacts {
        name: r.name.to_string(),
        phase: r.phase.as_str(),
        ready: r.is_ready(),
        health: health_label(health),
        healthy: is_healthy(r.phase, health),
        restarts: r.restarts,
        containers: r
            .containers
            .iter()
            .map(|c| (c.name.to_string(), c.restarts))
            .collect(),
    }
}

/// The `health` label of a verdict, spelled as the JSON API and `describe` spell it
/// (`None`, `Starting`, `Healthy`, `Unhealthy`: serde's names, like the `phase` labels).
pub fn health_label(h: Health) -> &'static str {
    match h {
        Health::None => "None",
        Health::Starting => "Starting",
        Health::Healthy => "Healthy",
        Health::Unhealthy => "Unhealthy",
    }
}

/// `drover_workload_healthy`: running, and the worst verdict is `Healthy` or `None`. A
/// container without probes counts as healthy while it runs, as Kubernetes counts a
/// container without probes as ready; `Starting` (probes not decided yet) does not.
pub fn is_healthy(phase: Phase, worst: Health) -> bool {
    phase == Phase::Running && matches!(worst, Health::Healthy | Health::None)
}

/// Unhealthy over starting over healthy over none (no probe anywhere).
fn worst_health(r: &WorkloadStatus) -> Health {
    let rank = |h: Health| match h {
        Health::None => 0,
        Health::Healthy => 1,
        Health::Starting => 2,
        Health::Unhealthy => 3,
    };
    r.containers
        .iter()
        .map(|c| c.health)
        .max_by_key(|h| rank(*h))
        .unwrap_or(Health::None)
}

fn deployment(name: &str, i: &Inputs) -> DeploymentFacts {
    let placed = i.placement.get(name);
    let ready = placed.map_or(0, |devices| {
        devices
            .iter()
            .filter(|d| {
                reported(i.statuses.get(*d))
                    .iter()
                    .any(|w| w.name.as_str() == name && w.is_ready())
            })
            .count()
    });
    let state = i.rollouts.get(name);
    DeploymentFacts {
        name: name.to_owned(),
        revision: state.map_or(0, |s| s.revision),
        devices: placed.map_or(0, BTreeSet::len),
        ready,
        rollout: state.and_then(|s| s.rollout.as_ref()).map(|r| {
            let (updated, healthy, failed) = r.counts();
            RolloutFacts {
                to: r.to,
                updated,
                healthy,
                failed,
                paused: r.phase == RolloutPhase::Paused,
                rolled_back: matches!(r.phase, RolloutPhase::RolledBack { .. }),
                active: matches!(r.phase, RolloutPhase::Progressing | RolloutPhase::Paused),
            }
        }),
    }
}
