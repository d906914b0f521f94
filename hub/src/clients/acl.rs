//! The Mosquitto `acl_file` for a Drover fleet (`drover-hub broker-config mosquitto-acl`):
//! the topic rules the embedded broker cannot enforce, for a site that runs Mosquitto
//! through `broker.url`. Pure: names and grants in, file text out; it never reads the
//! store and never writes a file.
//!
//! Rules: the hub may use every Drover topic and the Home Assistant prefix; each device
//! reads its own `desired` and `cmd` and writes its own `status`, `telemetry`, `online`
//! and `cmd/resp`; each client reads the JSON mirrors, presence and the Home Assistant
//! prefix of every device, plus its `--subscribe` filters, and writes only its
//! `--publish` filters. No topic line stands before the first `user` line, so anonymous
//! logins get nothing. Together with sealed desired states this keeps a device to its own
//! topics: it cannot read another device's (sealed) state or commands, nor write another
//! device's status, presence or retained desired state. The password file holds each
//! device's derived MQTT password (`drover_protocol::keys`), not its credential.

use std::collections::BTreeMap;
use std::fmt::Write;

use drover_protocol::topics::ROOT;

use super::ClientView;

/// What the file is generated from.
pub struct AclInput<'a> {
    /// The hub's own login (`broker::HUB_CLIENT_ID`).
    pub hub: &'a str,
    pub devices: &'a [String],
    pub clients: &'a [ClientView],
    /// `dashboards.home_assistant_prefix`.
    pub home_assistant_prefix: &'a str,
}

/// The file's text: one `user` block per login, sorted by name.
pub fn mosquitto_acl(input: &AclInput<'_>) -> String {
    let ha = format!("{}/#", input.home_assistant_prefix);
    let mut out = String::from(
        "# Mosquitto acl_file for a Drover fleet, written by `drover-hub broker-config mosquitto-acl`.\n\
         # Write it again after `device add`, `device import`, `client add` or `client rm`, then\n\
         # reload Mosquitto (SIGHUP). Nothing before the first `user` line: anonymous logins get\n\
         # no topic at all.\n",
    );
    block(
        &mut out,
        "the hub: every Drover topic and Home Assistant discovery",
        input.hub,
        &[
            ("drover/#".to_owned(), "readwrite"),
            (ha.clone(), "readwrite"),
        ],
    );
    for d in input.devices {
        let dev = format!("{ROOT}/dev/{d}");
        let rules = [
            (format!("{dev}/desired"), "read"),
            (format!("{dev}/cmd"), "read"),
            (format!("{dev}/status"), "write"),
            (format!("{dev}/telemetry"), "write"),
            (format!("{dev}/online"), "write"),
            (format!("{dev}/cmd/resp"), "write"),
        ];
        block(&mut out, &format!("device {d}"), d, &rules);
    }
    for c in input.clients {
        let mut grants: BTreeMap<String, &str> = BTreeMap::new();
        for leaf in ["status/json", "telemetry/json", "online"] {
            grants.insert(format!("{ROOT}/dev/+/{leaf}"), "read");
        }
        grants.insert(ha.clone(), "read");
        for f in &c.subscribe {
            grants.entry(f.clone()).or_insert("read");
        }
        for f in &c.publish {
            let access = grants.get(f).map_or("write", |_| "readwrite");
            grants.insert(f.clone(), access);
        }
        let kind = if c.publish.is_empty() {
            "read-only"
        } else {
            "publishes"
        };
        let rules: Vec<(String, &str)> = grants.into_iter().collect();
        block(
            &mut out,
            &format!("client {} ({kind})", c.name),
            &c.name,
            &rules,
        );
    }
    out
}

fn block(out: &mut String, comment: &str, user: &str, rules: &[(String, &str)]) {
    let _ = write!(out, "\n# {comment}\nuser {user}\n");
    for (topic, access) in rules {
        let _ = writeln!(out, "topic {access} {topic}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_login_gets_exactly_its_rules() {
        let clients = [
            ClientView {
                name: "dash".to_owned(),
                publish: vec![],
                subscribe: vec!["drover/v1/sensors/#".to_owned()],
                created_ms: 0,
            },
            ClientView {
                name: "sensor".to_owned(),
                publish: vec!["drover/v1/sensors/#".to_owned()],
                subscribe: vec![],
                created_ms: 0,
            },
        ];
        let text = mosquitto_acl(&AclInput {
            hub: "drover-hub",
            devices: &["pi-1".to_owned()],
            clients: &clients,
            home_assistant_prefix: "homeassistant",
        });
        let first_user = text.find("\nuser ").unwrap();
        assert!(!text[..first_user].contains("\ntopic "), "{text}");
        let first_block = text.find("\n\n#").unwrap() + 1;
        let want = "
# the hub: every Drover topic and Home Assistant discovery
user drover-hub
topic readwrite drover/#
topic readwrite homeassistant/#

# device pi-1
user pi-1
topic read drover/v1/dev/pi-1/desired
topic read drover/v1/dev/pi-1/cmd
topic write drover/v1/dev/pi-1/status
topic write drover/v1/dev/pi-1/telemetry
topic write drover/v1/dev/pi-1/online
topic write drover/v1/dev/pi-1/cmd/resp

# client dash (read-only)
user dash
topic read drover/v1/dev/+/online
topic read drover/v1/dev/+/status/json
topic read drover/v1/dev/+/telemetry/json
topic read drover/v1/sensors/#
topic read homeassistant/#

# client sensor (publishes)
user sensor
topic read drover/v1/dev/+/online
topic read drover/v1/dev/+/status/json
topic read drover/v1/dev/+/telemetry/json
topic write drover/v1/sensors/#
topic read homeassistant/#
";
        assert_eq!(&text[first_block..], want);
    }
}
