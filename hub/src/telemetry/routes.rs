//! The telemetry routes of the management API (loopback peers, like the rest of `/v1`):
//! - `GET /v1/telemetry` → `[DeviceTelemetryView]`, the latest sample of every device
//! - `GET /v1/telemetry/devices/{name}` → `DeviceTelemetryView` (404 before its first sample)
//! - `GET /v1/telemetry/devices/{name}/history?minutes=N` → `DeviceHistory`: one point
//!   per minute over the last N minutes (default 60; 1 to 7 days, a 400 beyond; at most the kept
//!   history), the latest sample last; a `minutes` that is no whole number is a 400 JSON
//!   error (`ApiQuery`)
//!
//! Handlers only read the cache and the history; they never block the runtime on SQLite.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::api::{ApiQuery, ApiState, QueryHelp};
use crate::views::ErrorBody;

/// Longest history window a request may ask for: 7 days.
const MAX_MINUTES: u64 = 7 * 24 * 60;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/v1/telemetry", get(all))
        .route("/v1/telemetry/devices/{name}", get(latest))
        .route("/v1/telemetry/devices/{name}/history", get(history))
}

async fn all(State(st): State<ApiState>) -> impl IntoResponse {
    Json(st.telemetry.all())
}

async fn latest(State(st): State<ApiState>, Path(name): Path<String>) -> Response {
    match st.telemetry.latest(&name) {
        Some(v) => Json(v).into_response(),
        None => not_found(&name),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    minutes: Option<u64>,
}

impl QueryHelp for HistoryQuery {
    const EXPECTED: &'static str =
        "minutes=N (optional: whole minutes, 1 to 10080 = 7 days, default 60)";
}

async fn history(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Response {
    let minutes = q.minutes.unwrap_or(60);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        let msg = format!("minutes: expected 1 to {MAX_MINUTES} (7 days), got {minutes}");
        return error(StatusCode::BAD_REQUEST, msg);
    }
    let latest = st.telemetry.latest_sample(&name);
    let reader = st.history.clone();
    let now_s = crate::now_ms() / 1000;
    let device = name.clone();
    let result = tokio::task::spawn_blocking(move || {
        let r = reader.lock().unwrap_or_else(|e| e.into_inner());
        r.device(&device, minutes, now_s, latest.as_ref())
    })
    .await;
    match result {
        Ok(Ok(h)) if h.points.is_empty() => not_found(&name),
        Ok(Ok(h)) => Json(h).into_response(),
        Ok(Err(e)) => {
            tracing::error!("cannot read telemetry history: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn not_found(device: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no telemetry from device {device:?} yet (is it registered and online, with telemetry.interval > 0?)"
        ),
    )
}

fn error(code: StatusCode, error: String) -> Response {
    (code, Json(ErrorBody { error })).into_response()
}
