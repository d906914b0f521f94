//! What the HTTP API returns and the CLI prints: plain serde types, the same on both sides
//! of the wire. This module must never compute anything beyond formatting helpers.

use std::collections::BTreeMap;

use drover_protocol::{Capacity, WorkloadSpec, WorkloadStatus};
use serde::{Deserialize, Serialize};

use crate::fleet::{Deployment, Operator, Selector};

/// One manifest file sent by `apply` / `delete`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileText {
    pub file: String,
    pub text: String,
}

/// What `apply` / `delete` did (or, with `dry_run`, would do): one line per object
/// (`deployment/web created`) and each device whose desired state changes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChangeReport {
    pub results: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// How many devices get a new desired state.
    #[serde(default)]
    pub changed_devices: usize,
    /// With `dry_run`: each device whose workloads would change, by name.
    #[serde(default)]
    pub devices: Vec<DeviceChangeView>,
    /// Rollouts the apply started (`apply --wait` follows them).
    #[serde(default)]
    pub rollouts: Vec<RolloutRef>,
    /// Applied Deployments whose template did not change, with the last rollout of their
    /// current revision when it is in progress or was rolled back (`apply --wait` waits
    /// for the first and fails on the second: the applied spec runs nowhere).
    #[serde(default)]
    pub unchanged_rollouts: Vec<RolloutRef>,
}

/// A rollout of a Deployment from one revision to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRef {
    pub deployment: String,
    pub from: u64,
    pub to: u64,
}

/// `POST /v1/deployments/{name}/rollout/{action}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutAction {
    /// No new batch starts until `resume`.
    Pause,
    Resume,
    /// A rollout in progress: every device back to its `from` revision now. Otherwise the
    /// revision before the stable one becomes a new revision, rolled out like an apply.
    Undo,
    /// `hub:` tags pinned again, the same spec rolled out as a new revision.
    Restart,
}

/// What a rollout command did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutAnswer {
    pub message: String,
    pub changed_devices: usize,
    /// The rollout it changed or started.
    pub rollout: Option<RolloutRef>,
}

/// How one device's desired workloads change.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeviceChangeView {
    pub device: String,
    /// The generation it gets (or would get).
    pub generation: u64,
    #[serde(flatten)]
    pub diff: crate::fleet::WorkloadDiff,
}

/// `POST /v1/apply` and `POST /v1/delete` with `?dry_run=true`: plan, report, change nothing.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct DryRunQuery {
    #[serde(default)]
    pub dry_run: bool,
}

/// `device import`'s answer: every registered device with what its agent needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevicesImported {
    pub registered: usize,
    pub devices: Vec<DeviceAddedAnswer>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddDeviceRequest {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Answer to `device add`: what the agent needs, and the config snippet holding it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceAdded {
    pub name: String,
    pub credential: String,
    pub public_key: String,
    pub broker: String,
    pub config: String,
}

/// `device add`'s answer as the API sends it: the controller's answer (whose `config`
/// snippet then also holds `registry = "..."` in `[hub]`) plus the registry URL.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceAddedAnswer {
    #[serde(flatten)]
    pub device: DeviceAdded,
    /// `http://host:port` of the hub's image registry, as devices should reach it.
    #[serde(default)]
    pub registry: String,
}

/// `POST /v1/images/import`: an OCI image layout folder on the hub's machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportRequest {
    /// Path of the layout folder, as the hub process sees it.
    pub path: String,
    /// Repository name; default the layout folder's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Tag; default each `org.opencontainers.image.ref.name` of the layout's index.json.
    #[serde(default)]
    pub tag: Option<String>,
}

/// What an import added.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportReport {
    pub images: Vec<ImageView>,
    /// Blobs copied into the store (the others were there already).
    pub blobs_copied: u64,
    pub bytes_copied: u64,
}

/// One tag of `image ls`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageView {
    pub name: String,
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    /// `os/arch[/variant]` of each image behind the tag.
    pub platforms: Vec<String>,
    /// Bytes of every distinct blob the tag reaches.
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadBrief {
    pub name: String,
    /// `WorkloadStatus::display_state`.
    pub phase: String,
    pub restarts: u32,
}

/// One row of `get devices`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub online: bool,
    /// Unix ms of the last accepted status; 0 = never.
    pub last_seen_ms: u64,
    pub desired_generation: u64,
    pub observed_generation: u64,
    pub in_sync: bool,
    /// Desired workloads the device reports running with every container ready.
    pub ready: u32,
    /// Desired workloads.
    pub total: u32,
    pub workloads: Vec<WorkloadBrief>,
    /// When the device was revoked (`device revoke`); it is kept for audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
}

