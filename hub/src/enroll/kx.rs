//! The hub's static X25519 key-agreement key (`D/hub.kx`, 32 random bytes, mode 0600,
//! created at first start like `hub.key`): enrolled devices' status keys are agreed with
//! it (`drover_protocol::keys_agree`). This module must never log or return the secret
//! anywhere but to the join route that computes status keys with it.

use std::path::Path;

use drover_protocol::keys::{SealPublicKey, StatusKey};
use drover_protocol::keys_agree::{self, AgreeError, HubAgreePublic};

use crate::keys::{KeysError, load_or_create};

pub const KX_FILE: &str = "hub.kx";

/// The hub's key-agreement secret.
#[derive(Clone)]
pub struct HubKx([u8; 32]);

impl std::fmt::Debug for HubKx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HubKx(public {})",
            drover_protocol::join::hex(&self.public().0)
        )
    }
}

impl HubKx {
    /// Loads `<dir>/hub.kx`, creating it (mode 0600) when absent.
    pub fn load_or_create(dir: &Path) -> Result<HubKx, KeysError> {
        let path = dir.join(KX_FILE);
        let bytes = load_or_create(&path, || {
            let mut b = [0u8; 32];
            getrandom::getrandom(&mut b).map_err(KeysError::Random)?;
            Ok(b.to_vec())
        })?;
        let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeysError::BadKey {
            path: path.clone(),
            len: bytes.len(),
        })?;
        Ok(HubKx(secret))
    }

    pub fn public(&self) -> HubAgreePublic {
        keys_agree::hub_public(&self.0)
    }

    /// The status key agreed with the device whose sealing public key is `device`.
    pub fn status_key(&self, device: &SealPublicKey) -> Result<StatusKey, AgreeError> {
        keys_agree::hub_status_key(&self.0, device)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn created_once_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = HubKx::load_or_create(dir.path()).unwrap();
        let b = HubKx::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        let mode = std::fs::metadata(dir.path().join(KX_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{a:?}").contains(&drover_protocol::join::hex(&a.0)));
    }
}
