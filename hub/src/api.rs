//! The HTTP JSON API (axum). Each route parses its request, sends a command to the
//! controller thread (changes) or runs a view on the read connection (reads), and
//! serializes the answer; no logic lives here and no handler waits on a lock held
//! across planning. Errors are `{"error": "..."}` with a status
//! code saying whose fault it was; query strings go through [`ApiQuery`] so that a bad
//! one gets the same shape.
//!
//! Routes (all under `/v1`; every one needs a token, from loopback too — the admin token
//! `D/api.token` for changes, which are also accepted only from loopback, or a read
//! token `D/read.token` for GETs; 401/403 otherwise, see `web::access` and `token` — so
//! that `api.listen = "0.0.0.0:…"` exposes just the device registry and, with the read
//! token, the read-only dashboard `web`):
//! - `POST /apply`, `POST /delete`: body `[{"file": ..., "text": ...}]` → `{"results": [...]}`
//!   (`?dry_run=true`: plan and report the devices that would change, change nothing)
//! - `GET /devices`, `GET /devices/{name}`, `POST /devices` (`{"name", "labels"}`),
//!   `POST /devices/import` (`{"file", "text"}`: CSV or YAML, all or nothing)
//! - `GET /deployments`, `GET /deployments/{name}`, `GET /deployments/{name}/rollout`
//!   (`rollout status`), `GET /deployments/{name}/revisions` (`rollout history`),
//!   `POST /deployments/{name}/rollout/{pause|resume|undo|restart}`
//! - `GET /images`, `POST /images/import` (`{"path", "name"?, "tag"?}`: a layout folder
//!   read by the hub process, on the hub's machine)
//! - `GET /devices/{name}/logs/{workload}`, `POST /devices/{name}/restart/{workload}`
//!   (commands to a device: `commands::http`)
//! - `GET /stats`, `GET /healthz`
//! - `GET /telemetry`, `GET /telemetry/devices/{name}[/history]` (`telemetry::routes`)
//! - `GET /metrics` (not under `/v1`): Prometheus text exposition, see `metrics`
//! - `GET|POST /clients`, `DELETE /clients/{name}`, `GET /broker/mosquitto-acl`
//!   (`clients::routes`)
//!
//! The `/v2` image registry routes (device credentials, any peer) are `registry::router`.

mod query;
pub mod token;

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::broker::Credentials;
use crate::controller::{Command, ControllerError, Handle, ReadSide};
use crate::registry::{Registry, RegistryError, RegistryState};
use crate::views::{
    AddDeviceRequest, DeviceAdded, DeviceAddedAnswer, DevicesImported, DryRunQuery, ErrorBody,
    FileText, ImportRequest, RolloutAction,
};

pub(crate) use query::rejection_detail;
pub use query::{ApiQuery, QueryHelp};

/// Largest `/v1` request body accepted.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// What every management route needs: the controller's command channel for changes and
/// the read side for views.
#[derive(Clone)]
pub struct ApiState {
    pub controller: Handle,
    pub read: Arc<Mutex<ReadSide>>,
    /// `http://host:port` of the registry, as devices reach it (goes into config snippets).
    pub registry_url: String,
    /// The latest telemetry sample of every device (written by the telemetry thread).
    pub telemetry: crate::telemetry::TelemetryCache,
    /// The per-minute telemetry history (read-only connection).
    pub history: Arc<Mutex<crate::telemetry::HistoryReader>>,
    /// JSON mirrors (for their drop counter).
    pub mirrors: crate::telemetry::Mirrors,
    /// Fleet change notifications, for live views.
    pub events: crate::events::Events,
    /// `dashboards.home_assistant_prefix`, for broker ACL files.
    pub home_assistant_prefix: String,
    /// The hub's tokens: who may read and who may change (`web::access`).
    pub access: crate::web::access::ApiAccess,
    /// Commands to devices (`logs`, `restart`).
    pub commands: Arc<crate::commands::CommandHub>,
}

