//! Drover's shared vocabulary: the wire types hub and agents exchange, their versioned
//! postcard codec, the workload manifest format, and the MQTT topic names.
//!
//! This crate must never do IO, spawn tasks or depend on either binary: both binaries
//! depend on it, and everything here is pure and unit tested.

pub mod auth;
pub mod codec;
pub mod command;
pub mod compat;
pub mod config_text;
pub mod digest;
pub mod freshness;
pub mod health;
pub mod image_ref;
pub mod join;
pub mod keys;
pub mod keys_agree;
pub mod labels;
pub mod limits;
pub mod manifest;
pub mod names;
pub mod quantity;
pub mod refs;
pub mod sealed;
pub mod security;
pub mod telemetry;
pub mod topics;
pub mod types;

pub use codec::{CodecError, decode, encode};
pub use digest::{Digest, DigestError};
pub use image_ref::{ImageRef, ImageRefError, ImageSource};
pub use limits::{MAX_MESSAGE_BYTES, MAX_MQTT_PACKET_BYTES, SizeError, check_desired_size};
pub use names::{Name, NameError};
pub use security::{PolicyViolation, SecurityPolicy};
pub use telemetry::{ContainerUsage, DeviceUsage, Telemetry, WorkloadUsage};
pub use types::*;
