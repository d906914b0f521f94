//! The pure core of the agent: what should happen next, decided from the desired
//! workloads, what was observed on the device, and the time.
//!
//! Nothing here does IO, reads a clock or spawns anything: the daemon gathers an
//! [`Observed`] snapshot, calls [`plan`], and carries the actions out. That keeps every
//! decision (restart policies, back-off, replacement, removal) unit-testable.

pub mod backoff;
pub mod depends;
pub mod images;
pub mod observed;
pub mod plan;
pub mod reason;
pub mod rollback;
pub mod run_state;
pub mod sources;
pub mod status;

pub use observed::{
    ImageState, Observed, ObservedContainer, ObservedWorkload, RunState, StartErrorKind,
};
pub use plan::{Action, Plan, plan};
