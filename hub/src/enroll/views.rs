//! What the enrollment routes take and answer (JSON): token create/ls/revoke and device
//! revoke. No view ever carries a token's secret except [`TokenCreated`], once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Default lifetime of a join token: 24 hours.
pub const DEFAULT_EXPIRES_MS: u64 = 24 * 60 * 60 * 1000;
/// Default number of devices a join token may enroll.
pub const DEFAULT_USES: u32 = 1;
/// Longest lifetime a join token may have: 365 days.
pub const MAX_EXPIRES_MS: u64 = 365 * 24 * 60 * 60 * 1000;
/// Most devices one join token may enroll.
pub const MAX_USES: u32 = 100_000;

/// `POST /v1/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateRequest {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub expires_ms: u64,
    pub uses: u32,
}

/// One token as `token ls` shows it: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub uses_left: u32,
    pub revoked_ms: Option<u64>,
}

/// The answer to `POST /v1/tokens`: the token string (the only time its secret is
/// shown) and the command that enrolls a device with it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenCreated {
    pub token: String,
    pub join_command: String,
    pub view: TokenView,
}

/// The answer to `POST /v1/devices/{name}/revoke`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRevoked {
    pub name: String,
    pub revoked_ms: u64,
    /// False when it had been revoked before (nothing changed).
    pub newly: bool,
}

impl From<&crate::store::tokens::TokenRow> for TokenView {
    fn from(t: &crate::store::tokens::TokenRow) -> Self {
        TokenView {
            id: t.id.clone(),
            labels: t.labels.clone(),
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
            uses_left: t.uses_left,
            revoked_ms: t.revoked_ms,
        }
    }
}
