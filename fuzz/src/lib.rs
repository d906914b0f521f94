//! Shared pieces of the fuzz targets: the fixed keys the keyed decoders are driven with,
//! the check of a config loader's error,
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
    SealedDesired,
    SealedPresence,
    SequencedStatus,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Desired,
        Kind::Status,
        Kind::Telemetry,
        Kind::Command,
        Kind::Response,
        Kind::SignedDesired,
        Kind::AuthedStatus,
        Kind::SignedCommand,
        Kind::SealedDesired,
        Kind::SealedPresence,
        Kind::SequencedStatus,
    ];

    pub fn from_byte(b: u8) -> Kind {
        Kind::ALL[usize::from(b) % Kind::ALL.len()]
    }

    pub fn byte(self) -> u8 {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0) as u8
    }
}

/// A config loader's error for `text`: a parse error located inside the text (line and
/// column from 1, the line one of the text's), never a read error.
pub fn check_config_error(text: &str, e: &drover_protocol::config_text::ConfigError) {
    use drover_protocol::config_text::ConfigError;
    match e {
        ConfigError::Parse { line, column, .. } => {
            let lines = text.split('\n').count();
            assert!(*line >= 1 && *line <= lines, "line {line} of {lines}: {e}");
            assert!(*column >= 1, "column {column}: {e}");
        }
        ConfigError::Read { .. } => panic!("parsing text gave {e}"),
    }
}

/// The registry the `v2` target serves (and its seeds ask for).
pub mod v2 {
    /// The one manifest of `tools/app` (tag `1`).
    pub const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0","size":2},"layers":[]}"#;
    /// The one blob (a config) of `tools/app`.
    pub const BLOB: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    /// The registered device `pi-1` with credential `secret`, as HTTP Basic.
    pub const BASIC: &str = "Basic cGktMTpzZWNyZXQ=";
}
