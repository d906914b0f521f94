//! The Secret and ConfigMap routes of the management API (token-guarded like all `/v1`):
//! - `GET /v1/secrets`, `GET /v1/configmaps` → `[ConfigObjectView]`
//! - `GET /v1/secrets/{name}`, `GET /v1/configmaps/{name}` → `ConfigObjectView`
//!
//! Changes arrive through `apply`/`delete`. Reads run on the read connection and never
//! open a sealed value.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::views::ConfigObjectView;
use crate::api::{ApiError, ApiState};
use crate::controller::{ControllerError, ReadSide};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/v1/secrets", get(|st: State<ApiState>| list(st, "Secret")))
        .route(
            "/v1/configmaps",
            get(|st: State<ApiState>| list(st, "ConfigMap")),
        )
        .route(
            "/v1/secrets/{name}",
            get(|st: State<ApiState>, n: Path<String>| one(st, n, "Secret")),
        )
        .route(
            "/v1/configmaps/{name}",
            get(|st: State<ApiState>, n: Path<String>| one(st, n, "ConfigMap")),
        )
}

async fn read<T: Send + 'static>(
    st: &ApiState,
    f: impl FnOnce(&ReadSide) -> Result<T, ControllerError> + Send + 'static,
) -> Result<T, ApiError> {
    let side = st.read.clone();
    tokio::task::spawn_blocking(move || f(&side.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .map_err(|e| ControllerError::Invalid(format!("read task failed: {e}")))?
        .map_err(ApiError::from)
}

async fn list(State(st): State<ApiState>, kind: &'static str) -> ApiResult<Vec<ConfigObjectView>> {
    read(&st, move |r| r.config_objects(kind)).await.map(Json)
}

async fn one(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    kind: &'static str,
) -> ApiResult<ConfigObjectView> {
    read(&st, move |r| r.config_object(kind, &name))
        .await
        .map(Json)
}
