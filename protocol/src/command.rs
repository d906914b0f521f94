//! Commands from the hub to one device (`drover/v1/dev/{device}/cmd`, QoS 1, never
//! retained) and the device's answers (`…/cmd/resp`): container logs, restarts.
//!
//! A command is signed by the hub's ed25519 key like a desired state (own context, so a
//! signature over one is never valid for the other) and carries the device's name and an
//! id that rises strictly across every command the hub ever sends: the agent keeps the
//! highest id it accepted and refuses anything not above it (a replay), addressed to
//! another device, or not signed by the pinned key.
//!
//! An answer is a stream of chunks of one command's output, at most [`MAX_CHUNK_BYTES`]
//! each, the last with `end`. Payload: `envelope(CommandResponse) ‖ tag`, where `tag` is
//! the first 16 bytes of HMAC-SHA256(device status key (`keys`), context ‖ device ‖ 0 ‖ envelope)
//! (the layout telemetry uses). This module must never do IO and never panic on a payload.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Name;
use crate::codec::{CodecError, Wire, decode, encode};
use crate::keys::StatusKey;

const COMMAND_CONTEXT: &[u8] = b"drover/v1/cmd\0";
const RESPONSE_CONTEXT: &[u8] = b"drover/v1/cmd/resp\0";

/// Bytes of the truncated HMAC-SHA256 tag after a response's envelope.
pub const TAG_BYTES: usize = 16;
/// Largest `data` of one response chunk.
pub const MAX_CHUNK_BYTES: usize = 16 * 1024;
/// Largest signed command payload accepted: commands are a few dozen bytes; anything
/// bigger is refused before its signature is even checked.
pub const MAX_COMMAND_BYTES: usize = 1024;
/// Longest error text in a response.
pub const MAX_ERROR_CHARS: usize = 1024;

/// One signed request to one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub device: Name,
    /// Rises strictly over every command the hub sends (replay protection).
    pub id: u64,
    pub kind: CommandKind,
}

/// What a command asks for. Variants are only ever appended (postcard indexes them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandKind {
    /// A container's output, from the device's rotated log files.
    Logs(LogsRequest),
    /// Restart every container of a workload (counted as a restart).
    Restart { workload: Name },
    /// Stop the stream of command `id` (a `follow` that nobody reads any more).
    Cancel { id: u64 },
    /// The reader of stream `id` is still there: a `follow` ends by itself when no renewal
    /// came for a while, so that a hub that went away never leaves a stream behind.
    Renew { id: u64 },
}

/// `drover-hub logs DEVICE WORKLOAD [-c CONTAINER] [-f] [--tail N] [--since D]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsRequest {
    pub workload: Name,
    /// `None`: the workload's only container.
    pub container: Option<Name>,
    /// Keep sending what the container writes, until cancelled.
    pub follow: bool,
    /// Only the last `n` lines of what is stored.
    pub tail: Option<u32>,
    /// Only what was written in the last `since_s` seconds (by the device's clock).
    pub since_s: Option<u64>,
    /// The device never sends more data than this in total for this command.
    pub max_bytes: u32,
}

/// A command as published: its encoded bytes and the hub's signature over them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCommand {
    pub command: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Wire for SignedCommand {
    const KIND: u8 = 6;
    const KIND_NAME: &'static str = "signed command";
}

impl Wire for Command {
    const KIND: u8 = 8;
    const KIND_NAME: &'static str = "command";
}

/// One chunk of the answer to command `id`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse {
    pub id: u64,
    /// 0, 1, 2, … in order of sending: the hub notices a lost chunk.
    pub chunk: u32,
    /// Output bytes (log text), at most [`MAX_CHUNK_BYTES`].
    pub data: Vec<u8>,
    /// The last chunk of this command.
    pub end: bool,
    /// Why the command failed (with `end`); `None` on success. A failed chunk's `data`
    /// is never output but its [`FailureKind`] code (empty from agents before it existed):
    /// the shape stayed the same, so old hubs and old agents still read every chunk.
    pub error: Option<String>,
}

/// What kind of failure a command met, so that the hub can answer with the right status.
/// Travels as a short ASCII code in the `data` of the final chunk that has the `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The request cannot be served as asked (a workload of several containers and no
    /// container named).
    BadRequest,
    /// No such workload or container, or no output yet.
    NotFound,
    /// The device serves as many streams as it can: try again later.
    Busy,
    /// Anything else, and every failure of an agent that sends no code.
    Failed,
}

impl FailureKind {
    /// The code sent in `data`.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::BadRequest => "bad_request",
            FailureKind::NotFound => "not_found",
            FailureKind::Busy => "busy",
            FailureKind::Failed => "failed",
        }
    }

    /// The kind of a code; unknown or missing codes are [`FailureKind::Failed`].
    pub fn from_code(code: &[u8]) -> FailureKind {
        [
            FailureKind::BadRequest,
            FailureKind::NotFound,
            FailureKind::Busy,
        ]
        .into_iter()
        .find(|k| k.code().as_bytes() == code)
        .unwrap_or(FailureKind::Failed)
    }
}

