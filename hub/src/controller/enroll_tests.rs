//! Enrollment on the controller: a token is used up in the registering transaction,
//! refusals carry their reason, revoked devices leave the logins and the fleet (also
//! after a restart) and their names stay taken.

use std::collections::BTreeMap;
use std::path::Path;

use drover_protocol::keys::{DeviceKeys, DeviceSecrets};
use ed25519_dalek::SigningKey;

use super::*;
use crate::controller::{Out, Settings};
use crate::enroll::views::TokenCreateRequest;
use crate::store::Store;

fn controller(dir: &Path) -> (Controller, tokio::sync::mpsc::UnboundedReceiver<Out>) {
    let store = Store::open(&dir.join("fleet.db")).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = Settings {
        offline_after_ms: 90_000,
        device_broker: "mqtts://hub:8883".to_owned(),
        embedded_broker: true,
        device_ca: None,
        policy: Default::default(),
    };
    let key = SigningKey::from_bytes(&[7; 32]);
    let c = Controller::new(store, key, "hubcred".to_owned(), settings, tx).unwrap();
    (c, rx)
}

fn token(c: &mut Controller, uses: u32) -> NewToken {
    let req = TokenCreateRequest {
        labels: BTreeMap::from([("role".to_owned(), "sensor".to_owned())]),
        expires_ms: 60_000,
        uses,
    };
    c.create_token(req, 1_000).unwrap()
}

fn joining(t: &NewToken, name: &str, secret: Option<&str>) -> Joining {
    let keys = DeviceKeys {
        // The hub side of the agreement is the route's; any key stands in for it here.
        status_key: drover_protocol::keys::StatusKey::from_bytes([9; 32]),
        ..DeviceSecrets::derive(name.as_bytes()).hub_view()
    };
    Joining {
        token_id: t.view.id.clone(),
        token_secret: secret.unwrap_or(&t.secret).to_owned(),
        name: name.to_owned(),
        keys,
    }
}

#[test]
fn a_token_enrolls_as_many_devices_as_it_has_uses() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _rx) = controller(dir.path());
    let t = token(&mut c, 1);
    assert_eq!(c.store.token(&t.view.id).unwrap().unwrap().uses_left, 1);
    let wrong = c.join(joining(&t, "pi-1", Some("0".repeat(32).as_str())), 2_000);
    assert_eq!(wrong.unwrap(), Err(TokenRefusal::WrongSecret));
    assert_eq!(
        c.join(joining(&t, "pi-1", None), 2_000).unwrap(),
        Ok("pi-1".into())
    );
    let creds = c.credentials();
    assert_eq!(
        creds.read().unwrap()["pi-1"].status_key.as_bytes(),
        &[9; 32],
        "the keys the route computed, not any derived from a credential"
    );
    assert_eq!(
        c.join(joining(&t, "pi-2", None), 2_000).unwrap(),
        Err(TokenRefusal::UsedUp)
    );
    let stats = c.store.counters().unwrap();
    assert_eq!(stats["join_refused_used_up"], 1);
    assert_eq!(stats["join_refused_wrong_secret"], 1);
    let labels = &c.snapshot.devices[&Name::new("pi-1").unwrap()].labels;
    assert_eq!(labels.get("role").map(String::as_str), Some("sensor"));
}

#[test]
fn a_revoked_device_is_cut_off_stays_listed_and_its_name_stays_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _rx) = controller(dir.path());
    let t = token(&mut c, 5);
    c.join(joining(&t, "pi-1", None), 2_000).unwrap().unwrap();
    c.join(joining(&t, "pi-2", None), 2_000).unwrap().unwrap();
    let r = c.revoke_device("pi-1", 3_000).unwrap();
    assert!(r.newly);
    assert!(!c.revoke_device("pi-1", 4_000).unwrap().newly);
    assert!(!c.credentials().read().unwrap().contains_key("pi-1"));
    assert!(!c.snapshot.devices.contains_key(&Name::new("pi-1").unwrap()));
    assert!(matches!(
        c.join(joining(&t, "pi-1", None), 5_000),
        Err(ControllerError::NameTaken { .. })
    ));
    assert!(matches!(
        c.add_device("pi-1", BTreeMap::new(), 5_000),
        Err(ControllerError::NameTaken { .. })
    ));
    assert!(matches!(
        c.revoke_device("pi-9", 5_000),
        Err(ControllerError::NotFound { .. })
    ));
    // After a restart: the revoked one stays out, the enrolled one keeps its keys.
    let keys = c.credentials().read().unwrap()["pi-2"].clone();
    drop(c);
    let (c, _rx) = controller(dir.path());
    let creds = c.credentials();
    let creds = creds.read().unwrap();
    assert!(!creds.contains_key("pi-1"));
    assert_eq!(creds["pi-2"], keys);
    assert_eq!(c.device_count(), 1);
    assert_eq!(c.store.device_revoked("pi-1").unwrap(), Some(3_000));
}
