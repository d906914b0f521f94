//! Dashboard clients: broker logins for Node-RED, Grafana, Telegraf or Home Assistant that
//! are not devices. A client can log in to the broker, but is never in `get devices`, gets
//! no desired state, and its credential never verifies a device message (the controller
//! keeps it out of the device credentials).
//!
//! Clients are read-only unless `--publish` grants them topic filters. The embedded broker
//! (rumqttd) cannot enforce that: it authenticates, it does not restrict topics. What the
//! hub enforces itself: device and client names never overlap, so a client can never
//! speak for a device topic, and no grant may reach into the device topics
//! (`drover/v1/dev/…`). For brokers with ACLs, [`acl`] writes the rules (Mosquitto).
//!
//! This module holds the pure parts (filter checks, views, the ACL file) and the HTTP
//! routes; it never touches the store (the controller does).

pub mod acl;
pub mod routes;

use serde::{Deserialize, Serialize};

/// Every device topic: no client grant may overlap it (the hub's JSON mirrors under it are
/// readable by every client anyway).
pub const DEVICE_TOPICS: &str = "drover/v1/dev/+/#";

/// Longest topic filter accepted (a sane bound far below MQTT's 65,535 bytes).
pub const MAX_FILTER_LEN: usize = 256;

/// Topic filters one client may be granted at most (each way).
pub const MAX_FILTERS: usize = 32;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientsError {
    #[error("topic filter {filter:?}: {reason}")]
    BadFilter {
        filter: String,
        reason: &'static str,
    },
    #[error(
        "topic filter {filter:?} reaches into the device topics ({DEVICE_TOPICS}): only devices and the hub may use those (every client may already read the JSON mirrors and presence)"
    )]
    DeviceTopics { filter: String },
    #[error("at most {MAX_FILTERS} topic filters per client and direction")]
    TooMany,
}

/// `POST /v1/clients`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddClientRequest {
    pub name: String,
    /// Topic filters it may publish to; empty: read-only.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Topic filters it may read besides the mirrors, presence and Home Assistant topics.
    #[serde(default)]
    pub subscribe: Vec<String>,
}

/// A client as `client ls` shows it (never with its credential).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    pub name: String,
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    pub created_ms: u64,
}

/// `client add`'s answer: the only time the credential is shown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientAdded {
    #[serde(flatten)]
    pub client: ClientView,
    pub credential: String,
    /// `host:port` of the broker, as devices are told.
    pub broker: String,
}

/// `GET /v1/broker/mosquitto-acl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BrokerConfigFile {
    pub text: String,
}

/// Checks one filter a client is granted: a valid MQTT topic filter (`+` and `#` only as
/// whole levels, `#` last), printable without spaces (it goes into ACL files), not a `$`
/// broker topic, and clear of the device topics.
pub fn check_grant(filter: &str) -> Result<(), ClientsError> {
    let bad = |reason| ClientsError::BadFilter {
        filter: filter.chars().take(MAX_FILTER_LEN).collect(),
        reason,
    };
    if filter.is_empty() {
        return Err(bad("empty"));
    }
    if filter.len() > MAX_FILTER_LEN {
        return Err(bad("longer than 256 bytes"));
    }
    if filter.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("spaces and control characters are not allowed"));
    }
    if filter.starts_with('$') {
        return Err(bad("`$` topics belong to the broker"));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains(['+', '#']) && level.len() > 1 {
            return Err(bad("`+` and `#` must stand alone in their level"));
        }
        if *level == "#" && i + 1 != levels.len() {
            return Err(bad("`#` may only be the last level"));
        }
    }
    if filters_intersect(filter, DEVICE_TOPICS) {
        return Err(ClientsError::DeviceTopics {
            filter: filter.to_owned(),
        });
    }
    Ok(())
}

/// Checks a list of grants (at most [`MAX_FILTERS`]) and returns it sorted, without
/// duplicates.
pub fn check_grants(filters: &[String]) -> Result<Vec<String>, ClientsError> {
    if filters.len() > MAX_FILTERS {
        return Err(ClientsError::TooMany);
    }
    for f in filters {
        check_grant(f)?;
    }
    let mut out = filters.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether some topic matches both filters (valid filters; `$` topics aside).
pub fn filters_intersect(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    levels_intersect(&a, &b)
}

fn levels_intersect(a: &[&str], b: &[&str]) -> bool {
    match (a.first(), b.first()) {
        // `#` also matches the parent level itself (`a/#` matches `a`).
        (Some(&"#"), _) | (_, Some(&"#")) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(x), Some(y)) => {
            (*x == "+" || *y == "+" || x == y) && levels_intersect(&a[1..], &b[1..])
        }
    }
}

