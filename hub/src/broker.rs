//! The embedded MQTT broker (rumqttd): its configuration, sized for small memory, and
//! its authentication check.
//!
//! rumqttd's config accepts anything and `RouterConfig::default()` is all zeros, so every
//! field is set here, in code. rumqttd has no topic ACLs: authentication only proves who
//! connects; desired states are signed and statuses carry a MAC for the rest.
//! Two kinds of login are kept apart: devices (and the hub) in [`Credentials`], the map of
//! per-purpose keys (`drover_protocol::keys::DeviceKeys`: MQTT password, registry
//! password, status key, sealing public key) every device message is verified against,
//! and dashboard clients in
//! [`ClientCredentials`], which only this module's broker login check reads — so a
//! client's credential can log in but never authenticate a status, presence or sample.
//! It also knows how far the embedded broker goes (`capacity_warning`): measured in
//! bench/broker.md, beyond that a site should use Mosquitto through `broker.url`.
//! This module must never decide anything about devices beyond "may this client connect".

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, RwLock};

use crate::ratelimit::RateLimit;
use drover_protocol::keys::DeviceKeys;
use rumqttd::{Config, ConnectionSettings, RouterConfig, SegmentConfig, ServerSettings};

/// Client id / username the hub itself connects with.
pub const HUB_CLIENT_ID: &str = "drover-hub";

/// Device (and hub) name → the keys derived from its credential, computed once when the
/// device is loaded or added; updated by `device add`. No device credential is kept here.
pub type Credentials = Arc<RwLock<HashMap<String, DeviceKeys>>>;

/// Dashboard client name → credential (`client add`): broker logins only, never checked
/// against device messages or by the image registry.
pub type ClientCredentials = Arc<RwLock<HashMap<String, String>>>;

/// Everything that may log in to the embedded broker.
#[derive(Clone, Default)]
pub struct Logins {
    pub devices: Credentials,
    pub clients: ClientCredentials,
}

/// Largest MQTT packet the broker accepts: the one limit of `drover_protocol::limits`.
pub const MAX_PAYLOAD: usize = drover_protocol::MAX_MQTT_PACKET_BYTES;

/// Per-filter in-memory log for device filters: enough for a few messages.
const DEVICE_SEGMENT: SegmentConfig = SegmentConfig {
    max_segment_size: 4 * 1024,
    max_segment_count: 2,
};

/// The hub's wildcard filters get a larger log, so that a slow hub does not make rumqttd
/// skip acknowledged messages ("Read cursor start jumped").
const HUB_SEGMENT: SegmentConfig = SegmentConfig {
    max_segment_size: 1024 * 1024,
    max_segment_count: 8,
};

/// Devices the embedded broker serves comfortably. Measured (bench/broker.md, rumqttd
/// 0.20 alone on 2 shared cores): when every device reconnects at once (hub restart,
/// network outage) and fetches its retained desired state, rumqttd's router matches every
/// new subscription against every retained message and every new topic against every
/// subscription, so its work grows with the square of the fleet: 2,000 devices cost 2.7 s
/// of broker CPU and 120 MiB, 5,000 cost 18 s and 290 MiB, 10,000 cost 80 s and 580 MiB
/// (Mosquitto: 0.3 s / 18 MiB, 0.8 s / 34 MiB, 1.5 s / 59 MiB). No rumqttd setting or
/// newer release changes that.
pub const COMFORTABLE_MAX_DEVICES: usize = 2000;

/// Where the README explains the switch to an external broker.
pub const SWITCH_BROKER_DOC: &str = "README.md, \"When to switch to Mosquitto\"";

/// A warning for `serve` to log (at start and after registrations) when more devices are
/// registered than the embedded broker serves comfortably; None otherwise. Only meaningful
/// while the embedded broker runs (`broker.url` empty).
pub fn capacity_warning(registered_devices: usize) -> Option<String> {
    (registered_devices > COMFORTABLE_MAX_DEVICES).then(|| {
        format!(
            "{registered_devices} devices are registered, more than the embedded MQTT broker \
             serves well ({COMFORTABLE_MAX_DEVICES}): when they all reconnect, rumqttd needs \
             about 18 s of CPU and 290 MiB for 5,000 devices and 80 s and 580 MiB for 10,000 \
             (Mosquitto: 0.8 s and 34 MiB, 1.5 s and 59 MiB; bench/broker.md). Set \
             `broker.url` to a Mosquitto broker: {SWITCH_BROKER_DOC}"
        )
    })
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr} for the embedded broker: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the embedded broker thread: {0}")]
    Thread(std::io::Error),
}

/// May this device (or the hub) connect? Its client id must equal its username (a
/// duplicate client id would take over another device's session) and its password must be
/// that name's MQTT password (derived from its credential; never the credential itself).
pub fn authenticate(creds: &Credentials, client_id: &str, username: &str, password: &str) -> bool {
    check(creds, client_id, username, password, |k| &k.mqtt_password)
}