/// Every route: the management API and the dashboard (`web::access::api_access`) and the
/// image registry. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`:
/// without the peer address every `/v1` request counts as another machine's.
pub fn router(state: ApiState, creds: Credentials, registry: Arc<Registry>) -> Router {
    let access = state.access.clone();
    let metrics = Router::new()
        .route("/metrics", get(crate::metrics::scrape))
        .with_state(state.clone())
        .route_layer(middleware::from_fn_with_state(
            access.clone(),
            crate::web::access::api_access,
        ));
    let web = crate::web::router(state.clone());
    let v1 = Router::new()
        .route("/v1/apply", post(apply))
        .route("/v1/delete", post(delete))
        .route("/v1/devices", get(devices).post(add_device))
        .route("/v1/devices/import", post(import_devices))
        .route("/v1/devices/{name}", get(device))
        .route("/v1/deployments", get(deployments))
        .route("/v1/deployments/{name}", get(deployment))
        .route("/v1/deployments/{name}/rollout", get(rollout_status))
        .route("/v1/deployments/{name}/revisions", get(history))
        .route(
            "/v1/deployments/{name}/rollout/{action}",
            post(rollout_action),
        )
        .route(
            "/v1/devices/{name}/logs/{workload}",
            get(crate::commands::http::logs),
        )
        .route(
            "/v1/devices/{name}/restart/{workload}",
            post(crate::commands::http::restart),
        )
        .route("/v1/stats", get(stats))
        .route("/v1/healthz", get(|| async { "ok" }))
        .merge(crate::telemetry::routes::router())
        .merge(crate::clients::routes::router())
        .merge(crate::secrets::routes::router())
        .with_state(state);
    let images = Router::new()
        .route("/v1/images", get(images))
        .route("/v1/images/import", post(import))
        .with_state(registry.clone());
    let registry_state = RegistryState { registry, creds };
    v1.merge(images)
        .merge(web)
        .route_layer(middleware::from_fn_with_state(
            access,
            crate::web::access::api_access,
        ))
        // Manifest sets and device lists run to several MiB (each file is bounded by the
        // parser); axum's default is 2 MiB.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .merge(metrics)
        .merge(crate::registry::router(registry_state))
}

/// A controller error as an HTTP answer.
pub struct ApiError(ControllerError);