/// The ready-to-paste lines `client add` prints: a `mosquitto_sub` watching the fleet's
/// JSON mirrors, and what to type into Node-RED's broker node.
pub fn usage_hint(added: &ClientAdded) -> String {
    let name = &added.client.name;
    let (host, port) = added
        .broker
        .rsplit_once(':')
        .unwrap_or((added.broker.as_str(), "1883"));
    let cred = &added.credential;
    let access = if added.client.publish.is_empty() {
        "read-only".to_owned()
    } else {
        format!("may publish to {}", added.client.publish.join(", "))
    };
    format!(
        "# Client {name} registered ({access}). Its credential is shown only now:\n\
         credential: {cred}\n\n\
         # Watch every device's status and telemetry as JSON:\n\
         mosquitto_sub -h {host} -p {port} -i {name} -u {name} -P '{cred}' \\\n  \
         -t 'drover/v1/dev/+/status/json' -t 'drover/v1/dev/+/telemetry/json' -v\n\n\
         # Node-RED (mqtt-broker node): server {host}, port {port}, protocol MQTT 3.1.1,\n\
         # client ID {name} (it must equal the username), username {name}, password as above.\n\
         # The embedded broker checks who logs in, not which topics a client uses: for\n\
         # enforced read-only access run Mosquitto with `drover-hub broker-config mosquitto-acl`.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_intersect_level_by_level() {
        assert!(filters_intersect("#", DEVICE_TOPICS));
        assert!(filters_intersect("+/#", DEVICE_TOPICS));
        assert!(filters_intersect("drover/#", DEVICE_TOPICS));
        assert!(filters_intersect("drover/v1/+/pi-1/status", DEVICE_TOPICS));
        assert!(filters_intersect("drover/v1/dev/pi-1", DEVICE_TOPICS));
        assert!(filters_intersect("+/+/+/+/+", DEVICE_TOPICS));
        assert!(!filters_intersect("drover/v1/sensors/#", DEVICE_TOPICS));
        assert!(!filters_intersect("drover/v1", DEVICE_TOPICS));
        assert!(!filters_intersect("drover/v2/dev/x/status", DEVICE_TOPICS));
        assert!(!filters_intersect("+/+", "a/b/c"));
        assert!(filters_intersect("a/+/c", "a/b/+"));
        assert!(!filters_intersect("a/b", "a/c"));
    }

    #[test]
    fn grants_must_be_valid_filters_clear_of_device_topics() {
        for ok in ["drover/v1/sensors/#", "home/+/temp", "a", "homeassistant/#"] {
            assert_eq!(check_grant(ok), Ok(()), "{ok}");
        }
        let device = |f: &str| matches!(check_grant(f), Err(ClientsError::DeviceTopics { .. }));
        assert!(device("#"));
        assert!(device("drover/v1/dev/pi-1/status"));
        assert!(device("drover/+/dev/+/online"));
        assert!(device("drover/v1/dev/pi-1/status/json"));
        for bad in ["", "a/#/b", "a/b#", "a+/b", "$SYS/#", "a b", "a\nb"] {
            assert!(
                matches!(check_grant(bad), Err(ClientsError::BadFilter { .. })),
                "{bad:?}"
            );
        }
        let long = "a/".repeat(200);
        assert!(check_grant(&long).is_err());
        let many: Vec<String> = (0..=MAX_FILTERS).map(|i| format!("t/{i}")).collect();
        assert_eq!(check_grants(&many), Err(ClientsError::TooMany));
        let twice = ["b".to_owned(), "a".to_owned(), "b".to_owned()];
        assert_eq!(check_grants(&twice).unwrap(), ["a", "b"]);
    }

    #[test]
    fn the_hint_is_ready_to_paste() {
        let added = ClientAdded {
            client: ClientView {
                name: "dash".to_owned(),
                publish: vec![],
                subscribe: vec![],
                created_ms: 1,
            },
            credential: "s3cret".to_owned(),
            broker: "hub.local:1883".to_owned(),
        };
        let h = usage_hint(&added);
        assert!(
            h.contains("read-only") && h.contains("credential: s3cret"),
            "{h}"
        );
        assert!(
            h.contains("mosquitto_sub -h hub.local -p 1883 -i dash -u dash -P 's3cret'"),
            "{h}"
        );
        assert!(h.contains("client ID dash"), "{h}");
    }
}
