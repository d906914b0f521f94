//! The HTTP JSON API (axum). Each route parses its request, calls the controller and
//! serializes the answer; no logic lives here. Errors are `{"error": "..."}` with a status
//! code saying whose fault it was.
//!
//! Routes (all under `/v1`):
//! - `POST /apply`, `POST /delete`: body `[{"file": ..., "text": ...}]` → `{"results": [...]}`
//! - `GET /devices`, `GET /devices/{name}`, `POST /devices` (`{"name", "labels"}`)
//! - `GET /deployments`, `GET /deployments/{name}`
//! - `GET /stats`, `GET /healthz`

use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::controller::{Controller, ControllerError};
use crate::views::{AddDeviceRequest, ErrorBody, FileText};

pub type Shared = Arc<Mutex<Controller>>;

/// The API's routes over a shared controller.
pub fn router(ctl: Shared) -> Router {
    Router::new()
        .route("/v1/apply", post(apply))
        .route("/v1/delete", post(delete))
        .route("/v1/devices", get(devices).post(add_device))
        .route("/v1/devices/{name}", get(device))
        .route("/v1/deployments", get(deployments))
        .route("/v1/deployments/{name}", get(deployment))
        .route("/v1/stats", get(stats))
        .route("/v1/healthz", get(|| async { "ok" }))
        .with_state(ctl)
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

async fn add_device(
    State(ctl): State<Shared>,
    Json(req): Json<AddDeviceRequest>,
) -> impl IntoResponse {
    answer(lock(&ctl).add_device(&req.name, req.labels, now()))
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
