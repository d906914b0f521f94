//! `drover-agent join HUB_URL TOKEN`: enrolls this device with a join token from
//! `drover-hub token create` and writes the agent config.
//!
//! 1. Fetch the fleet CA from `HUB_URL/v1/join/ca` without trusting anything, and go on
//!    only if its certificate hashes to the SHA-256 in the token: a hub impostor is refused
//!    before the token's secret (or anything else) is sent.
//! 2. Make this device's credential here, from the OS's randomness; send only what the hub
//!    needs (the MQTT and registry passwords and the sealing public key derived from it),
//!    over TLS that trusts only that CA.
//! 3. Write the config (0600): the credential, the CA, the hub's signing and key-agreement
//!    public keys, broker and registry. The status key is agreed with the hub
//!    (`keys_agree`) and never crosses the network.
//!
//! This module must never print the credential or the token's secret, and never writes
//! over an existing config unless told to (`--force`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use drover_protocol::join::{JoinAnswer, JoinCa, JoinRequest, JoinToken, ca_sha256, hex};
use drover_protocol::keys::DeviceSecrets;

/// Exit statuses of `join` (also in `--help`).
pub mod exit {
    /// Bad arguments: URL, token, token file, name.
    pub const USAGE: u8 = 2;
    /// The config file exists and `--force` was not given.
    pub const CONFIG_EXISTS: u8 = 3;
    /// The hub's CA does not match the token: refused before sending anything.
    pub const CA_MISMATCH: u8 = 4;
    /// The hub refused the token (unknown, wrong, expired, used up or revoked).
    pub const TOKEN_REFUSED: u8 = 5;
    /// The hub refused the name (taken, revoked, invalid) or the request.
    pub const NAME_REFUSED: u8 = 6;
    /// The hub could not be reached, was busy (HTTP 429, 5xx: try again later) or answered
    /// something unexpected.
    pub const UNREACHABLE: u8 = 7;
    /// The config could not be written.
    pub const WRITE: u8 = 8;
}

#[derive(clap::Args, Debug)]
pub struct JoinArgs {
    /// The hub's HTTPS address, e.g. https://hub.local:7443 (printed by `token create`).
    pub hub_url: String,
    /// The join token (drover1:…); or use --token-file.
    pub token: Option<String>,
    /// Read the token from this file (for provisioning images).
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// This device's name. Default: the host name.
    #[arg(long)]
    pub name: Option<String>,
    /// Where to write the agent config.
    #[arg(
        long,
        env = "DROVER_AGENT_CONFIG",
        default_value = "/etc/drover/agent.toml"
    )]
    pub config: PathBuf,
    /// Write over an existing config file.
    #[arg(long)]
    pub force: bool,
}

/// A refusal: what to print and the exit status.
#[derive(Debug)]
pub struct JoinFailure {
    pub code: u8,
    pub message: String,
}

fn fail(code: u8, message: impl Into<String>) -> JoinFailure {
    JoinFailure {
        code,
        message: message.into(),
    }
}

/// Runs `join`; prints the outcome and returns the exit status.
pub fn main(args: JoinArgs) -> u8 {
    match join(&args) {
        Ok(answer) => {
            println!(
                "joined the hub as device {:?}; config written to {} (mode 0600).\nStart the agent:\n  drover-agent run --config {}",
                answer.device,
                args.config.display(),
                args.config.display()
            );
            0
        }
        Err(f) => {
            eprintln!("drover-agent join: {}", f.message);
            f.code
        }
    }
}

fn join(args: &JoinArgs) -> Result<JoinAnswer, JoinFailure> {
    let token = read_token(args)?;
    let base = args.hub_url.trim_end_matches('/');
    if !base.starts_with("https://") {
        let msg = format!("expected the hub's https:// address (api.tls_listen), got {base:?}");
        return Err(fail(exit::USAGE, msg));
    }
    let name = match &args.name {
        Some(n) => drover_protocol::Name::new(n.clone())
            .map_err(|e| fail(exit::USAGE, format!("--name: {e}")))?,
        None => crate::config::AgentConfig::default_for_host().device,
    };
    if args.config.exists() && !args.force {
        let msg = format!(
            "{} exists: this device seems set up already (use --force to replace it)",
            args.config.display()
        );
        return Err(fail(exit::CONFIG_EXISTS, msg));
    }
    // Before the hub registers the name and uses up the token: a config that cannot be
    // written afterwards would leave a device whose credential is lost.
    probe_writable(&args.config)?;
    let ca_pem = fetch_ca(base, &token)?;
    let credential = new_credential()?;
    let secrets = DeviceSecrets::derive(credential.as_bytes());
    let req = JoinRequest {
        token_id: token.id.clone(),
        token_secret: token.secret.clone(),
        name: name.to_string(),
        mqtt_password: secrets.mqtt_password.clone(),
        registry_password: secrets.registry_password.clone(),
        seal_public: secrets.seal.public().to_hex(),
    };
    let answer = post_join(base, &ca_pem, &req)?;
    let text = config_text(&answer, &credential, &ca_pem)?;
    write_config(&args.config, &text)?;
    Ok(answer)
}

fn read_token(args: &JoinArgs) -> Result<JoinToken, JoinFailure> {
    let text = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| fail(exit::USAGE, format!("--token-file {}: {e}", path.display())))?,
        (None, None) => return Err(fail(exit::USAGE, "give the token, or --token-file PATH")),
    };
    text.parse()
        .map_err(|e: drover_protocol::join::TokenError| fail(exit::USAGE, e.to_string()))
}

