//! Enrollment with join tokens: the token string, and the join request and answer that
//! `drover-agent join` and the hub's `POST /v1/join` exchange (JSON over HTTPS pinned to
//! the fleet CA).
//!
//! A token is one string, `drover1:<CA>:<ID>.<SECRET>` (like kubeadm's
//! `--discovery-token-ca-cert-hash` and k3s' `K10<hash>::` tokens):
//! - `CA`: SHA-256 of the fleet CA certificate (DER), 64 lowercase hex characters. The
//!   agent fetches the CA without trusting anything, and goes on only if it hashes to this;
//! - `ID`: 12 lowercase hex characters, public (shown by `token ls`);
//! - `SECRET`: 32 lowercase hex characters (128 bits); the hub keeps only its SHA-256.
//!
//! What a device sends holds no secret that stays on the device: its MQTT and registry
//! passwords and its sealing public key; never its credential or status key. This module
//! must never print a token's secret (`Debug` redacts it). Pure: no IO.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The prefix of every join token (its format version).
pub const TOKEN_PREFIX: &str = "drover1";
/// Hex characters of a token id.
pub const ID_LEN: usize = 12;
/// Hex characters of a token secret.
pub const SECRET_LEN: usize = 32;

/// Why a string is no join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "expected a join token like drover1:<64 hex: CA hash>:<12 hex: id>.<32 hex: secret> \
         (from `drover-hub token create`), got {0}"
    )]
    Format(String),
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the fleet CA certificate (DER).
    pub ca_sha256: [u8; 32],
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_sha256", &hex(&self.ca_sha256))
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ca = hex(&self.ca_sha256);
        write!(f, "{TOKEN_PREFIX}:{ca}:{}.{}", self.id, self.secret)
    }
}

impl std::str::FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // Never echo the secret part in an error.
        let shown = || {
            let head: String = s.chars().take(TOKEN_PREFIX.len() + 1).collect();
            format!("{head:?}… ({} characters)", s.chars().count())
        };
        let bad = || TokenError::Format(shown());
        let mut parts = s.split(':');
        let (Some(prefix), Some(ca), Some(rest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let (id, secret) = rest.split_once('.').ok_or_else(bad)?;
        let lower_hex = |v: &str, n: usize| {
            v.len() == n
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if prefix != TOKEN_PREFIX || !lower_hex(id, ID_LEN) || !lower_hex(secret, SECRET_LEN) {
            return Err(bad());
        }
        if !lower_hex(ca, 64) {
            return Err(bad());
        }
        let ca_sha256 = crate::keys::parse_hex32(ca).ok_or_else(bad)?;
        Ok(JoinToken {
            ca_sha256,
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

impl JoinToken {
    /// A token for the CA hashing to `ca_sha256`, from 6 + 16 random bytes.
    pub fn new(ca_sha256: [u8; 32], id: [u8; ID_LEN / 2], secret: [u8; SECRET_LEN / 2]) -> Self {
        JoinToken {
            ca_sha256,
            id: hex(&id),
            secret: hex(&secret),
        }
    }

    /// What the hub stores of the secret: its SHA-256.
    pub fn secret_sha256(&self) -> [u8; 32] {
        secret_sha256(&self.secret)
    }
}

/// SHA-256 of a token secret (as the hub stores it).
pub fn secret_sha256(secret: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// SHA-256 of a certificate's DER bytes, as carried by a token.
pub fn ca_sha256(der: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(der).into()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /v1/join`: a device asks to be registered.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub token_id: String,
    pub token_secret: String,
    /// The name the device wants (checked like any device name).
    pub name: String,
    /// Derived on the device from its own credential (`keys::mqtt_password`).
    pub mqtt_password: String,
    /// Derived on the device (`keys::registry_password`).
    pub registry_password: String,
    /// The device's sealing public key, 64 hex characters.
    pub seal_public: String,
}

impl fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinRequest")
            .field("token_id", &self.token_id)
            .field("name", &self.name)
            .field("seal_public", &self.seal_public)
            .finish_non_exhaustive()
    }
}

/// The hub's answer to a successful join: what the agent writes into its config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinAnswer {
    pub device: String,
    /// The hub's ed25519 signing public key, standard base64.
    pub public_key: String,
    /// The fleet CA, PEM.
    pub ca_pem: String,
    /// The hub's X25519 key-agreement public key, 64 hex characters (`keys_agree`).
    pub key_agreement: String,
    /// `mqtts://host:port`.
    pub broker: String,
    /// `https://host:port` of the hub's registry.
    pub registry: String,
}

/// `GET /v1/join/ca`: the fleet CA, fetched before anything is trusted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinCa {
    pub ca_pem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_through_its_string() {
        let t = JoinToken::new([0xab; 32], [1, 2, 3, 4, 5, 6], [0xfe; 16]);
        let s = t.to_string();
        assert_eq!(
            s,
            format!(
                "drover1:{}:010203040506.{}",
                "ab".repeat(32),
                "fe".repeat(16)
            )
        );
        assert_eq!(s.parse::<JoinToken>().unwrap(), t);
        assert_eq!(format!(" {s}\n").parse::<JoinToken>().unwrap(), t);
        assert_eq!(t.secret_sha256(), secret_sha256(&"fe".repeat(16)));
    }

    #[test]
    fn malformed_tokens_are_refused_without_echoing_the_secret() {
        let good = JoinToken::new([1; 32], [2; 6], [3; 16]).to_string();
        let bad = [
            String::new(),
            good.replace("drover1", "drover2"),
            good.replace(':', ";"),
            good.replace('.', ":"),
            good[..good.len() - 1].to_owned(),
            format!("{good}0"),
            good.to_uppercase(),
            format!("{good}:x"),
        ];
        for b in bad {
            let err = b.parse::<JoinToken>().unwrap_err().to_string();
            assert!(err.contains("expected a join token"), "{err}");
            assert!(!err.contains(&"03".repeat(16)), "secret echoed: {err}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = JoinToken::new([1; 32], [2; 6], [3; 16]);
        assert!(!format!("{t:?}").contains(&t.secret));
        let r = JoinRequest {
            token_id: t.id.clone(),
            token_secret: t.secret.clone(),
            name: "pi".into(),
            mqtt_password: "m".repeat(64),
            registry_password: "r".repeat(64),
            seal_public: "00".repeat(32),
        };
        let shown = format!("{r:?}");
        assert!(
            !shown.contains(&t.secret) && !shown.contains("mmmm"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_fields_in_a_join_request_are_refused() {
        let json = r#"{"token_id":"a","token_secret":"b","name":"c","mqtt_password":"d",
            "registry_password":"e","seal_public":"f","status_key":"g"}"#;
        assert!(serde_json::from_str::<JoinRequest>(json).is_err());
    }
}
