//! Secret values at rest: ChaCha20-Poly1305 with a random nonce per value, under a key in
//! `D/secrets.key` (32 random bytes, 0600, created at first start, never rewritten); and
//! the keyed digests that stand in for values in specs (so a changed Secret changes the
//! desired state without a guessable hash of a short password being stored).
//!
//! This module must never log, print or return a value but to its caller.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::keys::{KeysError, load_or_create};

pub const SECRETS_KEY_FILE: &str = "secrets.key";
const NONCE_BYTES: usize = 12;
/// Nonce and Poly1305 tag around each sealed value.
pub const OVERHEAD_BYTES: usize = NONCE_BYTES + 16;

#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    #[error("{0}")]
    Key(#[from] KeysError),
    #[error("{file}: expected a 32-byte key, found {len} bytes")]
    BadKey { file: String, len: usize },
    #[error(
        "a stored value of {what} does not open with this hub's secrets.key (altered, or another key)"
    )]
    Open { what: String },
    #[error("no random numbers from the OS: {0}")]
    Random(getrandom::Error),
}

/// Encrypts, decrypts and digests Secret values.
#[derive(Clone)]
pub struct SecretBox {
    aead: ChaCha20Poly1305,
    digest_key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

fn derive(key: &[u8; 32], purpose: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(purpose);
    m.finalize().into_bytes().into()
}

impl SecretBox {
    /// Loads `<dir>/secrets.key`, creating it (mode 0600) when absent.
    pub fn load_or_create(dir: &Path) -> Result<SecretBox, AtRestError> {
        let path = dir.join(SECRETS_KEY_FILE);
        let bytes = load_or_create(&path, || {
            let mut b = vec![0u8; 32];
            getrandom::getrandom(&mut b).map_err(KeysError::Random)?;
            Ok(b)
        })?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| AtRestError::BadKey {
                file: path.display().to_string(),
                len: bytes.len(),
            })?;
        Ok(SecretBox::from_key(&key))
    }

    /// A box with a fresh random key, for controllers without a data folder (tests).
    pub fn ephemeral() -> SecretBox {
        let mut key = [0u8; 32];
        // A test-only fallback: without OS randomness a fixed key is still a working box.
        let _ = getrandom::getrandom(&mut key);
        SecretBox::from_key(&key)
    }

    pub fn from_key(key: &[u8; 32]) -> SecretBox {
        let aead_key = derive(key, b"drover secrets at rest v1");
        SecretBox {
            aead: ChaCha20Poly1305::new(Key::from_slice(&aead_key)),
            digest_key: derive(key, b"drover secrets digest v1"),
        }
    }

    /// `nonce || ciphertext || tag`, bound to `what` (e.g. `Secret/db/password`) so a
    /// value cannot be moved to another key in the store.
    pub fn seal(&self, what: &str, plain: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::getrandom(&mut nonce).map_err(AtRestError::Random)?;
        let payload = Payload {
            msg: plain,
            aad: what.as_bytes(),
        };
        let ct = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| AtRestError::Open { what: what.into() })?;
        let mut out = nonce.to_vec();
        out.extend(ct);
        Ok(out)
    }

    pub fn open(&self, what: &str, sealed: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let err = || AtRestError::Open { what: what.into() };
        if sealed.len() < OVERHEAD_BYTES {
            return Err(err());
        }
        let (nonce, ct) = sealed.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: ct,
            aad: what.as_bytes(),
        };
        self.aead
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| err())
    }

    /// A keyed digest of `parts` (each length-prefixed, so no two lists collide).
    pub fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.digest_key).expect("any key length");
        for p in parts {
            m.update(&(p.len() as u64).to_le_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_are_not_in_the_ciphertext() {
        let b = SecretBox::from_key(&[7; 32]);
        let s1 = b.seal("Secret/db/pw", b"hunter2hunter2").unwrap();
        let s2 = b.seal("Secret/db/pw", b"hunter2hunter2").unwrap();
        assert_ne!(s1, s2, "a random nonce per value");
        assert!(!s1.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(b.open("Secret/db/pw", &s1).unwrap(), b"hunter2hunter2");
        assert!(b.open("Secret/db/other", &s1).is_err(), "bound to its key");
        assert!(
            SecretBox::from_key(&[8; 32])
                .open("Secret/db/pw", &s1)
                .is_err()
        );
        let e = b.open("Secret/db/pw", &s1[..10]).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn key_file_is_0600_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = SecretBox::load_or_create(dir.path()).unwrap();
        let meta = std::fs::metadata(dir.path().join(SECRETS_KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let b = SecretBox::load_or_create(dir.path()).unwrap();
        let sealed = a.seal("x", b"v").unwrap();
        assert_eq!(b.open("x", &sealed).unwrap(), b"v");
        assert_eq!(a.digest(&[b"a", b"bc"]), b.digest(&[b"a", b"bc"]));
        assert_ne!(a.digest(&[b"a", b"bc"]), a.digest(&[b"ab", b"c"]));
    }
}