/// May this device pull from the hub's registry: HTTP Basic with its name and its registry
/// password (derived; the MQTT password is refused here).
pub fn authenticate_registry(creds: &Credentials, username: &str, password: &str) -> bool {
    check(creds, username, username, password, |k| {
        &k.registry_password
    })
}

fn check(
    creds: &Credentials,
    client_id: &str,
    username: &str,
    password: &str,
    which: fn(&DeviceKeys) -> &String,
) -> bool {
    if client_id != username || password.is_empty() {
        return false;
    }
    let Ok(map) = creds.read() else {
        return false;
    };
    map.get(username)
        .is_some_and(|k| constant_time_eq(which(k).as_bytes(), password.as_bytes()))
}

/// A dashboard client's login: the same rules, against its own credential.
fn authenticate_client(
    clients: &ClientCredentials,
    client_id: &str,
    username: &str,
    password: &str,
) -> bool {
    if client_id != username || password.is_empty() {
        return false;
    }
    let Ok(map) = clients.read() else {
        return false;
    };
    map.get(username)
        .is_some_and(|c| constant_time_eq(c.as_bytes(), password.as_bytes()))
}

/// The hub's own entry: it logs in with its credential as it is (it is no device and
/// sends no status), in the same map so that the broker lets it in.
pub fn hub_keys(credential: &str) -> DeviceKeys {
    DeviceKeys {
        mqtt_password: credential.to_owned(),
        ..DeviceKeys::from_credential(credential.as_bytes())
    }
}

