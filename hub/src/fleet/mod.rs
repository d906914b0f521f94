//! Fleet logic of the hub: fleet manifests, label selectors, placement of Deployments on
//! devices, and the fleet planner (`plan(snapshot, now) -> FleetPlan`).
//!
//! Everything here is pure and deterministic: no IO, no clocks, no async, no storage. The
//! server reads files and its database, calls these functions and publishes the result.

pub mod config_object;
pub mod manifest;
pub mod pin;
pub mod placement;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod rollout;
pub mod selector;
pub mod snapshot;
pub mod source;
mod strategy;

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod tests;

pub use config_object::ConfigObject;
pub use manifest::{
    Deployment, DeviceObject, Object, Placement, RESERVED_DEVICE_PREFIX, parse_objects, parse_set,
};
pub use pin::pin_hub_images;
pub use placement::{
    Assignments, DeviceInfo, PlacementWarning, desired_by_device, memory_of, place,
};
pub use plan::{DeviceChange, FleetPlan, PlanEvent, WorkloadDiff, diff_workloads, plan};
pub use selector::{Operator, Requirement, Selector, SelectorError, parse_label};
pub use snapshot::{DesiredEntry, DeviceEntry, FleetSnapshot, Reported, RevisionState};
pub use source::{Position, Positions};
