//! The client routes of the management API (loopback peers, like the rest of `/v1`):
//! - `GET /v1/clients` → `[ClientView]`
//! - `POST /v1/clients` (`AddClientRequest`) → `ClientAdded`, with the credential
//! - `DELETE /v1/clients/{name}` → the removed `ClientView`
//! - `GET /v1/broker/mosquitto-acl` → `BrokerConfigFile`
//!
//! Changes go through the controller; reads run on the read connection, off the runtime.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::acl::{AclInput, mosquitto_acl};
use super::{AddClientRequest, BrokerConfigFile, ClientAdded, ClientView};
use crate::api::{ApiError, ApiState};
use crate::controller::{Command, ControllerError, ReadSide};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/v1/clients", get(list).post(add))
        .route("/v1/clients/{name}", axum::routing::delete(remove))
        .route("/v1/broker/mosquitto-acl", get(acl))
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

async fn list(State(st): State<ApiState>) -> ApiResult<Vec<ClientView>> {
    read(&st, |r| r.clients()).await.map(Json)
}

async fn add(
    State(st): State<ApiState>,
    Json(req): Json<AddClientRequest>,
) -> ApiResult<ClientAdded> {
    let added = st
        .controller
        .ask(|reply| Command::AddClient { req, reply })
        .await?;
    Ok(Json(added))
}

/// A name that is no client's but a device's says so (devices share the namespace).
async fn remove(State(st): State<ApiState>, Path(name): Path<String>) -> ApiResult<ClientView> {
    let asked = name.clone();
    match st
        .controller
        .ask(|reply| Command::RemoveClient { name, reply })
        .await
    {
        Ok(removed) => Ok(Json(removed)),
        Err(e @ ControllerError::NotFound { .. }) => {
            let n = asked.clone();
            if read(&st, move |r| r.device(&n, 0)).await.is_ok() {
                return Err(ControllerError::Invalid(format!(
                    "{asked:?} is a device, not a client: `client rm` removes only clients (`drover-hub client ls`)"
                ))
                .into());
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

async fn acl(State(st): State<ApiState>) -> ApiResult<BrokerConfigFile> {
    let prefix = st.home_assistant_prefix.clone();
    read(&st, move |r| {
        let (devices, clients) = r.broker_logins()?;
        let text = mosquitto_acl(&AclInput {
            hub: crate::broker::HUB_CLIENT_ID,
            devices: &devices,
            clients: &clients,
            home_assistant_prefix: &prefix,
        });
        Ok(BrokerConfigFile { text })
    })
    .await
    .map(Json)
}
