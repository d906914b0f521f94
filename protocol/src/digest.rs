//! Content digests: `sha256:<64 lowercase hex>`, the OCI image spec's `algorithm:encoded`
//! with the one algorithm Drover stores and verifies.
//!
//! A [`Digest`] is validated once, when parsed or computed; its hex part is then safe as a
//! file name (agents and the hub name blob files after it). This module must never accept
//! another algorithm silently: `sha512:…` is well-formed OCI and refused by name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The only digest algorithm accepted.
pub const SHA256: &str = "sha256";

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

/// Why a string is not a valid [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} is not algorithm:hex (expected sha256:<64 lowercase hex digits>)")]
    Malformed(String),
    #[error(
        "digest {digest:?}: algorithm {algorithm:?} is not supported (only sha256 digests are accepted)"
    )]
    Unsupported { digest: String, algorithm: String },
    #[error("digest {0:?}: expected 64 lowercase hex digits after sha256:")]
    BadHex(String),
}

impl Digest {
    /// Checks `s` against the OCI grammar (`[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`)
    /// and then insists on sha256 with 64 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let malformed = || DigestError::Malformed(s.to_owned());
        let (algorithm, encoded) = s.split_once(':').ok_or_else(malformed)?;
        if !is_oci_algorithm(algorithm) || !is_oci_encoded(encoded) {
            return Err(malformed());
        }
        if algorithm != SHA256 {
            return Err(DigestError::Unsupported {
                digest: s.to_owned(),
                algorithm: algorithm.to_owned(),
            });
        }
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if encoded.len() != 64 || !encoded.bytes().all(lower_hex) {
            return Err(DigestError::BadHex(s.to_owned()));
        }
        Ok(Digest(s.to_owned()))
    }

    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::digest(bytes).into())
    }

    /// The digest whose sha256 hash is `hash` (e.g. a streaming hasher's result).
    pub fn from_sha256(hash: [u8; 32]) -> Digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(SHA256.len() + 1 + 64);
        s.push_str(SHA256);
        s.push(':');
        for b in hash {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        Digest(s)
    }

    /// The 64 hex digits (safe as a file name).
    pub fn hex(&self) -> &str {
        &self.0[SHA256.len() + 1..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[a-z0-9]+` components joined by one of `+._-`.
fn is_oci_algorithm(s: &str) -> bool {
    let component = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    s.split(['+', '.', '_', '-']).all(component)
}

fn is_oci_encoded(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_only_sha256_lowercase_hex() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(d.as_str()), Ok(d.clone()));
        assert_eq!(d.hex().len(), 64);
        let upper = format!("sha256:{}", d.hex().to_uppercase());
        assert_eq!(Digest::parse(&upper), Err(DigestError::BadHex(upper)));
        for short in ["sha256:abc", "sha256:../../etc/passwd"] {
            assert!(Digest::parse(short).is_err(), "{short}");
        }
        assert!(matches!(
            Digest::parse(&format!("sha512:{}", "a".repeat(128))),
            Err(DigestError::Unsupported { algorithm, .. }) if algorithm == "sha512"
        ));
        let msg = Digest::parse("sha512:00").unwrap_err().to_string();
        assert!(msg.contains("\"sha512\" is not supported"), "{msg}");
        for bad in [
            "",
            "sha256",
            ":abc",
            "sha256:",
            "SHA256:00",
            "sha-:00",
            "a:b c",
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(DigestError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn serde_is_a_checked_string() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(s in ".{0,80}") {
            let _ = Digest::parse(&s);
        }

        #[test]
        fn display_parse_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let d = Digest::of(&bytes);
            let shown = d.to_string();
            prop_assert_eq!(Digest::parse(&shown), Ok(d));
        }
    }
}
