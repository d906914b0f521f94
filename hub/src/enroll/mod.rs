//! Enrollment with join tokens, and `device revoke`: the hub's HTTP side.
//!
//! Admin routes (the admin token, changes from loopback only, like the rest of `/v1`):
//! - `POST /v1/tokens` (`TokenCreateRequest`) → `TokenCreated`: the token string, shown
//!   this once (the hub keeps only the SHA-256 of its secret), and the join command;
//! - `GET /v1/tokens` → `[TokenView]` (never a secret);
//! - `POST /v1/tokens/{id}/revoke` → `TokenView`;
//! - `POST /v1/devices/{name}/revoke` → `DeviceRevoked`.
//!
//! Join routes (no token: a new device has none; any peer, rate-limited per address;
//! served over HTTPS on `api.tls_listen`):
//! - `GET /v1/join/ca` → `JoinCa`: the fleet CA, which the agent checks against the hash
//!   in its token before it sends anything;
//! - `POST /v1/join` (`JoinRequest`) → `JoinAnswer`. Every token refusal (unknown, wrong
//!   secret, expired, used up, revoked) gets the same 401 body; the reason is logged and
//!   counted (`join_refused_<reason>` in `get stats`).
//!
//! The device sends its MQTT and registry passwords and its sealing public key; the hub
//! computes the device's status key by X25519 agreement (`kx`), so it is never sent.
//! Handlers hold no logic: the decisions are `check` and the controller's `enroll`.

pub mod check;
pub mod kx;
pub mod views;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_protocol::join::{JoinAnswer, JoinCa, JoinRequest, JoinToken};
use drover_protocol::keys::{DeviceKeys, SealPublicKey};

use crate::api::ApiError;
use crate::controller::{ControllerError, EnrollCommand, Handle, Joining};
use crate::views::ErrorBody;
use check::JoinLimit;
use kx::HubKx;
use views::{DeviceRevoked, TokenCreateRequest, TokenCreated, TokenView};

/// The one body of every refused token.
pub const REFUSED: &str = "join refused: the token is not valid here (unknown, wrong, expired, \
                           used up or revoked); ask the hub's operator for a new one \
                           (`drover-hub token create`)";

/// Join attempts per address per minute.
pub const JOIN_BURST: u32 = 20;

/// What the enrollment routes need.
#[derive(Clone)]
pub struct EnrollState {
    pub controller: Handle,
    pub kx: HubKx,
    /// The fleet CA, PEM, and the SHA-256 of its certificate (DER).
    pub ca_pem: String,
    pub ca_sha256: [u8; 32],
    /// The hub's ed25519 public key (base64).
    pub public_key: String,
    /// `mqtts://…` and `https://…` as devices reach them.
    pub broker: String,
    pub registry: String,
    /// The hub's HTTPS address for `drover-agent join` (printed with each token).
    pub join_url: String,
    pub limit: Arc<Mutex<JoinLimit>>,
    /// MQTT-over-TLS connections by login: a revoked device's are closed.
    pub sessions: crate::tls::sessions::MqttSessions,
}

/// The admin routes behind `access` and the open join routes.
pub fn router(state: EnrollState, access: crate::web::access::ApiAccess) -> Router {
    let admin = Router::new()
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}/revoke", post(revoke_token))
        .route("/v1/devices/{name}/revoke", post(revoke_device))
        .with_state(state.clone())
        .route_layer(middleware::from_fn_with_state(
            access,
            crate::web::access::api_access,
        ));
    let join = Router::new()
        .route("/v1/join/ca", get(join_ca))
        .route("/v1/join", post(join))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(state);
    admin.merge(join)
}

async fn create_token(
    State(st): State<EnrollState>,
    Json(req): Json<TokenCreateRequest>,
) -> Result<Json<TokenCreated>, ApiError> {
    let made = st
        .controller
        .ask(|reply| crate::controller::Command::Enroll(EnrollCommand::CreateToken { req, reply }))
        .await?;
    let token = JoinToken {
        ca_sha256: st.ca_sha256,
        id: made.view.id.clone(),
        secret: made.secret,
    }
    .to_string();
    let join_command = format!("drover-agent join {} {token}", st.join_url);
    Ok(Json(TokenCreated {
        token,
        join_command,
        view: made.view,
    }))
}

