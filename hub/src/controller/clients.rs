//! Registering and removing dashboard clients (`client add`, `client rm`): broker logins
//! that are not devices. Devices and clients share one namespace, checked here for
//! clients and in `devices.rs` for devices. A client's credential goes only into the
//! broker's client map, never into the device credentials that verify device messages.

use super::{Controller, ControllerError, ReadSide};
use crate::clients::{AddClientRequest, ClientAdded, ClientView, check_grants};
use crate::fleet::RESERVED_DEVICE_PREFIX;
use crate::keys;
use crate::store::ClientRow;

impl Controller {
    /// Registers a client with a fresh credential.
    pub fn add_client(
        &mut self,
        req: AddClientRequest,
        now_ms: u64,
    ) -> Result<ClientAdded, ControllerError> {
        let name = check_client_name(&req.name)?;
        let publish =
            check_grants(&req.publish).map_err(|e| ControllerError::Invalid(e.to_string()))?;
        let subscribe =
            check_grants(&req.subscribe).map_err(|e| ControllerError::Invalid(e.to_string()))?;
        if self.store.device_exists(&name)? {
            return Err(ControllerError::NameTaken {
                name,
                kind: "device",
            });
        }
        let row = ClientRow {
            name,
            credential: keys::new_credential()?,
            publish,
            subscribe,
            created_ms: now_ms,
        };
        if !self.store.atomically(|s| s.insert_client(&row))? {
            return Err(ControllerError::NameTaken {
                name: row.name,
                kind: "client",
            });
        }
        self.clients
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(row.name.clone(), row.credential.clone());
        tracing::info!(client = %row.name, publish = ?row.publish, "client registered");
        Ok(ClientAdded {
            credential: row.credential.clone(),
            broker: self.settings.device_broker.clone(),
            client: view(row),
        })
    }

    /// Removes a client: it cannot log in again. A connection it holds stays open until
    /// it disconnects (rumqttd cannot close one from outside).
    pub fn remove_client(&mut self, name: &str) -> Result<ClientView, ControllerError> {
        let removed = self.store.atomically(|s| {
            let row = s.client(name)?;
            if row.is_some() {
                s.delete_client(name)?;
            }
            Ok::<_, ControllerError>(row)
        })?;
        let row = removed.ok_or_else(|| ControllerError::NotFound {
            kind: "client",
            name: name.to_owned(),
        })?;
        self.clients
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        tracing::info!(client = %name, "client removed");
        Ok(view(row))
    }

    /// Whether `name` is a registered client (devices may not take it).
    pub(super) fn is_client(&self, name: &str) -> bool {
        self.clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }
}

impl ReadSide {
    /// `client ls`.
    pub fn clients(&self) -> Result<Vec<ClientView>, ControllerError> {
        Ok(self.store.clients()?.into_iter().map(view).collect())
    }

    /// Every device name and every client, for broker ACL files.
    pub fn broker_logins(&self) -> Result<(Vec<String>, Vec<ClientView>), ControllerError> {
        let devices = self.store.devices()?.into_iter().map(|d| d.name).collect();
        Ok((devices, self.clients()?))
    }
}

fn view(row: ClientRow) -> ClientView {
    ClientView {
        name: row.name,
        publish: row.publish,
        subscribe: row.subscribe,
        created_ms: row.created_ms,
    }
}

/// A client name: a valid name (like a device's), not reserved for the hub.
fn check_client_name(name: &str) -> Result<String, ControllerError> {
    let name = drover_protocol::Name::new(name)
        .map_err(|e| ControllerError::Invalid(format!("client {e}")))?;
    if name.as_str().starts_with(RESERVED_DEVICE_PREFIX) {
        return Err(ControllerError::Invalid(format!(
            "client names starting with {RESERVED_DEVICE_PREFIX:?} are reserved for the hub"
        )));
    }
    Ok(name.to_string())
}
