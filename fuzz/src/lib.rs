//! Shared pieces of the fuzz targets: the fixed keys the keyed decoders are driven with,
//! and the selector byte of the `wire` target. Seeds (`src/bin/seeds.rs`) use the same
//! keys, so seeded payloads pass authentication and the fuzzer starts past it.
//!
//! Never used outside `fuzz/`: these keys are public test values.

use drover_protocol::Name;
use ed25519_dalek::SigningKey;

/// Device every keyed decoder is checked for.
pub fn device() -> Name {
    Name::new("fuzz-dev").unwrap_or_else(|e| panic!("fixed name: {e}"))
}

/// Device credential (status MAC, telemetry and response tags).
pub const CREDENTIAL: &[u8] = b"fuzz-credential";

/// Hub signing key (desired states and commands).
pub fn hub_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// First byte of a `wire` input: which message the rest is read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Desired,
    Status,
    Telemetry,
    Command,
    Response,
    SignedDesired,
    AuthedStatus,
    SignedCommand,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Desired,
        Kind::Status,
        Kind::Telemetry,
        Kind::Command,
        Kind::Response,
        Kind::SignedDesired,
        Kind::AuthedStatus,
        Kind::SignedCommand,
    ];

    pub fn from_byte(b: u8) -> Kind {
        Kind::ALL[usize::from(b) % Kind::ALL.len()]
    }

    pub fn byte(self) -> u8 {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0) as u8
    }
}
