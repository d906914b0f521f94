//! Enrollment on the controller thread: join tokens (create, list, revoke), devices that
//! join with one, and `device revoke`. A join checks the token and takes one of its uses
//! in the same transaction that registers the device, so two devices racing for the last
//! use cannot both get it. A revoked device leaves the snapshot (the planner places
//! nothing on it), the shared key map (broker and registry refuse it, the hub drops what
//! it sends) and keeps its rows for audit.

use std::sync::Arc;

use drover_protocol::Name;
use drover_protocol::keys::DeviceKeys;

use super::devices::check_device_name;
use super::{Controller, ControllerError, Reply};
use crate::enroll::check::{TokenRefusal, check_token};
use crate::enroll::views::{
    DeviceRevoked, MAX_EXPIRES_MS, MAX_USES, TokenCreateRequest, TokenView,
};
use crate::fleet::DeviceEntry;
use crate::store::tokens::TokenRow;
use crate::store::{DeviceRow, Event, EventReason};
use crate::views::labels_string;

/// A device asking to join, its keys already computed by the join route (the status key
/// agreed with the hub's key-agreement key).
pub struct Joining {
    pub token_id: String,
    pub token_secret: String,
    pub name: String,
    pub keys: DeviceKeys,
}

/// A token just made: its row and the secret (returned once, never stored).
pub struct NewToken {
    pub view: TokenView,
    pub secret: String,
}

/// The enrollment commands of the controller's channel.
pub enum EnrollCommand {
    CreateToken {
        req: TokenCreateRequest,
        reply: Reply<NewToken>,
    },
    ListTokens {
        reply: Reply<Vec<TokenView>>,
    },
    RevokeToken {
        id: String,
        reply: Reply<TokenView>,
    },
    /// Ok(Err(reason)): the token was refused (the client learns only "refused").
    Join {
        joining: Box<Joining>,
        reply: Reply<Result<String, TokenRefusal>>,
    },
    RevokeDevice {
        name: String,
        reply: Reply<DeviceRevoked>,
    },
}

impl Controller {
    pub(super) fn handle_enroll(&mut self, cmd: EnrollCommand, now_ms: u64) {
        match cmd {
            EnrollCommand::CreateToken { req, reply } => {
                drop(reply.send(self.create_token(req, now_ms)));
            }
            EnrollCommand::ListTokens { reply } => {
                let tokens = self.store.tokens().map_err(ControllerError::from);
                drop(reply.send(tokens.map(|t| t.iter().map(TokenView::from).collect())));
            }
            EnrollCommand::RevokeToken { id, reply } => {
                drop(reply.send(self.revoke_token(&id, now_ms)));
            }
            EnrollCommand::Join { joining, reply } => {
                drop(reply.send(self.join(*joining, now_ms)));
            }
            EnrollCommand::RevokeDevice { name, reply } => {
                drop(reply.send(self.revoke_device(&name, now_ms)));
            }
        }
    }

    fn create_token(
        &mut self,
        req: TokenCreateRequest,
        now_ms: u64,
    ) -> Result<NewToken, ControllerError> {
        for (k, v) in &req.labels {
            crate::fleet::selector::check_label_key(k)
                .and_then(|()| crate::fleet::selector::check_label_value(v))
                .map_err(|e| ControllerError::Invalid(e.to_string()))?;
        }
        if req.expires_ms == 0 || req.expires_ms > MAX_EXPIRES_MS {
            let msg = "--expires: expected more than 0s and at most 8760h (365 days)";
            return Err(ControllerError::Invalid(msg.to_owned()));
        }
        if req.uses == 0 || req.uses > MAX_USES {
            let msg = format!("--uses: expected 1..={MAX_USES}, got {}", req.uses);
            return Err(ControllerError::Invalid(msg));
        }
        let (id, secret) = random_id_and_secret()?;
        let row = TokenRow {
            id: id.clone(),
            secret_sha256: drover_protocol::join::secret_sha256(&secret),
            labels: req.labels,
            expires_ms: now_ms.saturating_add(req.expires_ms),
            uses_left: req.uses,
            created_ms: now_ms,
            revoked_ms: None,
        };
        if !self.store.insert_token(&row)? {
            return Err(ControllerError::Exists(format!("token {id}")));
        }
        tracing::info!(token = %id, uses = req.uses, labels = %labels_string(&row.labels), "join token created");
        Ok(NewToken {
            view: TokenView::from(&row),
            secret,
        })
    }

    fn revoke_token(&mut self, id: &str, now_ms: u64) -> Result<TokenView, ControllerError> {
        if !self.store.revoke_token(id, now_ms)? {
            return Err(ControllerError::NotFound {
                kind: "join token",
                name: id.to_owned(),
            });
        }
        tracing::info!(token = %id, "join token revoked");
        let row = self.store.token(id)?.ok_or(ControllerError::Stopped)?;
        Ok(TokenView::from(&row))
    }