/// `describe device`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceDetail {
    pub device: DeviceView,
    /// Last presence message: online / offline / none seen.
    pub presence: Option<bool>,
    pub capacity: Option<Capacity>,
    pub desired: Vec<WorkloadSpec>,
    pub reported: Vec<WorkloadStatus>,
    pub events: Vec<EventView>,
}

/// One row of `get deployments`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeploymentView {
    pub name: String,
    pub selector: String,
    pub replicas: Option<u32>,
    pub placement: String,
    pub devices: Vec<String>,
    /// Placed devices that report the workload running with every container ready.
    pub ready: u32,
    pub total: u32,
}

/// The Deployment's workload as one device reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlacedView {
    pub device: String,
    pub online: bool,
    pub in_sync: bool,
    /// `WorkloadStatus::display_state`: the phase, or `CrashLoopBackOff`, `Waiting`, …
    pub phase: String,
    /// Running with every container ready.
    pub ready: bool,
    pub restarts: u32,
    pub last_error: Option<String>,
    /// `WorkloadReason::describe`, when the device gave one.
    pub reason: Option<String>,
}

/// `describe deployment`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeploymentDetail {
    pub deployment: DeploymentView,
    pub spec: Deployment,
    pub placed: Vec<PlacedView>,
    pub warnings: Vec<String>,
    pub events: Vec<EventView>,
    /// The revision of its template.
    #[serde(default)]
    pub revision: u64,
    /// Its last rollout.
    #[serde(default)]
    pub rollout: Option<RolloutView>,
}

/// Where a rollout stands, with counts for `rollout status` and `apply --wait`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutView {
    pub from: u64,
    pub to: u64,
    /// `Progressing`, `Paused`, `Complete` or `RolledBack`.
    pub phase: String,
    /// Why it was rolled back.
    pub reason: Option<String>,
    /// The batch in progress (0: the canary, or the first batch without one).
    pub batch: u32,
    pub started_ms: u64,
    /// Devices the Deployment is placed on.
    pub total: usize,
    /// Devices given the new revision, and of those healthy and failed.
    pub updated: usize,
    pub healthy: usize,
    pub failed: usize,
    /// Placed devices not given the new revision yet (offline ones among them).
    pub pending: usize,
}

/// `rollout status DEPLOYMENT`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutStatusView {
    pub deployment: String,
    pub revision: u64,
    /// `RollingUpdate (canary 1, batchSize 25%, …)` or `AllAtOnce`.
    pub strategy: String,
    /// The strategy is `RollingUpdate`: revisions after the first roll out.
    #[serde(default)]
    pub rolling_update: bool,
    pub rollout: Option<RolloutView>,
    pub devices: Vec<RolloutDeviceView>,
}

/// One device of `rollout status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutDeviceView {
    pub device: String,
    pub online: bool,
    /// The revision the hub gives it now.
    pub revision: u64,
    /// The revision it reports running (0: none reported).
    pub reported: u64,
    /// `Updating`, `Healthy`, `Failed`, `Pending` (not updated yet), `Stable`, and once
    /// the rollout is over `RolledBack` (sent back before failing) or `Updated` (complete
    /// without it judged).
    pub state: String,
    pub message: Option<String>,
}

/// One line of `rollout history DEPLOYMENT`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevisionView {
    pub revision: u64,
    pub created_ms: u64,
    /// Each container's pinned image.
    pub images: Vec<String>,
    /// What made it: the files applied, `rollout undo`, `rollout restart`.
    pub cause: String,
    /// The Deployment's current template is this revision.
    pub current: bool,
    /// What the devices do with it: `running` (what they run when no rollout moves them,
    /// or a rollout's `from`), `rolling out`, `rolled back`; `None` for older revisions.
    #[serde(default)]
    pub mark: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventView {
    pub ts_ms: u64,
    /// Why it was recorded (`Registered`, `DesiredChanged`, `Placed`, …).
    #[serde(default)]
    pub reason: String,
    pub message: String,
}

/// `{"error": "..."}`, the body of every failed API call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `role=sensor,zone in (a,b),!gpu` — kubectl's selector notation; `<all>` when empty.
pub fn selector_string(s: &Selector) -> String {
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in &s.match_expressions {
        let values = r.values.join(",");
        parts.push(match r.operator {
            Operator::In => format!("{} in ({values})", r.key),
            Operator::NotIn => format!("{} notin ({values})", r.key),
            Operator::Exists => r.key.clone(),
            Operator::DoesNotExist => format!("!{}", r.key),
        });
    }
    if parts.is_empty() {
        "<all>".to_owned()
    } else {
        parts.join(",")
    }
}

/// `k=v,k2=v2`, or `<none>`.
pub fn labels_string(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "<none>".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
