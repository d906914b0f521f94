//! Commands to one device (`drover-hub logs`, `restart`): signed with the hub's key,
//! numbered from a counter in the store, published on `drover/v1/dev/{device}/cmd`
//! (QoS 1, not retained); the device's answers on `…/cmd/resp` are verified with its
//! status key (derived from its credential) and routed by id to the request waiting for them.
//!
//! Every waiting request has a bounded channel ([`CHANNEL_CHUNKS`] chunks): the hub never
//! buffers a device's output without bound. When a reader is too slow and its channel
//! is full, its stream is cut (and the device told to stop) with an error that says so.
//! This module never plans anything and never blocks the MQTT loop.

pub mod http;
mod ids;
pub mod query;
mod route;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use drover_protocol::command::{Command, CommandKind, open_response, sign_command};
use drover_protocol::{Name, topics};
use ed25519_dalek::SigningKey;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;

use crate::broker::Credentials;
use crate::store::Store;
use ids::IdAllocator;
pub use route::{Answer, Pending};
use route::{Route, Routes};

/// Answer chunks held for one request at most (16 KiB each): 512 KiB.
pub const CHANNEL_CHUNKS: usize = 32;
/// Requests waiting for answers at once, for all devices.
pub const MAX_PENDING: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum CommandsError {
    #[error("the hub is not connected to its MQTT broker yet: try again in a moment")]
    NoBroker,
    #[error("{MAX_PENDING} commands are waiting for devices already: try again later")]
    Busy,
    #[error("cannot allocate a command id: {0}")]
    Ids(String),
    #[error("cannot encode the command: {0}")]
    Codec(#[from] drover_protocol::CodecError),
    #[error("cannot publish the command: {0}")]
    Publish(String),
}

/// The hub's side of device commands. Shared by the API handlers and the MQTT loop.
pub struct CommandHub {
    key: SigningKey,
    creds: Credentials,
    ids: Arc<Mutex<IdAllocator>>,
    routes: Routes,
    /// Held from taking an id to handing the command to the MQTT client, so commands
    /// leave in id order: the agent refuses an id not above the last (replay floor), so
    /// two commands overtaking each other (e.g. cancels of several streams) lost one.
    issuing: tokio::sync::Mutex<()>,
    /// Set by the MQTT module once its client exists.
    client: OnceLock<AsyncClient>,
    /// Answers refused, by reason (`bad_mac`, `malformed`, `unknown_device`), and answers
    /// for no waiting request (late, after a cancel).
    refused: Mutex<HashMap<&'static str, u64>>,
}

impl CommandHub {
    /// `store` is a connection of its own (the controller owns the other writer).
    pub fn new(key: SigningKey, creds: Credentials, store: Store) -> Arc<CommandHub> {
        Arc::new(CommandHub {
            key,
            creds,
            ids: Arc::new(Mutex::new(IdAllocator::new(store))),
            routes: Routes::default(),
            issuing: tokio::sync::Mutex::new(()),
            client: OnceLock::new(),
            refused: Mutex::new(HashMap::new()),
        })
    }

    /// Gives the hub's MQTT client (called once, by `mqtt::spawn`).
    pub fn set_client(&self, client: AsyncClient) {
        let _ = self.client.set(client);
    }

    /// Signs and publishes `kind` to `device` and returns the request its answers come to.
    pub async fn send(
        self: &Arc<Self>,
        device: &Name,
        kind: CommandKind,
    ) -> Result<Pending, CommandsError> {
        if self.routes.len() >= MAX_PENDING {
            return Err(CommandsError::Busy);
        }
        let _order = self.issuing.lock().await;
        let id = self.next_id().await?;
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let route = Route::new(device.clone(), tx);
        let cut = route.cut.clone();
        self.routes.insert(id, route);
        let pending = Pending::new(self.clone(), device.clone(), id, rx, cut);
        self.publish(device, id, kind).await?;
        Ok(pending)
    }

    /// Publishes a command that expects no answer of its own (cancel, renew).
    pub async fn notify(&self, device: &Name, kind: CommandKind) -> Result<(), CommandsError> {
        let _order = self.issuing.lock().await;
        let id = self.next_id().await?;
        self.publish(device, id, kind).await
    }

    /// An answer from the broker: checked, then handed to its request (never waits).
    pub fn deliver(&self, topic: &str, payload: &[u8]) {
        let Some(device) = device_of_response(topic) else {
            return self.refuse("malformed");
        };
        let key = {
            let creds = self.creds.read().unwrap_or_else(|e| e.into_inner());
            creds.get(device.as_str()).map(|k| k.status_key.clone())
        };
        let Some(key) = key else {
            return self.refuse("unknown_device");
        };
        match open_response(payload, &device, &key) {
            Ok(r) => {
                if !self.routes.deliver(&device, r) {
                    self.refuse("no_request");
                }
            }
            Err(e) => {
                tracing::debug!(device = %device, "refused a command answer: {e}");
                self.refuse(e.reason());
            }
        }
    }

    /// Answers refused or unrouted so far, by reason.
    pub fn refused(&self) -> HashMap<&'static str, u64> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn refuse(&self, reason: &'static str) {
        *self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    async fn next_id(&self) -> Result<u64, CommandsError> {
        // Usually from memory; a new block is reserved (one durable write) now and then,
        // off the async runtime.
        let ids = self.ids.clone();
        tokio::task::spawn_blocking(move || ids.lock().unwrap_or_else(|e| e.into_inner()).next())
            .await
            .map_err(|e| CommandsError::Ids(e.to_string()))?
            .map_err(|e| CommandsError::Ids(e.to_string()))
    }

    async fn publish(
        &self,
        device: &Name,
        id: u64,
        kind: CommandKind,
    ) -> Result<(), CommandsError> {
        let client = self.client.get().ok_or(CommandsError::NoBroker)?;
        let cmd = Command {
            device: device.clone(),
            id,
            kind,
        };
        let payload = sign_command(&cmd, &self.key)?;
        client
            .publish(topics::cmd(device), QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| CommandsError::Publish(e.to_string()))
    }

    fn forget(&self, id: u64) {
        self.routes.remove(id);
    }
}

/// The device of a `drover/v1/dev/{device}/cmd/resp` topic.
pub fn device_of_response(topic: &str) -> Option<Name> {
    let rest = topic.strip_prefix(topics::ROOT)?.strip_prefix("/dev/")?;
    let name = rest.strip_suffix("/cmd/resp")?;
    Name::new(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_comes_from_the_answer_topic() {
        let d = Name::new("pi-1").unwrap();
        assert_eq!(device_of_response(&topics::cmd_resp(&d)), Some(d));
        assert_eq!(device_of_response("drover/v1/dev/pi-1/status"), None);
        assert_eq!(device_of_response("drover/v1/dev/Bad/cmd/resp"), None);
        assert_eq!(device_of_response("drover/v1/dev/a/b/cmd/resp"), None);
    }
}