    fn join(
        &mut self,
        j: Joining,
        now_ms: u64,
    ) -> Result<Result<String, TokenRefusal>, ControllerError> {
        let row = self.store.token(&j.token_id)?;
        if let Err(reason) = check_token(row.as_ref(), &j.token_secret, now_ms) {
            self.store
                .bump_counter(&format!("join_refused_{}", reason.as_str()), 1)?;
            tracing::warn!(token = ?j.token_id, device = ?j.name, reason = reason.as_str(), "join refused");
            return Ok(Err(reason));
        }
        let labels = row.map(|r| r.labels).unwrap_or_default();
        let name = self.free_device_name(&j.name)?;
        let mut next = self.snapshot.clone();
        let entry = DeviceEntry {
            labels: Arc::new(labels.clone()),
            ..DeviceEntry::default()
        };
        next.devices.insert(name.clone(), entry);
        let device = DeviceRow {
            name: name.to_string(),
            labels,
            // Enrolled: the hub never saw a credential; its keys are in `device_keys`.
            credential: String::new(),
            created_ms: now_ms,
        };
        // Known before the commit, which seals the first desired state to it.
        self.set_device_keys(&device.name, Some(j.keys.clone()));
        let committed = self.commit(next, now_ms, |s, _| {
            if !s.take_token_use(&j.token_id)? {
                return Err(ControllerError::Invalid("the join token is used up".into()));
            }
            s.insert_device(&device)?;
            s.insert_device_keys(&device.name, &j.keys, &j.token_id)?;
            let msg = format!(
                "joined with token {} and labels {}",
                j.token_id,
                labels_string(&device.labels)
            );
            s.add_event(&Event::device(
                now_ms,
                &device.name,
                EventReason::Registered,
                msg,
            ))?;
            Ok(())
        });
        if let Err(e) = committed {
            self.set_device_keys(&device.name, None);
            return Err(e);
        }
        tracing::info!(device = %name, token = %j.token_id, "device joined");
        Ok(Ok(device.name))
    }

    /// A valid device name that no device (revoked ones included) and no client holds.
    fn free_device_name(&self, name: &str) -> Result<Name, ControllerError> {
        let name = check_device_name(name)?;
        if self.store.device_revoked(name.as_str())?.is_some() {
            return Err(ControllerError::NameTaken {
                name: name.to_string(),
                kind: "revoked device (kept for audit; choose another name)",
            });
        }
        if self.snapshot.devices.contains_key(&name) || self.store.device_exists(name.as_str())? {
            return Err(ControllerError::Exists(name.to_string()));
        }
        if self.is_client(name.as_str()) {
            return Err(ControllerError::NameTaken {
                name: name.to_string(),
                kind: "client",
            });
        }
        Ok(name)
    }

    fn revoke_device(&mut self, name: &str, now_ms: u64) -> Result<DeviceRevoked, ControllerError> {
        if !self.store.device_exists(name)? {
            return Err(ControllerError::NotFound {
                kind: "device",
                name: name.to_owned(),
            });
        }
        if let Some(revoked_ms) = self.store.device_revoked(name)? {
            return Ok(DeviceRevoked {
                name: name.to_owned(),
                revoked_ms,
                newly: false,
            });
        }
        let mut next = self.snapshot.clone();
        if let Ok(n) = Name::new(name) {
            next.devices.remove(&n);
            next.desired.remove(&n);
        }
        self.commit(next, now_ms, |s, _| {
            s.revoke_device(name, now_ms)?;
            let msg = "revoked: its keys are deleted from the broker and registry logins, \
                       nothing is placed on it and what it sends is ignored";
            s.add_event(&Event::device(
                now_ms,
                name,
                EventReason::Deleted,
                msg.to_owned(),
            ))?;
            Ok(())
        })?;
        // Cut off at once: the broker's next login check, the registry, the verifiers.
        self.set_device_keys(name, None);
        if let Ok(n) = Name::new(name) {
            self.payloads.remove(&n);
        }
        tracing::warn!(device = %name, "device revoked");
        Ok(DeviceRevoked {
            name: name.to_owned(),
            revoked_ms: now_ms,
            newly: true,
        })
    }

    fn set_device_keys(&self, name: &str, keys: Option<DeviceKeys>) {
        let mut creds = self.creds.write().unwrap_or_else(|e| e.into_inner());
        match keys {
            Some(k) => creds.insert(name.to_owned(), k),
            None => creds.remove(name),
        };
    }
}

/// 6 random bytes of id and 16 of secret, as lowercase hex.
fn random_id_and_secret() -> Result<(String, String), ControllerError> {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 16];
    getrandom::getrandom(&mut id)
        .and_then(|()| getrandom::getrandom(&mut secret))
        .map_err(|e| ControllerError::Keys(crate::keys::KeysError::Random(e)))?;
    Ok((
        drover_protocol::join::hex(&id),
        drover_protocol::join::hex(&secret),
    ))
}

#[cfg(test)]
#[path = "enroll_tests.rs"]
mod tests;