/// May this client log in to the broker: a device, the hub, or a dashboard client, by the
/// same rules as [`authenticate`]. Device names and client names never overlap (the
/// controller refuses one named like the other).
pub fn authenticate_login(
    logins: &Logins,
    client_id: &str,
    username: &str,
    password: &str,
) -> bool {
    authenticate(&logins.devices, client_id, username, password)
        || authenticate_client(&logins.clients, client_id, username, password)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `desired` filter of every device registered when the broker starts.
fn desired_filters(creds: &Credentials) -> Vec<String> {
    let Ok(map) = creds.read() else {
        return Vec::new();
    };
    let mut names: Vec<&String> = map.keys().filter(|n| *n != HUB_CLIENT_ID).collect();
    names.sort();
    let root = drover_protocol::topics::ROOT;
    names
        .into_iter()
        .map(|n| format!("{root}/dev/{n}/desired"))
        .collect()
}

/// The complete rumqttd configuration: one MQTT 3.1.1 listener, small segments.
pub fn broker_config(listen: SocketAddr, max_connections: usize, logins: Logins) -> Config {
    // rumqttd matches every new filter against every topic it has seen, and every new
    // topic against every filter. Creating the registered devices' filters up front skips
    // the first and lets the hub's first publish to each device be matched once, at start
    // (bench/broker.md: about a third less broker CPU when a whole fleet reconnects).
    let initialized_filters = Some(desired_filters(&logins.devices));
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let limit = Mutex::new(RateLimit::new(60_000));
    connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
        let ok = authenticate_login(&logins, &client_id, &user, &pass);
        let mut limit = limit.lock().unwrap_or_else(|e| e.into_inner());
        if !ok && limit.allow(&client_id, crate::now_ms()) {
            tracing::warn!(client_id = %client_id, username = %user, "broker refused a connection: bad credentials (logged once a minute per client)");
        }
        async move { ok }
    });
    let server = ServerSettings {
        name: "drover-v4".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let hub_filters = ["status", "online", "cmd/resp"].map(|leaf| {
        (
            format!("{}/dev/+/{leaf}", drover_protocol::topics::ROOT),
            HUB_SEGMENT,
        )
    });
    let router = RouterConfig {
        max_connections,
        max_outgoing_packet_count: 200,
        max_segment_size: DEVICE_SEGMENT.max_segment_size,
        max_segment_count: DEVICE_SEGMENT.max_segment_count,
        custom_segment: Some(hub_filters.into_iter().collect()),
        initialized_filters,
        shared_subscriptions_strategy: Default::default(),
    };
    Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("drover".to_owned(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}

/// Starts the broker on its own thread. rumqttd binds inside that thread and only logs a
/// failure, so the address is tried here first to turn "port in use" into an error.
pub fn spawn(
    listen: SocketAddr,
    max_connections: usize,
    logins: Logins,
) -> Result<(), BrokerError> {
    drop(
        TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?,
    );
    let config = broker_config(listen, max_connections, logins);
    std::thread::Builder::new()
        .name("broker".to_owned())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded broker stopped: {e}");
            }
        })
        .map_err(BrokerError::Thread)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use drover_protocol::keys::{mqtt_password, registry_password};

    fn creds() -> Credentials {
        Arc::new(RwLock::new(HashMap::from([
            ("pi-1".to_owned(), DeviceKeys::from_credential(b"secret-1")),
            ("pi-2".to_owned(), DeviceKeys::from_credential(b"secret-2")),
            (HUB_CLIENT_ID.to_owned(), hub_keys("hub-secret")),
        ])))
    }

    fn pw(credential: &str) -> String {
        mqtt_password(credential.as_bytes())
    }

    #[test]
    fn a_device_connects_with_its_own_name_and_derived_password() {
        assert!(authenticate(&creds(), "pi-1", "pi-1", &pw("secret-1")));
        assert!(authenticate(
            &creds(),
            HUB_CLIENT_ID,
            HUB_CLIENT_ID,
            "hub-secret"
        ));
    }

    #[test]
    fn the_credential_itself_or_the_registry_password_is_no_mqtt_password() {
        assert!(!authenticate(&creds(), "pi-1", "pi-1", "secret-1"));
        let reg = registry_password(b"secret-1");
        assert!(!authenticate(&creds(), "pi-1", "pi-1", &reg));
        assert!(authenticate_registry(&creds(), "pi-1", &reg));
        assert!(!authenticate_registry(&creds(), "pi-1", &pw("secret-1")));
        assert!(!authenticate_registry(&creds(), "pi-1", "secret-1"));
        assert!(!authenticate_registry(&creds(), "pi-2", &reg));
    }

    #[test]
    fn client_id_must_equal_username() {
        assert!(!authenticate(&creds(), "pi-2", "pi-1", &pw("secret-1")));
        assert!(!authenticate(&creds(), "", "pi-1", &pw("secret-1")));
    }

    #[test]
    fn wrong_or_other_devices_password_is_refused() {
        assert!(!authenticate(&creds(), "pi-1", "pi-1", &pw("secret-2")));
        assert!(!authenticate(&creds(), "pi-1", "pi-1", ""));
        assert!(!authenticate(&creds(), "pi-3", "pi-3", &pw("secret-1")));
    }

    #[test]
    fn a_device_added_later_is_accepted() {
        let c = creds();
        assert!(!authenticate(&c, "pi-3", "pi-3", &pw("s3")));
        c.write()
            .unwrap()
            .insert("pi-3".to_owned(), DeviceKeys::from_credential(b"s3"));
        assert!(authenticate(&c, "pi-3", "pi-3", &pw("s3")));
    }

    fn logins() -> Logins {
        Logins {
            devices: creds(),
            clients: Arc::new(RwLock::new(HashMap::from([(
                "dash".to_owned(),
                "dash-secret".to_owned(),
            )]))),
        }
    }

    #[test]
    fn clients_log_in_to_the_broker_but_are_no_devices() {
        let l = logins();
        assert!(authenticate_login(&l, "dash", "dash", "dash-secret"));
        assert!(authenticate_login(&l, "pi-1", "pi-1", &pw("secret-1")));
        assert!(!authenticate_login(&l, "dash", "dash", &pw("secret-1")));
        assert!(!authenticate_login(&l, "pi-1", "pi-1", "dash-secret"));
        assert!(!authenticate_login(&l, "pi-1", "dash", "dash-secret"));
        // The map device messages and registry pulls are checked against has no client.
        assert!(!authenticate(&l.devices, "dash", "dash", "dash-secret"));
    }

    #[test]
    fn no_capacity_warning_up_to_the_measured_maximum() {
        assert_eq!(capacity_warning(0), None);
        assert_eq!(capacity_warning(COMFORTABLE_MAX_DEVICES), None);
    }

    #[test]
    fn capacity_warning_names_the_count_and_the_way_out() {
        let w = capacity_warning(COMFORTABLE_MAX_DEVICES + 1).expect("a warning");
        assert!(w.starts_with("2001 devices are registered"), "{w}");
        assert!(w.contains("(2000)") && w.contains("580 MiB"), "{w}");
        assert!(w.contains("`broker.url`") && w.contains("Mosquitto"), "{w}");
        assert!(w.contains("When to switch to Mosquitto"), "{w}");
    }

    #[test]
    fn every_router_field_is_set_and_small() {
        let cfg = broker_config("127.0.0.1:1".parse().unwrap(), 10, logins());
        assert_eq!(cfg.router.max_segment_size, 4096);
        assert_eq!(cfg.router.custom_segment.as_ref().unwrap().len(), 3);
        assert_eq!(
            cfg.router.initialized_filters.as_deref(),
            Some(
                &["drover/v1/dev/pi-1/desired", "drover/v1/dev/pi-2/desired"].map(String::from)[..]
            )
        );
        let v4 = cfg.v4.unwrap();
        let server = v4.values().next().unwrap();
        assert_eq!(server.next_connection_delay_ms, 0);
        assert!(server.connections.external_auth.is_some());
    }
}