impl CommandResponse {
    /// The final chunk of a failed command: `error` cut to [`MAX_ERROR_CHARS`], `kind`'s
    /// code as its data.
    pub fn failed(id: u64, chunk: u32, kind: FailureKind, error: &str) -> CommandResponse {
        CommandResponse {
            id,
            chunk,
            data: kind.code().as_bytes().to_vec(),
            end: true,
            error: Some(error.chars().take(MAX_ERROR_CHARS).collect()),
        }
    }
}

impl Wire for CommandResponse {
    const KIND: u8 = 7;
    const KIND_NAME: &'static str = "command response";
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("command of {0} bytes is larger than the {MAX_COMMAND_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("bad signature: not signed by the pinned hub key")]
    BadSignature,
    #[error("addressed to device `{got}`, this is `{expected}`")]
    WrongDevice { expected: String, got: String },
    #[error("command id {got} is not above the {held} already accepted (replay or reorder)")]
    Replayed { got: u64, held: u64 },
    #[error("response of {0} bytes is too short to carry its {TAG_BYTES}-byte tag")]
    Short(usize),
    #[error("bad MAC: not sent by the device's credential holder")]
    BadMac,
    #[error("response chunk of {0} bytes is larger than {MAX_CHUNK_BYTES}")]
    ChunkTooLarge(usize),
}

impl CommandError {
    /// A short label for counters: `malformed`, `bad_signature`, `wrong_device`,
    /// `replayed`, `bad_mac`.
    pub fn reason(&self) -> &'static str {
        match self {
            CommandError::Codec(_)
            | CommandError::TooLarge(_)
            | CommandError::Short(_)
            | CommandError::ChunkTooLarge(_) => "malformed",
            CommandError::BadSignature => "bad_signature",
            CommandError::WrongDevice { .. } => "wrong_device",
            CommandError::Replayed { .. } => "replayed",
            CommandError::BadMac => "bad_mac",
        }
    }
}

/// Encodes and signs a command; the result is the MQTT payload.
pub fn sign_command(command: &Command, key: &SigningKey) -> Result<Vec<u8>, CodecError> {
    let bytes = encode(command)?;
    let signature = key
        .sign(&[COMMAND_CONTEXT, &bytes].concat())
        .to_bytes()
        .to_vec();
    encode(&SignedCommand {
        command: bytes,
        signature,
    })
}

/// Checks a command payload: signed by `hub`, for `device`, with an id above `held`.
pub fn verify_command(
    payload: &[u8],
    hub: &VerifyingKey,
    device: &Name,
    held: u64,
) -> Result<Command, CommandError> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(CommandError::TooLarge(payload.len()));
    }
    let signed: SignedCommand = decode(payload)?;
    let sig = Signature::from_slice(&signed.signature).map_err(|_| CommandError::BadSignature)?;
    hub.verify(&[COMMAND_CONTEXT, &signed.command].concat(), &sig)
        .map_err(|_| CommandError::BadSignature)?;
    let command: Command = decode(&signed.command)?;
    if &command.device != device {
        return Err(CommandError::WrongDevice {
            expected: device.to_string(),
            got: command.device.to_string(),
        });
    }
    if command.id <= held {
        return Err(CommandError::Replayed {
            got: command.id,
            held,
        });
    }
    Ok(command)
}

fn tag(device: &Name, key: &StatusKey, envelope: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    m.update(RESPONSE_CONTEXT);
    m.update(device.as_str().as_bytes());
    m.update(&[0]);
    m.update(envelope);
    m
}

/// Encodes a response of `device` and appends its tag; the result is the MQTT payload.
pub fn seal_response(
    response: &CommandResponse,
    device: &Name,
    credential: &[u8],
) -> Result<Vec<u8>, CodecError> {
    seal_response_keyed(response, device, &StatusKey::derive(credential))
}

/// [`seal_response`] with the status key itself (an enrolled device's agreed key).
pub fn seal_response_keyed(
    response: &CommandResponse,
    device: &Name,
    key: &StatusKey,
) -> Result<Vec<u8>, CodecError> {
    let mut bytes = encode(response)?;
    let full = tag(device, key, &bytes).finalize().into_bytes();
    bytes.extend_from_slice(&full[..TAG_BYTES]);
    Ok(bytes)
}

/// Checks a payload received on `device`'s `cmd/resp` topic against its status key.
pub fn open_response(
    payload: &[u8],
    device: &Name,
    key: &StatusKey,
) -> Result<CommandResponse, CommandError> {
    let Some(split) = payload.len().checked_sub(TAG_BYTES) else {
        return Err(CommandError::Short(payload.len()));
    };
    let (envelope, got) = payload.split_at(split);
    tag(device, key, envelope)
        .verify_truncated_left(got)
        .map_err(|_| CommandError::BadMac)?;
    let response: CommandResponse = decode(envelope)?;
    if response.data.len() > MAX_CHUNK_BYTES {
        return Err(CommandError::ChunkTooLarge(response.data.len()));
    }
    Ok(response)
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
