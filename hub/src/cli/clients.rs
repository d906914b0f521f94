//! `client add|ls|rm` and `broker-config mosquitto-acl`: dashboard logins to the broker
//! and the ACL file for brokers that can enforce topics. Only calls the API and prints.

use super::output::{self, ago};
use super::{CliError, Client, Format, client::escape};
use crate::clients::{AddClientRequest, BrokerConfigFile, ClientAdded, ClientView, usage_hint};

/// `client add NAME [--publish F]... [--subscribe F]...`: prints the credential once.
pub fn add(
    client: &Client,
    name: &str,
    publish: Vec<String>,
    subscribe: Vec<String>,
    format: Format,
) -> Result<(), CliError> {
    let req = AddClientRequest {
        name: name.to_owned(),
        publish,
        subscribe,
    };
    let added: ClientAdded = client.post("/v1/clients", &req)?;
    output::print(&added, format, usage_hint)
}

/// `client ls`.
pub fn ls(client: &Client, format: Format) -> Result<(), CliError> {
    let v: Vec<ClientView> = client.get("/v1/clients")?;
    output::print(&v, format, |v| table(v, crate::now_ms()))
}

/// `client rm NAME`.
pub fn rm(client: &Client, name: &str, format: Format) -> Result<(), CliError> {
    let v: ClientView = client.delete(&format!("/v1/clients/{}", escape(name)))?;
    output::print(&v, format, |v| {
        format!(
            "client/{} removed: it cannot log in again (a connection it holds now stays open until it disconnects)\n",
            v.name
        )
    })
}

/// `broker-config mosquitto-acl`: the file itself (table) or wrapped (-o json|yaml).
pub fn mosquitto_acl(client: &Client, format: Format) -> Result<(), CliError> {
    let v: BrokerConfigFile = client.get("/v1/broker/mosquitto-acl")?;
    output::print(&v, format, |v| v.text.clone())
}

fn table(v: &[ClientView], now_ms: u64) -> String {
    let list = |l: &[String]| {
        if l.is_empty() {
            "-".to_owned()
        } else {
            l.join(",")
        }
    };
    let rows = v
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                list(&c.publish),
                list(&c.subscribe),
                ago(c.created_ms, now_ms),
            ]
        })
        .collect();
    output::table(&["NAME", "PUBLISH", "SUBSCRIBE", "CREATED"], rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_grants_or_a_dash() {
        let v = [ClientView {
            name: "dash".to_owned(),
            publish: vec![],
            subscribe: vec!["a/#".to_owned()],
            created_ms: 1_000,
        }];
        let t = table(&v, 61_000);
        assert!(
            t.starts_with("NAME   PUBLISH   SUBSCRIBE   CREATED\n"),
            "{t}"
        );
        assert!(t.contains("dash   -         a/#         60s ago"), "{t}");
    }
}
