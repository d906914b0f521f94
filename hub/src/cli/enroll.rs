//! `token create|ls|revoke` and `device revoke`: join tokens for `drover-agent join`, and
//! cutting a device off. Only calls the API and prints; a token's secret is printed once,
//! by `token create`, and never again.

use clap::Subcommand;

use super::output::{self, ago, span};
use super::{CliError, Client, Format, client::escape};
use crate::enroll::views::{
    DEFAULT_EXPIRES_MS, DEFAULT_USES, DeviceRevoked, TokenCreateRequest, TokenCreated, TokenView,
};
use crate::views::labels_string;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a join token and print it with the `drover-agent join` command that uses it.
    ///
    /// The token (drover1:<CA hash>:<id>.<secret>) carries the SHA-256 of the fleet CA, so
    /// the agent refuses a hub impostor before sending anything. The hub keeps only the
    /// SHA-256 of the secret: this is the only time it is shown.
    Create {
        /// A label `key=value` every device joining with it gets; repeat for more.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// How long the token is valid (`30m`, `1h`, `7d`). Default: 24h.
        #[arg(long, value_parser = parse_duration_ms)]
        expires: Option<u64>,
        /// How many devices may join with it. Default: 1.
        #[arg(long)]
        uses: Option<u32>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// List join tokens (ids, labels, expiry, uses left; never secrets).
    Ls {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Revoke a join token: no device can join with it any more.
    Revoke {
        id: String,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    crate::fleet::parse_label(s).map_err(|e| e.to_string())
}

fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let d: drover_protocol::quantity::DurationMs = s.parse().map_err(|e| format!("{e}"))?;
    Ok(d.0)
}

/// Runs one `token` subcommand.
pub fn token(client: &Client, command: TokenCommand) -> Result<(), CliError> {
    match command {
        TokenCommand::Create {
            labels,
            expires,
            uses,
            output: format,
        } => {
            let req = TokenCreateRequest {
                labels: labels.into_iter().collect(),
                expires_ms: expires.unwrap_or(DEFAULT_EXPIRES_MS),
                uses: uses.unwrap_or(DEFAULT_USES),
            };
            let made: TokenCreated = client.post("/v1/tokens", &req)?;
            output::print(&made, format, created_text)
        }
        TokenCommand::Ls { output: format } => {
            let v: Vec<TokenView> = client.get("/v1/tokens")?;
            output::print(&v, format, |v| tokens_table(v, crate::now_ms()))
        }
        TokenCommand::Revoke { id, output: format } => {
            let path = format!("/v1/tokens/{}/revoke", escape(&id));
            let v: TokenView = client.post(&path, &serde_json::json!({}))?;
            output::print(&v, format, |v| format!("token {} revoked\n", v.id))
        }
    }
}

/// `device revoke NAME`.
pub fn device_revoke(client: &Client, name: &str, format: Format) -> Result<(), CliError> {
    let path = format!("/v1/devices/{}/revoke", escape(name));
    let v: DeviceRevoked = client.post(&path, &serde_json::json!({}))?;
    output::print(&v, format, |v| {
        let already = if v.newly { "" } else { " (it already was)" };
        format!(
            "device/{} revoked{already}: the broker and the registry refuse it, nothing is placed \
             on it and the hub ignores what it sends. Its connections over the hub's MQTT TLS \
             port are closed; one over the plain loopback port or through an external broker \
             stays open until it disconnects, but carries nothing the hub accepts.\n",
            v.name
        )
    })
}

fn created_text(c: &TokenCreated) -> String {
    let v = &c.view;
    format!(
        "{}\n\n# Token {} for {} device(s), valid for {} (until {} ms since the epoch; labels: {}).\n\
         # It is shown only now. On the device, as root:\n{}\n",
        c.token,
        v.id,
        v.uses_left,
        span(v.expires_ms.saturating_sub(v.created_ms)),
        v.expires_ms,
        labels_string(&v.labels),
        c.join_command
    )
}

fn tokens_table(v: &[TokenView], now_ms: u64) -> String {
    let rows = v
        .iter()
        .map(|t| {
            let state = match t.revoked_ms {
                Some(_) => "revoked".to_owned(),
                None if t.expires_ms <= now_ms => "expired".to_owned(),
                None if t.uses_left == 0 => "used up".to_owned(),
                None => format!("expires in {}", span(t.expires_ms - now_ms)),
            };
            vec![
                t.id.clone(),
                t.uses_left.to_string(),
                state,
                ago(t.created_ms, now_ms),
                labels_string(&t.labels),
            ]
        })
        .collect();
    output::table(&["ID", "USES LEFT", "STATE", "CREATED", "LABELS"], rows)
}
