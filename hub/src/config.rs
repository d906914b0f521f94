//! The hub's configuration: a TOML file (default `/etc/drover/hub.toml`).
//!
//! Every setting has a default, written out with a comment in `configs/hub.toml`; unknown
//! keys are errors, and every error names the file, line and column.
//!
//! This module must never act on the config (create folders, bind sockets): it only reads.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use drover_protocol::SecurityPolicy;
use drover_protocol::quantity::DurationMs;
use serde::{Deserialize, Deserializer, Serialize};

pub use drover_protocol::config_text::ConfigError;

/// Settings of the hub. See `configs/hub.toml` for each default and its meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Store, signing key and the hub's own MQTT credential.
    #[serde(deserialize_with = "absolute_path")]
    pub data_dir: PathBuf,
    /// `tracing` filter for the hub's logs (levels or `target=level`, checked).
    #[serde(deserialize_with = "drover_protocol::config_text::log_level")]
    pub log_level: String,
    /// A device that sent no status for this long is shown offline ([`OFFLINE_AFTER`]).
    #[serde(deserialize_with = "offline_after")]
    pub offline_after: DurationMs,
    pub api: ApiConfig,
    pub broker: BrokerConfig,
    pub telemetry: TelemetryConfig,
    pub dashboards: DashboardsConfig,
    /// What Deployments may use on devices: host paths, devices, privileged. Empty: none;
    /// `/` never. Each agent's `[security]` checks again and has the last word.
    pub policy: SecurityPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// How long the per-minute history is kept (`<data_dir>/telemetry.db`); 0 = none,
    /// else within [`TELEMETRY_HISTORY`].
    #[serde(deserialize_with = "telemetry_history")]
    pub history: DurationMs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardsConfig {
    /// Republish statuses and telemetry as JSON on `…/status/json` and `…/telemetry/json`.
    pub json_mirrors: bool,
    /// Publish Home Assistant MQTT discovery messages (needs `json_mirrors`).
    pub home_assistant: bool,
    /// Home Assistant's discovery prefix.
    pub home_assistant_prefix: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            history: DurationMs(24 * 3600 * 1000),
        }
    }
}

impl Default for DashboardsConfig {
    fn default() -> Self {
        DashboardsConfig {
            json_mirrors: true,
            home_assistant: false,
            home_assistant_prefix: "homeassistant".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the plain HTTP server: management API (`/v1`, loopback peers only) and
    /// the image registry (`/v2`, devices with their credential). Loopback only unless
    /// `allow_plain`.
    pub listen: SocketAddr,
    /// Lets `listen` be a non-loopback address (plain HTTP: device credentials in clear
    /// text on the network); logged as a warning.
    pub allow_plain: bool,
    /// Address of the HTTPS server (the same routes, fleet CA certificate); `""` = off.
    pub tls_listen: OptAddr,
    /// `host:port` (plain `http://`) or a full `http(s)://` URL given to devices for the
    /// registry; `""` = `https://` this host's name and the TLS port (plain `http://` and
    /// the listen port when `tls_listen` is off).
    pub advertise: String,
    /// Lets non-loopback peers use the read-only routes (dashboard, `GET /v1/...`,
    /// `/v1/events`, `/metrics`) with `Authorization: Bearer TOKEN`; `""` = off.
    /// Changes (POST) stay loopback-only whatever is presented.
    #[serde(deserialize_with = "api_token")]
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Address the embedded broker listens on (plain MQTT). Loopback only unless
    /// `allow_plain`.
    pub listen: SocketAddr,
    /// Lets `listen` be a non-loopback address (plain MQTT: device credentials in clear
    /// text on the network); logged as a warning.
    pub allow_plain: bool,
    /// Address of the MQTT-over-TLS listener the hub terminates and splices to `listen`;
    /// `""` = off.
    pub tls_listen: OptAddr,
    /// `host:port` (plain) or `mqtts://host:port` given to devices; `""` = `mqtts://` this
    /// host's name and the TLS port (plain and the listen port when `tls_listen` is off).
    pub advertise: String,
    /// `host:port` (plain) or `mqtts://host:port` (TLS, fleet CA pinned) of an external
    /// broker; when set, no embedded broker is started.
    pub url: String,
    /// Connections the embedded broker accepts at most.
    pub max_connections: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            data_dir: PathBuf::from("/var/lib/drover-hub"),
            log_level: "info".to_owned(),
            // 2.5 of the agents' default 60 s heartbeats.
            offline_after: DurationMs(150_000),
            api: ApiConfig::default(),
            broker: BrokerConfig::default(),
            telemetry: TelemetryConfig::default(),
            dashboards: DashboardsConfig::default(),
            policy: SecurityPolicy::default(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7780)),
            allow_plain: false,
            tls_listen: OptAddr(Some(SocketAddr::from(([0, 0, 0, 0], 7443)))),
            advertise: String::new(),
            token: String::new(),
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            allow_plain: false,
            tls_listen: OptAddr(Some(SocketAddr::from(([0, 0, 0, 0], 8883)))),
            advertise: String::new(),
            url: String::new(),
            max_connections: 4096,
        }
    }
}

