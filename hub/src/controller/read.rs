//! Read side of the hub: builds the API's views from the store through its own
//! read-only connection, so that reads never wait for the controller thread (WAL lets
//! them run beside its writes). Never writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use drover_protocol::compat::decode_any;
use drover_protocol::{DesiredState, WorkloadSpec, WorkloadStatus};

use super::read_rollout::rollout_view;
use super::{ControllerError, Metrics, RejectReason, Settings, SharedWarnings};
use crate::fleet::{Deployment, Placement};
use crate::store::{DesiredRow, ObjectKind, StatusRow, Store};
use crate::views::{
    DeploymentDetail, DeploymentView, DeviceDetail, DeviceView, EventView, PlacedView,
    WorkloadBrief, selector_string,
};

/// Events shown by `describe`.
const DESCRIBE_EVENTS: u32 = 20;

/// The API's view of the fleet.
pub struct ReadSide {
    pub(super) store: Store,
    pub(super) settings: Settings,
    warnings: SharedWarnings,
    metrics: Arc<Metrics>,
}

/// Online: the last presence message did not say offline, and a status arrived within
/// `offline_after` (presence alone is not enough: a broker may replay a stale one).
pub fn is_online(row: Option<&StatusRow>, settings: &Settings, now_ms: u64) -> bool {
    row.is_some_and(|r| {
        r.presence != Some(false)
            && r.last_seen_ms > 0
            && now_ms.saturating_sub(r.last_seen_ms) <= settings.offline_after_ms
    })
}

pub(super) fn load_deployments(s: &Store) -> Result<Vec<Deployment>, ControllerError> {
    Ok(s.deployments()?.into_iter().map(|r| r.deployment).collect())
}

impl ReadSide {
    /// `store` must be a read connection ([`Store::open_read`]); `warnings` and `metrics`
    /// are the controller's.
    pub fn new(
        store: Store,
        settings: Settings,
        warnings: SharedWarnings,
        metrics: Arc<Metrics>,
    ) -> ReadSide {
        ReadSide {
            store,
            settings,
            warnings,
            metrics,
        }
    }

