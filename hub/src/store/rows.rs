//! Typed rows of the fleet store: what goes in and comes out, decoded once at the
//! boundary. Event reasons and object kinds are enums, stored by their `as_str` names.

use std::collections::BTreeMap;

use drover_protocol::DeviceStatus;

use crate::fleet::Deployment;

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub credential: String,
    pub created_ms: u64,
}

/// A dashboard client: a broker login that is not a device (`client add`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRow {
    pub name: String,
    pub credential: String,
    /// Topic filters it may publish to (for brokers with ACLs); empty: read-only.
    pub publish: Vec<String>,
    /// Topic filters it may read besides the hub's JSON mirrors and discovery messages.
    pub subscribe: Vec<String>,
    pub created_ms: u64,
}

/// A stored Deployment and the files it was applied from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentRow {
    pub deployment: Deployment,
    pub source: String,
    pub updated_ms: u64,
}

/// A device's current desired state as stored: `workloads` is the canonical encoding
/// (the `DesiredState` with generation 0) the controller compares, `payload` the signed
/// MQTT message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRow {
    pub generation: u64,
    pub workloads: Vec<u8>,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct StatusRow {
    pub status: Option<DeviceStatus>,
    pub last_seen_ms: u64,
    /// Last presence message: `Some(true)` online, `Some(false)` offline, `None` never seen.
    pub presence: Option<bool>,
}

/// The kind of object an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Device,
    Deployment,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Device => "device",
            ObjectKind::Deployment => "deployment",
        }
    }
}

/// Why an event was recorded (Kubernetes' event `reason`); the message says the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum EventReason {
    Registered,
    LabelsChanged,
    Online,
    Offline,
    ReportingStatus,
    Rejected,
    DesiredChanged,
    Created,
    Configured,
    Deleted,
    Placed,
    Unplaced,
    /// A Deployment's template changed: a new revision.
    Revision,
    RolloutStarted,
    /// A batch of devices (or the canary) got the new revision.
    RolloutBatch,
    DeviceHealthy,
    DeviceFailed,
    RolloutPaused,
    RolloutResumed,
    RolloutComplete,
    RolledBack,
    /// A row written by an older hub (no reason column then).
    Unknown,
}

impl EventReason {
    const ALL: [EventReason; 22] = [
        EventReason::Registered,
        EventReason::LabelsChanged,
        EventReason::Online,
        EventReason::Offline,
        EventReason::ReportingStatus,
        EventReason::Rejected,
        EventReason::DesiredChanged,
        EventReason::Created,
        EventReason::Configured,
        EventReason::Deleted,
        EventReason::Placed,
        EventReason::Unplaced,
        EventReason::Revision,
        EventReason::RolloutStarted,
        EventReason::RolloutBatch,
        EventReason::DeviceHealthy,
        EventReason::DeviceFailed,
        EventReason::RolloutPaused,
        EventReason::RolloutResumed,
        EventReason::RolloutComplete,
        EventReason::RolledBack,
        EventReason::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::Registered => "Registered",
            EventReason::LabelsChanged => "LabelsChanged",
            EventReason::Online => "Online",
            EventReason::Offline => "Offline",
            EventReason::ReportingStatus => "ReportingStatus",
            EventReason::Rejected => "Rejected",
            EventReason::DesiredChanged => "DesiredChanged",
            EventReason::Created => "Created",
            EventReason::Configured => "Configured",
            EventReason::Deleted => "Deleted",
            EventReason::Placed => "Placed",
            EventReason::Unplaced => "Unplaced",
            EventReason::Revision => "Revision",
            EventReason::RolloutStarted => "RolloutStarted",
            EventReason::RolloutBatch => "RolloutBatch",
            EventReason::DeviceHealthy => "DeviceHealthy",
            EventReason::DeviceFailed => "DeviceFailed",
            EventReason::RolloutPaused => "RolloutPaused",
            EventReason::RolloutResumed => "RolloutResumed",
            EventReason::RolloutComplete => "RolloutComplete",
            EventReason::RolledBack => "RolledBack",
            EventReason::Unknown => "Unknown",
        }
    }

    pub fn parse(s: &str) -> EventReason {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .unwrap_or(EventReason::Unknown)
    }
}

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    pub ts_ms: u64,
    pub object: ObjectKind,
    pub name: String,
    pub reason: EventReason,
    pub message: String,
}

impl Event {
    pub fn device(
        ts_ms: u64,
        name: &str,
        reason: EventReason,
        message: impl Into<String>,
    ) -> Event {
        Event {
            ts_ms,
            object: ObjectKind::Device,
            name: name.to_owned(),
            reason,
            message: message.into(),
        }
    }

    pub fn deployment(
        ts_ms: u64,
        name: &str,
        reason: EventReason,
        message: impl Into<String>,
    ) -> Event {
        Event {
            object: ObjectKind::Deployment,
            ..Event::device(ts_ms, name, reason, message)
        }
    }
}

/// One numbered revision of a Deployment's template: the pinned spec, the image
/// references as they were written (for `rollout restart` to pin `hub:` tags again), and
/// the files applied (the change cause).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionRow {
    pub deployment: String,
    pub revision: u64,
    pub template: drover_protocol::WorkloadSpec,
    /// Container name → image as written in the manifest (before pinning).
    pub written_images: BTreeMap<String, String>,
    pub source: String,
    pub created_ms: u64,
}

/// A Deployment's current revision and its rollout, if one was started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutStateRow {
    /// 0 only for a Deployment stored by a hub without revisions (migrated at open).
    pub revision: u64,
    pub rollout: Option<crate::fleet::rollout::Rollout>,
}
