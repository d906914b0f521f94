//! Drover hub: fleet manifests in, signed desired state out, status back.
//!
//! `fleet` is the pure fleet logic (manifests, selectors, placement); `controller` applies
//! changes through the `store` and queues signed desired states for `mqtt`; `api` and
//! `cli` are the two ends of the HTTP API; `broker` is the embedded rumqttd; `registry`
//! stores imported images and serves them to devices (OCI distribution API); `metrics`
//! answers Prometheus scrapes; `web` is the read-only dashboard and the access rule of
//! every read; `serve` assembles the server.

pub mod api;
pub mod broker;
pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub mod controller;
pub mod enroll;
pub mod events;
pub mod fleet;
pub mod keys;
pub mod metrics;
pub mod mqtt;
pub mod ratelimit;
pub mod registry;
pub mod secrets;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod views;
pub mod web;

/// Unix time in milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