    /// The read connection, for `/metrics` (which reads every kind of row once a scrape).
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The controller's in-memory counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn devices(&self, now_ms: u64) -> Result<Vec<DeviceView>, ControllerError> {
        let statuses = self.store.statuses()?;
        let desired: BTreeMap<String, DesiredRow> = self.store.all_desired()?.into_iter().collect();
        let revoked = self.store.revoked_devices()?;
        Ok(self
            .store
            .devices()?
            .into_iter()
            .map(|d| {
                let st = statuses.get(&d.name);
                let mut v =
                    self.device_view(d.name.clone(), d.labels, st, desired.get(&d.name), now_ms);
                v.revoked_ms = revoked.get(&d.name).copied();
                v
            })
            .collect())
    }

    pub fn device(&self, name: &str, now_ms: u64) -> Result<DeviceDetail, ControllerError> {
        let d = self
            .store
            .device(name)?
            .ok_or_else(|| not_found("device", name))?;
        let st = self.store.status(name)?;
        let desired = self.store.desired(name)?;
        let mut view = self.device_view(d.name, d.labels, st.as_ref(), desired.as_ref(), now_ms);
        view.revoked_ms = self.store.device_revoked(name)?;
        let status = st.as_ref().and_then(|r| r.status.as_ref());
        Ok(DeviceDetail {
            device: view,
            presence: st.as_ref().and_then(|r| r.presence),
            capacity: status.map(|s| s.capacity),
            desired: desired.as_ref().map(workloads_of).unwrap_or_default(),
            reported: status.map(|s| s.workloads.clone()).unwrap_or_default(),
            events: self.events(ObjectKind::Device, name)?,
        })
    }

    pub fn deployments(&self, now_ms: u64) -> Result<Vec<DeploymentView>, ControllerError> {
        let statuses = self.store.statuses()?;
        let placement = self.store.placement()?;
        Ok(load_deployments(&self.store)?
            .iter()
            .map(|d| {
                let placed = self.placed(d, placement.get(d.name.as_str()), &statuses, now_ms);
                deployment_view(d, &placed)
            })
            .collect())
    }

    pub fn deployment(&self, name: &str, now_ms: u64) -> Result<DeploymentDetail, ControllerError> {
        let d = load_deployments(&self.store)?
            .into_iter()
            .find(|d| d.name.as_str() == name)
            .ok_or_else(|| not_found("deployment", name))?;
        let statuses = self.store.statuses()?;
        let placement = self.store.placement()?;
        let placed = self.placed(&d, placement.get(name), &statuses, now_ms);
        let state = self
            .store
            .rollout_states()?
            .remove(name)
            .unwrap_or_default();
        let placed_names: Vec<String> = placed.iter().map(|p| p.device.clone()).collect();
        Ok(DeploymentDetail {
            deployment: deployment_view(&d, &placed),
            warnings: self
                .warnings
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned()
                .unwrap_or_default(),
            events: self.events(ObjectKind::Deployment, name)?,
            revision: state.revision,
            rollout: state
                .rollout
                .as_ref()
                .map(|r| rollout_view(r, &placed_names)),
            placed,
            spec: d,
        })
    }

    /// Every counter, with each known rejection reason present (0 when never seen).
    pub fn stats(&self) -> Result<BTreeMap<String, u64>, ControllerError> {
        let mut out = self.store.counters()?;
        for r in RejectReason::ALL {
            out.entry(format!("status_rejected_{}", r.as_str()))
                .or_insert(0);
        }
        for r in [RejectReason::UnknownDevice, RejectReason::Malformed] {
            out.entry(format!("presence_rejected_{}", r.as_str()))
                .or_insert(0);
        }
        for r in crate::enroll::check::TokenRefusal::ALL {
            out.entry(format!("join_refused_{}", r.as_str()))
                .or_insert(0);
        }
        for name in ["status_accepted", "desired_generations"] {
            out.entry(name.to_owned()).or_insert(0);
        }
        let m = &self.metrics;
        out.insert("controller_transactions".to_owned(), m.get(&m.transactions));
        out.insert(
            "controller_message_batches".to_owned(),
            m.get(&m.message_batches),
        );
        out.insert("controller_messages".to_owned(), m.get(&m.messages));
        Ok(out)
    }

    fn events(&self, kind: ObjectKind, name: &str) -> Result<Vec<EventView>, ControllerError> {
        Ok(self
            .store
            .events(kind, name, DESCRIBE_EVENTS)?
            .into_iter()
            .map(|e| EventView {
                ts_ms: e.ts_ms,
                reason: e.reason.as_str().to_owned(),
                message: e.message,
            })
            .collect())
    }

    fn device_view(
        &self,
        name: String,
        labels: BTreeMap<String, String>,
        st: Option<&StatusRow>,
        desired: Option<&DesiredRow>,
        now_ms: u64,
    ) -> DeviceView {
        let status = st.and_then(|r| r.status.as_ref());
        let wanted = desired.map(workloads_of).unwrap_or_default();
        let reported: &[WorkloadStatus] = status.map_or(&[], |s| &s.workloads);
        let desired_generation = desired.map_or(0, |d| d.generation);
        let observed_generation = status.map_or(0, |s| s.observed_generation);
        DeviceView {
            name,
            labels,
            online: is_online(st, &self.settings, now_ms),
            last_seen_ms: st.map_or(0, |r| r.last_seen_ms),
            desired_generation,
            observed_generation,
            in_sync: desired_generation == observed_generation,
            ready: wanted.iter().filter(|w| ready(reported, w)).count() as u32,
            total: wanted.len() as u32,
            workloads: briefs(&wanted, reported),
            revoked_ms: None,
        }
    }

    fn placed(
        &self,
        d: &Deployment,
        devices: Option<&std::collections::BTreeSet<String>>,
        statuses: &BTreeMap<String, StatusRow>,
        now_ms: u64,
    ) -> Vec<PlacedView> {
        let Some(devices) = devices else {
            return Vec::new();
        };
        devices
            .iter()
            .map(|dev| {
                let st = statuses.get(dev);
                let status = st.and_then(|r| r.status.as_ref());
                let desired_gen = self
                    .store
                    .desired(dev)
                    .ok()
                    .flatten()
                    .map_or(0, |r| r.generation);
                let w = status.and_then(|s| s.workloads.iter().find(|w| w.name == d.name));
                PlacedView {
                    device: dev.clone(),
                    online: is_online(st, &self.settings, now_ms),
                    in_sync: status.is_some_and(|s| s.observed_generation == desired_gen),
                    phase: w.map_or("Pending".to_owned(), WorkloadStatus::display_state),
                    ready: w.is_some_and(WorkloadStatus::is_ready),
                    restarts: w.map_or(0, |w| w.restarts),
                    last_error: w.and_then(|w| w.last_error.clone()),
                    reason: w
                        .and_then(|w| w.reason.as_ref())
                        .map(|r| r.describe(now_ms)),
                }
            })
            .collect()
    }
}

pub(super) fn not_found(kind: &'static str, name: &str) -> ControllerError {
    ControllerError::NotFound {
        kind,
        name: name.to_owned(),
    }
}

fn workloads_of(row: &DesiredRow) -> Vec<WorkloadSpec> {
    decode_any::<DesiredState>(&row.workloads)
        .map(|d| d.workloads)
        .unwrap_or_default()
}

/// Reported running with every container ready.
fn ready(reported: &[WorkloadStatus], w: &WorkloadSpec) -> bool {
    reported.iter().any(|r| r.name == w.name && r.is_ready())
}

/// Desired workloads with their reported phase (`Pending` when not reported), then
/// reported workloads that are no longer desired.
fn briefs(wanted: &[WorkloadSpec], reported: &[WorkloadStatus]) -> Vec<WorkloadBrief> {
    let mut out: Vec<WorkloadBrief> = wanted
        .iter()
        .map(|w| {
            let r = reported.iter().find(|r| r.name == w.name);
            WorkloadBrief {
                name: w.name.to_string(),
                phase: r.map_or("Pending".to_owned(), WorkloadStatus::display_state),
                restarts: r.map_or(0, |r| r.restarts),
            }
        })
        .collect();
    for r in reported {
        if !wanted.iter().any(|w| w.name == r.name) {
            out.push(WorkloadBrief {
                name: r.name.to_string(),
                phase: r.display_state(),
                restarts: r.restarts,
            });
        }
    }
    out
}

fn deployment_view(d: &Deployment, placed: &[PlacedView]) -> DeploymentView {
    DeploymentView {
        name: d.name.to_string(),
        selector: selector_string(&d.selector),
        replicas: d.replicas,
        placement: match d.placement {
            Placement::Spread => "spread",
            Placement::Binpack => "binpack",
        }
        .to_owned(),
        devices: placed.iter().map(|p| p.device.clone()).collect(),
        ready: placed.iter().filter(|p| p.ready).count() as u32,
        total: placed.len() as u32,
    }
}