impl From<ControllerError> for ApiError {
    fn from(e: ControllerError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match &self.0 {
            ControllerError::Manifest(_) | ControllerError::Invalid(_) => StatusCode::BAD_REQUEST,
            ControllerError::NotFound { .. } => StatusCode::NOT_FOUND,
            ControllerError::Exists(_) | ControllerError::NameTaken { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if code == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("API request failed: {}", self.0);
        }
        let body = ErrorBody {
            error: self.0.to_string(),
        };
        (code, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

fn answer<T: Serialize>(r: Result<T, ControllerError>) -> ApiResult<T> {
    r.map(Json).map_err(ApiError)
}

fn now() -> u64 {
    crate::now_ms()
}

/// Runs a view on the read connection, off the async runtime.
pub(crate) async fn read<T: Send + 'static>(
    st: &ApiState,
    f: impl FnOnce(&ReadSide) -> Result<T, ControllerError> + Send + 'static,
) -> Result<T, ControllerError> {
    let side = st.read.clone();
    tokio::task::spawn_blocking(move || f(&side.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .map_err(|e| ControllerError::Invalid(format!("read task failed: {e}")))?
}

async fn apply(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<DryRunQuery>,
    Json(files): Json<Vec<FileText>>,
) -> impl IntoResponse {
    let dry_run = q.dry_run;
    answer(
        st.controller
            .ask(|reply| Command::Apply {
                files,
                dry_run,
                reply,
            })
            .await,
    )
}

async fn delete(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<DryRunQuery>,
    Json(files): Json<Vec<FileText>>,
) -> impl IntoResponse {
    let dry_run = q.dry_run;
    answer(
        st.controller
            .ask(|reply| Command::Delete {
                files,
                dry_run,
                reply,
            })
            .await,
    )
}

async fn devices(State(st): State<ApiState>) -> impl IntoResponse {
    answer(read(&st, |r| r.devices(now())).await)
}

async fn device(State(st): State<ApiState>, Path(name): Path<String>) -> impl IntoResponse {
    answer(read(&st, move |r| r.device(&name, now())).await)
}

async fn add_device(
    State(st): State<ApiState>,
    Json(req): Json<AddDeviceRequest>,
) -> ApiResult<DeviceAddedAnswer> {
    let AddDeviceRequest { name, labels } = req;
    let added = st
        .controller
        .ask(|reply| Command::AddDevice {
            name,
            labels,
            reply,
        })
        .await
        .map_err(ApiError)?;
    Ok(Json(with_registry(added, &st.registry_url)))
}

async fn import_devices(
    State(st): State<ApiState>,
    Json(file): Json<FileText>,
) -> ApiResult<DevicesImported> {
    let added = st
        .controller
        .ask(|reply| Command::ImportDevices { file, reply })
        .await
        .map_err(ApiError)?;
    let devices: Vec<DeviceAddedAnswer> = added
        .into_iter()
        .map(|d| with_registry(d, &st.registry_url))
        .collect();
    Ok(Json(DevicesImported {
        registered: devices.len(),
        devices,
    }))
}

/// A device's answer with `registry = "..."` added to the `[hub]` section of its snippet.
fn with_registry(mut device: DeviceAdded, registry_url: &str) -> DeviceAddedAnswer {
    let line = format!("registry = \"{registry_url}\"\n");
    device.config = match device.config.find("\nbroker = ") {
        Some(i) => {
            let end = device.config[i + 1..]
                .find('\n')
                .map_or(device.config.len(), |j| i + 2 + j);
            format!("{}{line}{}", &device.config[..end], &device.config[end..])
        }
        None => device.config + &line,
    };
    DeviceAddedAnswer {
        device,
        registry: registry_url.to_owned(),
    }
}

async fn images(State(reg): State<Arc<Registry>>) -> impl IntoResponse {
    Json(reg.images())
}

async fn import(State(reg): State<Arc<Registry>>, Json(req): Json<ImportRequest>) -> Response {
    let res = tokio::task::spawn_blocking(move || reg.import(&req)).await;
    let err = match res {
        Ok(Ok(report)) => return Json(report).into_response(),
        Ok(Err(e)) => e,
        Err(e) => RegistryError::Invalid(format!("import task failed: {e}")),
    };
    let code = if err.is_invalid() {
        StatusCode::BAD_REQUEST
    } else {
        tracing::error!("image import failed: {err}");
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (
        code,
        Json(ErrorBody {
            error: err.to_string(),
        }),
    )
        .into_response()
}

async fn deployments(State(st): State<ApiState>) -> impl IntoResponse {
    answer(read(&st, |r| r.deployments(now())).await)
}

async fn deployment(State(st): State<ApiState>, Path(name): Path<String>) -> impl IntoResponse {
    answer(read(&st, move |r| r.deployment(&name, now())).await)
}

async fn stats(State(st): State<ApiState>) -> impl IntoResponse {
    let telemetry = st.telemetry.counters();
    let mirrors_dropped = st.mirrors.dropped();
    answer(read(&st, |r| r.stats()).await.map(|mut out| {
        crate::telemetry::add_stats(&mut out, &telemetry, mirrors_dropped);
        out
    }))
}

async fn rollout_status(State(st): State<ApiState>, Path(name): Path<String>) -> impl IntoResponse {
    answer(read(&st, move |r| r.rollout_status(&name, now())).await)
}

async fn history(State(st): State<ApiState>, Path(name): Path<String>) -> impl IntoResponse {
    answer(read(&st, move |r| r.history(&name)).await)
}

async fn rollout_action(
    State(st): State<ApiState>,
    Path((deployment, action)): Path<(String, String)>,
) -> impl IntoResponse {
    let action = match action.as_str() {
        "pause" => RolloutAction::Pause,
        "resume" => RolloutAction::Resume,
        "undo" => RolloutAction::Undo,
        "restart" => RolloutAction::Restart,
        other => {
            let msg = format!(
                "unknown rollout action {other:?}: expected pause, resume, undo or restart"
            );
            return answer(Err(ControllerError::Invalid(msg)));
        }
    };
    answer(
        st.controller
            .ask(|reply| Command::Rollout {
                deployment,
                action,
                reply,
            })
            .await,
    )
}
