//! The read-only web dashboard: its page and assets (embedded in the binary from
//! `hub/web/`, no build step), the live change stream `GET /v1/events` (`live`), and the
//! access rule shared with the API and `/metrics` (`access`).
//!
//! The page is a small client of the JSON API: it reads `/v1/devices`, `/v1/deployments`,
//! `/v1/telemetry` and friends (and a container's log, streamed from
//! `/v1/devices/{name}/logs/{workload}`), and re-reads what it shows when `/v1/events` says
//! something changed. This module must never serve a route that changes anything.

pub mod access;
pub mod live;
pub mod redact;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::api::{ApiQuery, ApiState, QueryHelp};

/// One embedded file of the dashboard.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../../web/index.html"),
};

/// Everything under `/assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        name: "util.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/util.js"),
    },
    Asset {
        name: "chart.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/chart.js"),
    },
    Asset {
        name: "fleet.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/fleet.js"),
    },
    Asset {
        name: "device.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/device.js"),
    },
    Asset {
        name: "logs.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/logs.js"),
    },
    Asset {
        name: "deployment.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/deployment.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../web/favicon.svg"),
    },
];

/// The asset called `name`, if there is one (names only, never paths).
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// Scripts and styles only from the hub itself, nothing inline, no framing: a device
/// name or a log line shown on the page can never run as code.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

/// `GET /` (the page; its pages are `#/…` routes), `GET /assets/{name}`, and
/// `GET /v1/events`. The caller puts them behind [`access::api_access`].
pub fn router(state: ApiState) -> Router {
    let live = Router::new()
        .route("/v1/events", get(events))
        .with_state(state);
    pages().merge(live)
}

/// The page and its assets.
fn pages() -> Router {
    Router::new()
        .route("/", get(|| async { serve(&INDEX) }))
        .route("/assets/{name}", get(asset_route))
}

async fn asset_route(Path(name): Path<String>) -> Response {
    match asset(&name) {
        Some(a) => serve(a),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

fn serve(a: &'static Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, a.content_type),
            // Small files; a hub upgrade must never leave an old script running.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        a.body,
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Only this device's changes (and fleet-wide ones).
    device: Option<String>,
}

impl QueryHelp for EventsQuery {
    const EXPECTED: &'static str = "device=NAME (optional: only that device's changes)";
}

/// Live event streams open at once, at most: each holds a connection and a reader of the
/// event channel; a browser tab left open is one. Beyond it: 503, the page polls instead.
pub const MAX_EVENT_STREAMS: usize = 64;

async fn events(State(st): State<ApiState>, ApiQuery(q): ApiQuery<EventsQuery>) -> Response {
    if let Some(error) = stream_refusal(st.events.readers()) {
        tracing::warn!("live event stream refused: {error}");
        let body = axum::Json(crate::views::ErrorBody { error });
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    live::sse(st.events.subscribe(), q.device).into_response()
}

/// Why one more event stream is refused when `open` are open, if it is.
fn stream_refusal(open: usize) -> Option<String> {
    (open >= MAX_EVENT_STREAMS).then(|| {
        format!(
            "{open} live event streams are open, the most the hub serves ({MAX_EVENT_STREAMS}): \
             close some dashboard tabs, or reload later"
        )
    })
}

#[cfg(test)]
#[path = "web_tests.rs"]
mod tests;
