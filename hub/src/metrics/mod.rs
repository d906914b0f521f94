//! `GET /metrics`: the fleet, the devices' telemetry and the hub's own counters in the
//! Prometheus text exposition format (0.0.4), encoded with `prometheus-client`.
//!
//! Nothing is mirrored into long-lived metric objects: each scrape reads the current
//! state — every kind of store row with ONE query (`fleet`), the telemetry cache's views,
//! and the very counters `get stats` shows (`stats`) — into owned facts, releases the
//! read lock, and encodes them through a per-scrape [`Registry`] whose collector writes
//! the families (`families`, `stats`, `usage`).
//! The only long-lived metric is the controller's apply-duration histogram, which lives
//! in [`controller::Metrics`](crate::controller::Metrics).
//!
//! Names follow Prometheus conventions: `drover_` prefix, base units (`_bytes`,
//! `_seconds`, `_ratio`), `_total` only on counters; labels `device`, `workload`,
//! `container`, `deployment`, `reason`. This module must never write to the store, never
//! hold the read lock while encoding, and never run SQL per device.

pub mod encoding;
mod families;
mod fleet;
mod stats;
mod usage;

pub mod sample;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, prometheus_text};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::ApiState;
use crate::controller::{ControllerError, ReadSide};
use crate::telemetry::{Mirrors, TelemetryCache, view::DeviceTelemetryView};

pub use fleet::{
    DeploymentFacts, DeviceFacts, FleetFacts, RolloutFacts, WorkloadFacts, health_label, is_healthy,
};
pub use stats::stat_series;

/// `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot read the fleet for /metrics: {0}")]
    Read(#[from] ControllerError),
    #[error("cannot encode /metrics")]
    Encode(#[from] std::fmt::Error),
    #[error("the /metrics task failed: {0}")]
    Task(String),
}

/// Wall time of the controller's `apply` and `delete` commands (not dry runs), seconds:
/// 1 ms to ~24 s in steps of 2.5×.
pub fn apply_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 12))
}

/// Everything one scrape encodes, read at one moment.
#[derive(Debug)]
struct Scrape {
    fleet: FleetFacts,
    telemetry: Vec<DeviceTelemetryView>,
    /// What `get stats` shows.
    stats: BTreeMap<String, u64>,
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        families::fleet(&mut enc, &self.fleet)?;
        families::rollouts(&mut enc, &self.fleet.deployments)?;
        stats::hub(&mut enc, &self.stats)?;
        usage::devices(&mut enc, &self.telemetry)?;
        usage::containers(&mut enc, &self.telemetry)
    }
}

/// The `/metrics` body at `now_ms`. Takes `read`'s lock only while querying the store.
pub fn render(
    read: &Mutex<ReadSide>,
    telemetry: &TelemetryCache,
    mirrors: &Mirrors,
    now_ms: u64,
) -> Result<String, MetricsError> {
    let (fleet, mut stats, metrics) = {
        let side = read.lock().unwrap_or_else(|p| p.into_inner());
        let fleet = fleet::collect(&side, now_ms)?;
        (fleet, side.stats()?, side.metrics().clone())
    };
    crate::telemetry::add_stats(&mut stats, &telemetry.counters(), mirrors.dropped());
    // An offline device's last sample is not its usage now: its series go stale, as a
    // vanished target's do.
    let online: std::collections::HashSet<&str> = fleet
        .devices
        .iter()
        .filter(|d| d.online)
        .map(|d| d.name.as_str())
        .collect();
    let telemetry = telemetry
        .all()
        .into_iter()
        .filter(|v| online.contains(v.device.as_str()))
        .collect();
    let scrape = Scrape {
        fleet,
        telemetry,
        stats,
    };
    // About 2.5 KiB per device with telemetry: size once instead of doubling up to it.
    let mut out = String::with_capacity(4096 + scrape.fleet.devices.len() * 2560);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    registry.register(
        "drover_hub_apply_duration_seconds",
        "Wall time of the controller's apply and delete commands (dry runs excluded)",
        metrics.apply_seconds.clone(),
    );
    prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// `GET /metrics`: gzip-compressed when the scraper accepts it (Prometheus does; at
/// 10,000 devices the text is about 14 MB).
pub async fn scrape(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    let read: Arc<Mutex<ReadSide>> = st.read.clone();
    let telemetry = st.telemetry.clone();
    let mirrors = st.mirrors.clone();
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(encoding::accepts_gzip);
    let started = std::time::Instant::now();
    let res = tokio::task::spawn_blocking(move || {
        let text = render(&read, &telemetry, &mirrors, crate::now_ms())?;
        let len = text.len();
        let body = if gzip {
            encoding::gzip(text.as_bytes()).map_err(|e| MetricsError::Task(e.to_string()))?
        } else {
            text.into_bytes()
        };
        Ok((len, body))
    })
    .await
    .unwrap_or_else(|e| Err(MetricsError::Task(e.to_string())));
    match res {
        Ok((text_bytes, body)) => {
            tracing::debug!(
                text_bytes,
                sent_bytes = body.len(),
                ms = started.elapsed().as_millis() as u64,
                "metrics scraped"
            );
            let mut res = ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response();
            if gzip {
                let h = res.headers_mut();
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            }
            res
        }
        Err(e) => {
            tracing::error!("{e}");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}
