//! Telemetry on the hub: samples from every device are verified (credential MAC, rising
//! `seq`), kept in memory (latest per device, `cache`), folded into a bounded per-minute
//! history in SQLite (`history`), and republished as JSON for dashboards (`mirror`).
//!
//! It runs on a thread of its own, apart from the controller: 10,000 devices at the
//! default interval send 1,000 samples a second, and none of them may delay a change to
//! the fleet. This module must never block the MQTT loop (a full queue drops and counts).

pub mod cache;
pub mod view;

pub use cache::{TelemetryCache, TelemetryCounters};