async fn list_tokens(State(st): State<EnrollState>) -> Result<Json<Vec<TokenView>>, ApiError> {
    let list = st
        .controller
        .ask(|reply| crate::controller::Command::Enroll(EnrollCommand::ListTokens { reply }))
        .await?;
    Ok(Json(list))
}

async fn revoke_token(
    State(st): State<EnrollState>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let v = st
        .controller
        .ask(|reply| crate::controller::Command::Enroll(EnrollCommand::RevokeToken { id, reply }))
        .await?;
    Ok(Json(v))
}

async fn revoke_device(
    State(st): State<EnrollState>,
    Path(name): Path<String>,
) -> Result<Json<DeviceRevoked>, ApiError> {
    let v = st
        .controller
        .ask(|reply| {
            crate::controller::Command::Enroll(EnrollCommand::RevokeDevice { name, reply })
        })
        .await?;
    let closed = st.sessions.close(&v.name);
    tracing::info!(device = %v.name, connections = closed, "closed the revoked device's MQTT over TLS connections");
    Ok(Json(v))
}

async fn join_ca(State(st): State<EnrollState>) -> Json<JoinCa> {
    Json(JoinCa {
        ca_pem: st.ca_pem.clone(),
    })
}

fn refuse(code: StatusCode, error: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: error.into(),
    };
    (code, Json(body)).into_response()
}

async fn join(
    State(st): State<EnrollState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<JoinRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let allowed = st
        .limit
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(peer.ip(), crate::now_ms());
    if !allowed {
        tracing::warn!(%peer, "join refused: too many attempts from this address");
        let msg = format!(
            "too many join attempts from {}: at most {JOIN_BURST} a minute",
            peer.ip()
        );
        return refuse(StatusCode::TOO_MANY_REQUESTS, msg);
    }
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("join request: {}", e.body_text()),
            );
        }
    };
    let keys = match device_keys(&st.kx, &req) {
        Ok(k) => k,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let joining = Box::new(Joining {
        token_id: req.token_id,
        token_secret: req.token_secret,
        name: req.name,
        keys,
    });
    let asked = st
        .controller
        .ask(|reply| crate::controller::Command::Enroll(EnrollCommand::Join { joining, reply }))
        .await;
    match asked {
        Ok(Ok(device)) => Json(JoinAnswer {
            device,
            public_key: st.public_key.clone(),
            ca_pem: st.ca_pem.clone(),
            key_agreement: drover_protocol::join::hex(&st.kx.public().0),
            broker: st.broker.clone(),
            registry: st.registry.clone(),
        })
        .into_response(),
        Ok(Err(_reason)) => refuse(StatusCode::UNAUTHORIZED, REFUSED),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The keys the hub keeps of a joining device: the two passwords it sent (64 hex, as
/// derived by `keys`), its sealing public key, and the status key agreed with it.
fn device_keys(kx: &HubKx, req: &JoinRequest) -> Result<DeviceKeys, String> {
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex64(&req.mqtt_password) || !hex64(&req.registry_password) {
        return Err("join request: the passwords must be 64 hex characters".into());
    }
    if req.mqtt_password == req.registry_password {
        return Err("join request: the MQTT and registry passwords must differ".into());
    }
    let seal_public = SealPublicKey::from_hex(&req.seal_public)
        .ok_or("join request: seal_public must be 64 hex characters")?;
    let status_key = kx
        .status_key(&seal_public)
        .map_err(|e| format!("join request: seal_public: {e}"))?;
    Ok(DeviceKeys {
        mqtt_password: req.mqtt_password.clone(),
        registry_password: req.registry_password.clone(),
        status_key,
        seal_public,
    })
}

/// Why the enrollment routes could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeysError),
    #[error("the fleet CA: {0}")]
    Ca(String),
}

/// SHA-256 of the first certificate of a PEM text (the fleet CA).
pub fn ca_sha256(pem: &str) -> Result<[u8; 32], EnrollError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| EnrollError::Ca("no CERTIFICATE block".into()))?
        .map_err(|e| EnrollError::Ca(e.to_string()))?;
    Ok(drover_protocol::join::ca_sha256(der.as_ref()))
}