impl HubConfig {
    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Like [`HubConfig::load`], but built-in defaults when the file does not exist.
    pub fn load_or_default(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            _ => Self::load(path),
        }
    }

    /// Parses config text; `file` only labels errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        drover_protocol::config_text::parse(file, text)
    }

    /// The broker address devices are told to use (`device add`).
    pub fn device_broker_address(&self) -> String {
        if !self.broker.url.is_empty() {
            return self.broker.url.clone();
        }
        if !self.broker.advertise.is_empty() {
            return self.broker.advertise.clone();
        }
        match self.broker.tls_listen.0 {
            Some(tls) => format!("mqtts://{}:{}", host_name(), tls.port()),
            None => format!("{}:{}", host_name(), self.broker.listen.port()),
        }
    }

    /// The registry URL devices are told to use (`device add`): `http://` + `api.advertise`
    /// (kept as is when it already is a URL), or `https://` this host's name and the TLS
    /// port (`http://` and the plain port when `tls_listen` is off).
    pub fn device_registry_url(&self) -> String {
        let a = &self.api.advertise;
        if a.starts_with("http://") || a.starts_with("https://") {
            return a.trim_end_matches('/').to_owned();
        }
        if !a.is_empty() {
            return format!("http://{a}");
        }
        match self.api.tls_listen.0 {
            Some(tls) => format!("https://{}:{}", host_name(), tls.port()),
            None => format!("http://{}:{}", host_name(), self.api.listen.port()),
        }
    }

    /// Devices are told to use TLS (broker or registry): `device add` then includes the
    /// fleet CA.
    pub fn devices_use_tls(&self) -> bool {
        self.device_broker_address().starts_with("mqtts://")
            || self.device_registry_url().starts_with("https://")
    }

    /// Refuses plain listeners on non-loopback addresses unless `allow_plain`; returns
    /// the warnings to log for the ones allowed.
    pub fn check_plain_listeners(&self) -> Result<Vec<String>, String> {
        let mut warnings = Vec::new();
        let embedded = self.broker.url.is_empty();
        let plain = [
            ("api", self.api.listen, self.api.allow_plain, true),
            (
                "broker",
                self.broker.listen,
                self.broker.allow_plain,
                embedded,
            ),
        ];
        for (section, addr, allowed, used) in plain {
            if !used || addr.ip().is_loopback() {
                continue;
            }
            if !allowed {
                return Err(format!(
                    "[{section}] listen = \"{addr}\" is a plain (unencrypted) listener on a \
                     non-loopback address: device credentials would cross the network in \
                     clear text. Use [{section}] tls_listen for the network and a loopback \
                     listen, or set [{section}] allow_plain = true"
                ));
            }
            warnings.push(format!(
                "[{section}] listen = \"{addr}\": plain, unencrypted listener on a non-loopback \
                 address (allow_plain = true): credentials cross the network in clear text"
            ));
        }
        Ok(warnings)
    }

    /// Where the hub's own MQTT client connects: the external broker, or the embedded
    /// one over loopback.
    pub fn client_broker_address(&self) -> String {
        if !self.broker.url.is_empty() {
            return self.broker.url.clone();
        }
        let port = self.broker.listen.port();
        if self.broker.listen.ip().is_unspecified() || self.broker.listen.ip().is_loopback() {
            format!("127.0.0.1:{port}")
        } else {
            self.broker.listen.to_string()
        }
    }
}

/// An optional listen address: `""` in the file means off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptAddr(pub Option<SocketAddr>);

impl Serialize for OptAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_str(""),
        }
    }
}

impl<'de> Deserialize<'de> for OptAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(OptAddr(None));
        }
        s.parse().map(|a| OptAddr(Some(a))).map_err(|_| {
            serde::de::Error::custom(format!(
                "expected \"\" (off) or an address like 0.0.0.0:8883, got {s:?}"
            ))
        })
    }
}

