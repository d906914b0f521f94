//! Answers to hub commands (`drover/v1/dev/{device}/cmd/resp`, QoS 1), sealed with the
//! device credential. Never blocks: a full MQTT request channel is the caller's to retry.

use std::sync::Arc;

use drover_protocol::command::{CommandResponse, seal_response_keyed};
use drover_protocol::keys::StatusKey;
use drover_protocol::{Name, topics};
use rumqttc::{AsyncClient, QoS};

use super::Shared;

/// Why an answer did not go out.
#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    #[error("not connected to the hub broker")]
    Offline,
    #[error("the MQTT request channel is full")]
    Busy,
    #[error("cannot encode the answer: {0}")]
    Encode(#[from] drover_protocol::CodecError),
}

/// Sends answers to commands. Cheap to clone.
#[derive(Clone)]
pub struct Responder {
    client: AsyncClient,
    shared: Arc<Shared>,
    status_key: StatusKey,
    topic: String,
}

impl Responder {
    pub(super) fn new(client: AsyncClient, shared: Arc<Shared>, status_key: StatusKey) -> Self {
        let topic = topics::cmd_resp(&shared.device);
        Responder {
            client,
            shared,
            status_key,
            topic,
        }
    }

    /// The device this link speaks for.
    pub fn device(&self) -> &Name {
        &self.shared.device
    }

    /// True while the broker connection is up.
    pub fn connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// Seals and hands one answer to the MQTT client, or says why it could not.
    pub fn try_send(&self, response: &CommandResponse) -> Result<(), RespondError> {
        if !self.connected() {
            return Err(RespondError::Offline);
        }
        let payload = seal_response_keyed(response, &self.shared.device, &self.status_key)?;
        self.client
            .try_publish(&self.topic, QoS::AtLeastOnce, false, payload)
            .map_err(|_| RespondError::Busy)
    }
}
