//! The HTTP JSON API (axum). Each route parses its request, calls the controller and
//! serializes the answer; no logic lives here. Errors are `{"error": "..."}` with a status
//! code saying whose fault it was.
//!
//! Routes (all under `/v1`, answered only to loopback peers — 403 otherwise — so that
//! `api.listen = "0.0.0.0:…"` exposes just the device registry):
//! - `POST /apply`, `POST /delete`: body `[{"file": ..., "text": ...}]` → `{"results": [...]}`
//! - `GET /devices`, `GET /devices/{name}`, `POST /devices` (`{"name", "labels"}`)
//! - `GET /deployments`, `GET /deployments/{name}`
//! - `GET /images`, `POST /images/import` (`{"path", "name"?, "tag"?}`: a layout folder
//!   read by the hub process, on the hub's machine)
//! - `GET /stats`, `GET /healthz`
//!
//! The `/v2` image registry routes (device credentials, any peer) are `registry::router`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::controller::{Controller, ControllerError};
use crate::registry::{Registry, RegistryError, RegistryState};
use crate::views::{AddDeviceRequest, DeviceAddedAnswer, ErrorBody, FileText, ImportRequest};

pub type Shared = Arc<Mutex<Controller>>;

/// Every route: the management API over a shared controller (loopback peers only) and
/// the image registry. `registry_url` goes into `device add`'s config snippets. Serve it
/// with `into_make_service_with_connect_info::<SocketAddr>()`: without the peer address
/// every `/v1` request is refused.
pub fn router(ctl: Shared, registry: Arc<Registry>, registry_url: String) -> Router {
    let creds = lock(&ctl).credentials();
    let add = move |State(ctl): State<Shared>, Json(req): Json<AddDeviceRequest>| async move {
        add_device(ctl, req, &registry_url)
    };
    let v1 = Router::new()
        .route("/v1/apply", post(apply))
        .route("/v1/delete", post(delete))
        .route("/v1/devices", get(devices).post(add))
        .route("/v1/devices/{name}", get(device))
        .route("/v1/deployments", get(deployments))
        .route("/v1/deployments/{name}", get(deployment))
        .route("/v1/stats", get(stats))
        .route("/v1/healthz", get(|| async { "ok" }))
        .with_state(ctl);
    let images = Router::new()
        .route("/v1/images", get(images))
        .route("/v1/images/import", post(import))
        .with_state(registry.clone());
    let state = RegistryState { registry, creds };
    v1.merge(images)
        .route_layer(middleware::from_fn(loopback_only))
        .merge(crate::registry::router(state))
}

/// Refuses management requests from anything but a loopback peer.
async fn loopback_only(req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    if peer.is_some_and(|ip| ip.is_loopback()) {
        return next.run(req).await;
    }
    let body = ErrorBody {
        error: "the management API answers only on loopback; use the CLI on the hub's machine"
            .to_owned(),
    };
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// A controller error as an HTTP answer.
pub struct ApiError(ControllerError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match &self.0 {
            ControllerError::Manifest(_) | ControllerError::Invalid(_) => StatusCode::BAD_REQUEST,
            ControllerError::NotFound { .. } => StatusCode::NOT_FOUND,
            ControllerError::Exists(_) => StatusCode::CONFLICT,
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

fn lock(ctl: &Shared) -> MutexGuard<'_, Controller> {
    // A panic while holding the lock would abort (panic = abort in release); in debug
    // builds, recover the data rather than fail every later request.
    ctl.lock().unwrap_or_else(|p| p.into_inner())
}

fn answer<T: Serialize>(r: Result<T, ControllerError>) -> ApiResult<T> {
    r.map(Json).map_err(ApiError)
}

fn now() -> u64 {
    crate::now_ms()
}

async fn apply(State(ctl): State<Shared>, Json(files): Json<Vec<FileText>>) -> impl IntoResponse {
    answer(lock(&ctl).apply(&files, now()))
}

async fn delete(State(ctl): State<Shared>, Json(files): Json<Vec<FileText>>) -> impl IntoResponse {
    answer(lock(&ctl).delete(&files, now()))
}

async fn devices(State(ctl): State<Shared>) -> impl IntoResponse {
    answer(lock(&ctl).devices(now()))
}

async fn device(State(ctl): State<Shared>, Path(name): Path<String>) -> impl IntoResponse {
    answer(lock(&ctl).device(&name, now()))
}

/// Registers a device; its config snippet also gets the registry URL in `[hub]`.
fn add_device(
    ctl: Shared,
    req: AddDeviceRequest,
    registry_url: &str,
) -> ApiResult<DeviceAddedAnswer> {
    let mut device = lock(&ctl)
        .add_device(&req.name, req.labels, now())
        .map_err(ApiError)?;
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
    Ok(Json(DeviceAddedAnswer {
        device,
        registry: registry_url.to_owned(),
    }))
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

async fn deployments(State(ctl): State<Shared>) -> impl IntoResponse {
    answer(lock(&ctl).deployments(now()))
}

async fn deployment(State(ctl): State<Shared>, Path(name): Path<String>) -> impl IntoResponse {
    answer(lock(&ctl).deployment(&name, now()))
}

async fn stats(State(ctl): State<Shared>) -> impl IntoResponse {
    answer(lock(&ctl).stats())
}