/// This host's name (`localhost` when unknown).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn absolute_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = PathBuf::deserialize(d)?;
    if !path.is_absolute() {
        return Err(serde::de::Error::custom(format!(
            "expected an absolute path, got {path:?}"
        )));
    }
    Ok(path)
}

/// `offline_after`: 5 s to 1 day. Below a few seconds every device flaps offline between
/// two heartbeats; beyond a day a dead device would count as online (and as a healthy
/// rollout target) for longer than anyone would wait to be told.
pub const OFFLINE_AFTER: (DurationMs, DurationMs) = (DurationMs(5_000), DurationMs(86_400_000));

/// `[telemetry] history`: 0 (none), or 1 min to 90 days. Points are one per device and
/// minute, so less than a minute keeps nothing; 90 days are ~130,000 rows per device
/// (~13 MB each, some GB for a fleet) in a file pruned row by row, and long-term storage
/// is better left to Prometheus scraping `/metrics`.
pub const TELEMETRY_HISTORY: (DurationMs, DurationMs) =
    (DurationMs(60_000), DurationMs(90 * 86_400_000));

/// `v` when within `range`; else an error naming `field` and the range (toml adds the
/// file, line and column).
fn in_range(
    field: &str,
    v: DurationMs,
    (min, max): (DurationMs, DurationMs),
    zero: Option<&str>,
) -> Result<DurationMs, String> {
    if (zero.is_some() && v.0 == 0) || (min.0..=max.0).contains(&v.0) {
        return Ok(v);
    }
    let zero = zero.map_or(String::new(), |z| format!("0 ({z}) or "));
    // Durations have no day unit: say the days in words, the value as it is written.
    let days = max.0 / 86_400_000;
    let max = match (days, max.0 % 86_400_000) {
        (1, 0) => format!("{max} (1 day)"),
        (d, 0) if d > 1 => format!("{max} ({d} days)"),
        _ => max.to_string(),
    };
    Err(format!("{field}: expected {zero}{min} to {max}, got {v}"))
}

fn offline_after<'de, D: Deserializer<'de>>(d: D) -> Result<DurationMs, D::Error> {
    in_range(
        "offline_after",
        DurationMs::deserialize(d)?,
        OFFLINE_AFTER,
        None,
    )
    .map_err(serde::de::Error::custom)
}

fn telemetry_history<'de, D: Deserializer<'de>>(d: D) -> Result<DurationMs, D::Error> {
    let v = DurationMs::deserialize(d)?;
    in_range(
        "telemetry.history",
        v,
        TELEMETRY_HISTORY,
        Some("no history"),
    )
    .map_err(serde::de::Error::custom)
}

/// Shortest `[api] token` accepted: a guessable token exposes the whole fleet's state.
pub const MIN_TOKEN_LEN: usize = 16;