fn http(tls: ureq::tls::TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .user_agent("drover-agent")
        .tls_config(tls)
        .build()
        .into()
}

/// The CA the hub presents, accepted only if it is the one the token names. Nothing is
/// trusted for this request, and nothing secret is in it.
fn fetch_ca(base: &str, token: &JoinToken) -> Result<String, JoinFailure> {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .disable_verification(true)
        .build();
    let url = format!("{base}/v1/join/ca");
    let unreachable = |e: String| fail(exit::UNREACHABLE, format!("{url}: {e}"));
    let mut resp = http(tls)
        .get(&url)
        .call()
        .map_err(|e| unreachable(e.to_string()))?;
    if resp.status() != 200 {
        return Err(unreachable(format!(
            "HTTP {} (is this a Drover hub?)",
            resp.status()
        )));
    }
    let ca: JoinCa = resp
        .body_mut()
        .read_json()
        .map_err(|e| unreachable(format!("not a Drover hub's CA answer: {e}")))?;
    let der =
        first_cert(&ca.ca_pem).ok_or_else(|| unreachable("no certificate in the CA".into()))?;
    let got = ca_sha256(&der);
    if got != token.ca_sha256 {
        let msg = format!(
            "the hub at {base} presents a CA with SHA-256 {}, but the token is for the CA {}: \
             refusing to join (a hub impostor in between, or a token of another hub). Nothing \
             was sent.",
            hex(&got),
            hex(&token.ca_sha256)
        );
        return Err(fail(exit::CA_MISMATCH, msg));
    }
    Ok(ca.ca_pem)
}

fn first_cert(pem: &str) -> Option<Vec<u8>> {
    ureq::tls::parse_pem(pem.as_bytes()).find_map(|item| match item {
        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.der().to_vec()),
        _ => None,
    })
}

fn post_join(base: &str, ca_pem: &str, req: &JoinRequest) -> Result<JoinAnswer, JoinFailure> {
    let url = format!("{base}/v1/join");
    let unreachable = |e: String| fail(exit::UNREACHABLE, format!("{url}: {e}"));
    let der = first_cert(ca_pem).ok_or_else(|| unreachable("no certificate in the CA".into()))?;
    let root = ureq::tls::Certificate::from_der(&der).to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
        .build();
    let mut resp = http(tls)
        .post(&url)
        .send_json(req)
        .map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status().as_u16();
    if status == 200 {
        return resp
            .body_mut()
            .read_json()
            .map_err(|e| unreachable(format!("unexpected answer: {e}")));
    }
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    let said = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or(body);
    let code = match status {
        401 => exit::TOKEN_REFUSED,
        400 | 409 => exit::NAME_REFUSED,
        _ => exit::UNREACHABLE,
    };
    Err(fail(
        code,
        format!("the hub refused (HTTP {status}): {said}"),
    ))
}

/// A fresh credential: 32 random bytes, base64url (43 characters), like `device add`'s.
fn new_credential() -> Result<String, JoinFailure> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)
        .map_err(|e| fail(exit::WRITE, format!("no random numbers from the OS: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// The agent config for this device: every other setting keeps its default.
fn config_text(a: &JoinAnswer, credential: &str, ca_pem: &str) -> Result<String, JoinFailure> {
    let bad = |what: &str| fail(exit::UNREACHABLE, format!("the hub's answer: {what}"));
    if a.ca_pem.trim() != ca_pem.trim() {
        return Err(bad("a CA other than the one it presented"));
    }
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let text = format!(
        "# Drover agent configuration for device {device}, written by `drover-agent join`.\n\
         # Mode 0600: `credential` was made on this device and never leaves it; the agent\n\
         # derives its passwords and sealing key from it and agrees its status key with the\n\
         # hub (`key_agreement`). Every other setting keeps its default (configs/agent.toml);\n\
         # settings outside [hub] go above it.\n\
         device = {device}\n\n[hub]\nbroker = {broker}\ncredential = {credential}\n\
         public_key = {public_key}\nkey_agreement = {kx}\nregistry = {registry}\n\
         ca = '''\n{ca}\n'''\n",
        device = q(&a.device),
        broker = q(&a.broker),
        credential = q(credential),
        public_key = q(&a.public_key),
        kx = q(&a.key_agreement),
        registry = q(&a.registry),
        ca = ca_pem.trim_end(),
    );
    // What is written must load: checked here, not at the agent's next start.
    let cfg = crate::config::AgentConfig::parse("joined config", &text)
        .map_err(|e| bad(&e.to_string()))?;
    if let Some(h) = &cfg.hub {
        h.validate().map_err(|e| bad(&e.to_string()))?;
    }
    Ok(text)
}

/// Creates the config's folder and a probe file beside where the config goes, then
/// removes the probe: an error here (exit 8) comes before anything is sent.
fn probe_writable(path: &Path) -> Result<(), JoinFailure> {
    let err = |e: std::io::Error| {
        let msg = format!("{}: cannot write the config there: {e}", path.display());
        fail(exit::WRITE, msg)
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(format!(".drover-join-probe-{}", std::process::id()));
    let written = crate::fsutil::write_private(&probe, b"");
    let _ = std::fs::remove_file(&probe);
    written.map_err(err)
}

fn write_config(path: &Path, text: &str) -> Result<(), JoinFailure> {
    let err = |e: std::io::Error| fail(exit::WRITE, format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    crate::fsutil::write_private(path, text.as_bytes()).map_err(err)
}
