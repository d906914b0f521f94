//! The hub's secrets in its data folder: the ed25519 signing key (`hub.key`, a 32-byte
//! seed) and the hub's own MQTT credential (`hub.credential`), both mode 0600 and created
//! on first start; plus fresh device credentials.
//!
//! This module must never log or return a secret anywhere but to its caller.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{SigningKey, VerifyingKey};

pub const KEY_FILE: &str = "hub.key";
pub const CREDENTIAL_FILE: &str = "hub.credential";

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: expected a 32-byte key, found {len} bytes", path.display())]
    BadKey { path: PathBuf, len: usize },
    #[error("no random numbers from the OS: {0}")]
    Random(getrandom::Error),
}

/// Loads `<dir>/hub.key`, creating it (mode 0600) when absent.
pub fn load_or_create_signing_key(dir: &Path) -> Result<SigningKey, KeysError> {
    let path = dir.join(KEY_FILE);
    let bytes = load_or_create(&path, || random_bytes().map(|b| b.to_vec()))?;
    let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeysError::BadKey {
        path: path.clone(),
        len: bytes.len(),
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Loads `<dir>/hub.credential`, creating it (mode 0600) when absent.
pub fn load_or_create_hub_credential(dir: &Path) -> Result<String, KeysError> {
    let path = dir.join(CREDENTIAL_FILE);
    let bytes = load_or_create(&path, || new_credential().map(String::into_bytes))?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

/// A fresh device credential: 32 random bytes, base64url without padding (43 chars).
pub fn new_credential() -> Result<String, KeysError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes()?))
}

/// The public key as shown to operators and put in agent configs: standard base64.
pub fn public_key_base64(key: &VerifyingKey) -> String {
    STANDARD.encode(key.as_bytes())
}

fn random_bytes() -> Result<[u8; 32], KeysError> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(KeysError::Random)?;
    Ok(b)
}

pub(crate) fn load_or_create(
    path: &Path,
    make: impl FnOnce() -> Result<Vec<u8>, KeysError>,
) -> Result<Vec<u8>, KeysError> {
    let io_err = |source| KeysError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(e)),
        Err(_) => {}
    }
    let bytes = make()?;
    // Written in full under a temporary name, then linked into place (never replacing
    // an existing file): a power cut leaves either no key or the whole key, never a
    // short one the next start would refuse.
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {}
        // Another process created it first: that one is the key.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return std::fs::read(path).map_err(io_err);
        }
        Err(e) => return Err(io_err(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_key_is_created_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_signing_key(dir.path()).unwrap();
        let b = load_or_create_signing_key(dir.path()).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(public_key_base64(&a.verifying_key()).len(), 44);
    }

    #[test]
    fn credentials_are_43_url_safe_characters() {
        let c = new_credential().unwrap();
        assert_eq!(c.len(), 43);
        assert!(
            c.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        );
        assert_ne!(c, new_credential().unwrap());
    }

    #[test]
    fn a_key_is_linked_into_place_whole_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        // What a power cut in the middle of an earlier write would have left.
        let stray = dir
            .path()
            .join(format!(".{KEY_FILE}.tmp{}", std::process::id()));
        std::fs::write(&stray, b"short").unwrap();
        let key = load_or_create_signing_key(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join(KEY_FILE)).unwrap().len(), 32);
        assert!(!stray.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [KEY_FILE]);
        let again = load_or_create_signing_key(dir.path()).unwrap();
        assert_eq!(key.to_bytes(), again.to_bytes());
    }
}