/// `""`, or at least [`MIN_TOKEN_LEN`] characters safe in a URL and a cookie unescaped.
fn api_token<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let token = String::deserialize(d)?;
    let safe = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    if !token.is_empty() && (token.len() < MIN_TOKEN_LEN || !token.chars().all(safe)) {
        return Err(serde::de::Error::custom(format!(
            "expected \"\" (off) or a token of at least {MIN_TOKEN_LEN} characters from \
             A-Z a-z 0-9 - . _ ~ (e.g. `openssl rand -hex 16`)"
        )));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs_hub_toml() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/hub.toml");
        std::fs::read_to_string(path).expect("configs/hub.toml")
    }

    #[test]
    fn configs_hub_toml_parses_and_spells_out_the_defaults() {
        let parsed = HubConfig::parse("hub.toml", &configs_hub_toml()).expect("parses");
        assert_eq!(parsed, HubConfig::default());
        assert_eq!(
            HubConfig::parse("x", "").expect("empty"),
            HubConfig::default()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_place() {
        let err = HubConfig::parse("h.toml", "[api]\nlisten = \"127.0.0.1:1\"\nport = 3\n")
            .expect_err("unknown key");
        assert!(err.to_string().starts_with("h.toml:3:1:"), "{err}");
        let err = HubConfig::parse("h.toml", "data_dir = \"rel\"\n").expect_err("relative");
        assert!(err.to_string().contains("absolute"), "{err}");
    }

    #[test]
    fn durations_out_of_range_are_refused_with_the_range_and_place() {
        let err = HubConfig::parse("h.toml", "[telemetry]\nhistory = \"100000000h\"\n")
            .expect_err("too long");
        assert_eq!(
            err.to_string().lines().next().unwrap(),
            "h.toml:2:11: telemetry.history: expected 0 (no history) or 1m to 2160h (90 days), \
             got 100000000h"
        );
        let err = HubConfig::parse("h.toml", "[telemetry]\nhistory = \"30s\"\n").unwrap_err();
        assert!(err.to_string().contains("got 30s"), "{err}");
        let c = HubConfig::parse("h", "[telemetry]\nhistory = \"0s\"\n").unwrap();
        assert_eq!(c.telemetry.history, DurationMs(0));
        let c = HubConfig::parse("h", "[telemetry]\nhistory = \"2160h\"\n").unwrap();
        assert_eq!(c.telemetry.history, TELEMETRY_HISTORY.1);
        let err = HubConfig::parse("h.toml", "offline_after = \"0s\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("h.toml:1:17: offline_after: expected 5s to 24h (1 day), got 0ms"),
            "{err}"
        );
        assert!(HubConfig::parse("h", "offline_after = \"10s\"\n").is_ok());
    }

    #[test]
    fn the_registry_url_comes_from_advertise_or_the_host_name() {
        let c = HubConfig::parse("h", "[api]\nadvertise = \"hub.local:7780\"\n").unwrap();
        assert_eq!(c.device_registry_url(), "http://hub.local:7780");
        let c = HubConfig::parse("h", "[api]\nadvertise = \"https://r.example/\"\n").unwrap();
        assert_eq!(c.device_registry_url(), "https://r.example");
        let url = HubConfig::default().device_registry_url();
        assert!(
            url.starts_with("https://") && url.ends_with(":7443"),
            "{url}"
        );
        let c = HubConfig::parse("h", "[api]\ntls_listen = \"\"\n").unwrap();
        let url = c.device_registry_url();
        assert!(
            url.starts_with("http://") && url.ends_with(":7780"),
            "{url}"
        );
    }

    #[test]
    fn devices_get_tls_addresses_by_default() {
        let c = HubConfig::default();
        assert!(c.device_broker_address().starts_with("mqtts://"));
        assert!(c.device_broker_address().ends_with(":8883"));
        assert!(c.devices_use_tls());
        let off = "[api]\ntls_listen = \"\"\n[broker]\ntls_listen = \"\"\n";
        let c = HubConfig::parse("h", off).unwrap();
        assert!(c.device_broker_address().ends_with(":1883"));
        assert!(!c.devices_use_tls());
        let e = HubConfig::parse("h.toml", "[broker]\ntls_listen = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("expected \"\" (off)"), "{e}");
    }

    #[test]
    fn plain_listeners_beyond_loopback_need_allow_plain() {
        assert_eq!(HubConfig::default().check_plain_listeners(), Ok(vec![]));
        let c = HubConfig::parse("h", "[broker]\nlisten = \"0.0.0.0:1883\"\n").unwrap();
        let e = c.check_plain_listeners().unwrap_err();
        assert!(
            e.contains("[broker] listen") && e.contains("allow_plain"),
            "{e}"
        );
        let c = HubConfig::parse("h", "[api]\nlisten = \"10.0.0.1:7780\"\n").unwrap();
        assert!(c.check_plain_listeners().unwrap_err().starts_with("[api]"));
        let text = "[broker]\nlisten = \"0.0.0.0:1883\"\nallow_plain = true\n";
        let w = HubConfig::parse("h", text)
            .unwrap()
            .check_plain_listeners()
            .unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        // With an external broker the embedded one's listener is not used.
        let text = "[broker]\nlisten = \"0.0.0.0:1883\"\nurl = \"m:1883\"\n";
        assert_eq!(
            HubConfig::parse("h", text).unwrap().check_plain_listeners(),
            Ok(vec![])
        );
    }

    #[test]
    fn the_api_token_is_off_or_long_and_url_safe() {
        let c = HubConfig::parse("h", "[api]\ntoken = \"0123456789abcdef\"\n").unwrap();
        assert_eq!(c.api.token, "0123456789abcdef");
        for bad in ["short", "0123456789abcdef;x", "0123456789 abcdef"] {
            let err = HubConfig::parse("h", &format!("[api]\ntoken = \"{bad}\"\n")).expect_err(bad);
            assert!(err.to_string().contains("at least 16"), "{err}");
        }
    }
}
