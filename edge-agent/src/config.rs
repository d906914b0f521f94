//! The agent's own configuration: a TOML file (default `/etc/drover/agent.toml`).
//!
//! Every setting has a default, written out with a comment in `configs/agent.toml`; unknown
//! keys are errors, and every error names the file, line and column. Values are validated
//! while deserializing so that toml can point at the offending value.
//!
//! This module must never act on the config (create folders, touch cgroups): it only
//! reads the file and, for the default device name, the host name.

use std::io;
use std::path::{Path, PathBuf};

use drover_protocol::quantity::{ByteSize, DurationMs};
use drover_protocol::{Name, SecurityPolicy};
use serde::{Deserialize, Deserializer, Serialize};

pub use drover_protocol::config_text::ConfigError;

/// Settings of one agent. See `configs/agent.toml` for each default and its meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// This device's name: the host name, lowercased and sanitized, else `device`.
    pub device: Name,
    /// Root of everything the agent keeps on disk.
    #[serde(deserialize_with = "absolute_path")]
    pub state_dir: PathBuf,
    /// The agent's runtime folder, best on a tmpfs: what every container start writes
    /// (bundles, `/etc` files, shim status, libcontainer state), so that a full
    /// `state_dir` disk never keeps a container from starting. One per agent.
    #[serde(deserialize_with = "absolute_path")]
    pub run_dir: PathBuf,
    /// Folder of workload manifests for standalone mode; `""` in the file turns it off.
    #[serde(deserialize_with = "optional_dir")]
    pub manifests_dir: Option<PathBuf>,
    /// Parent cgroup of all containers, relative to each controller's root.
    #[serde(deserialize_with = "cgroup_parent")]
    pub cgroup_parent: String,
    /// How often the agent re-checks its containers even without events.
    #[serde(deserialize_with = "positive_duration")]
    pub resync_interval: DurationMs,
    /// `tracing` filter for the agent's own logs (`info`, `debug`, `drover_agent=trace`;
    /// checked).
    #[serde(deserialize_with = "drover_protocol::config_text::log_level")]
    pub log_level: String,
    pub logs: LogConfig,
    /// Image store budget, free-disk floor and registry credentials.
    pub images: crate::image::ImagesConfig,
    /// The hub to take desired state from and report to; standalone without it.
    pub hub: Option<crate::hub_link::config::HubConfig>,
    /// Usage samples sent to the hub (only with `hub`).
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// What workloads may use on this device: host paths, devices, privileged. Empty:
    /// none. The state, run and config folders are refused whatever it says.
    pub security: SecurityPolicy,
    /// The file this config was read from (not a setting): its folder is protected.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

/// Rotation of container stdout/stderr logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Size at which a container's log file is rotated; at least 4 KiB (below it every
    /// line would rotate: renames on the SD card for each write).
    #[serde(deserialize_with = "log_max_bytes")]
    pub max_bytes: ByteSize,
    /// Log files kept per container, the current one included: 1 to 100.
    #[serde(deserialize_with = "log_files")]
    pub files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_bytes: ByteSize(1 << 20),
            files: 2,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig::default_for_host()
    }
}

impl AgentConfig {
    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Self::parse(&path.display().to_string(), &text)?;
        cfg.config_file = Some(path.to_owned());
        Ok(cfg)
    }

    /// Like [`AgentConfig::load`], but built-in defaults when the file does not exist.
    pub fn load_or_default(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default_for_host()),
            _ => Self::load(path),
        }
    }

    /// Parses config text; `file` only labels errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        drover_protocol::config_text::parse(file, text)
    }

    /// The defaults, with the device named after this host.
    pub fn default_for_host() -> Self {
        AgentConfig {
            device: host_device_name(),
            state_dir: PathBuf::from("/var/lib/drover"),
            run_dir: PathBuf::from("/run/drover"),
            manifests_dir: Some(PathBuf::from("/etc/drover/manifests")),
            cgroup_parent: "drover".to_owned(),
            resync_interval: DurationMs(10_000),
            log_level: "info".to_owned(),
            logs: LogConfig::default(),
            images: crate::image::ImagesConfig::default(),
            hub: None,
            telemetry: crate::telemetry::TelemetryConfig::default(),
            security: SecurityPolicy::default(),
            config_file: None,
        }
    }
}

fn host_device_name() -> Name {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find_map(|h| sanitize_host_name(&h))
        .unwrap_or_else(|| Name::new("device").expect("\"device\" is a valid name"))
}

/// The host name's first label, lowercased, other characters turned into `-`.
fn sanitize_host_name(host: &str) -> Option<Name> {
    let label = host.trim().split('.').next().unwrap_or("");
    let mapped: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(drover_protocol::names::MAX_NAME_LEN)
        .collect();
    let name = mapped.trim_matches('-');
    if name.is_empty() || name == "localhost" {
        return None;
    }
    Name::new(name).ok()
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

fn optional_dir<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let path = PathBuf::deserialize(d)?;
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    if !path.is_absolute() {
        let msg = format!("expected an absolute path or \"\" (off), got {path:?}");
        return Err(serde::de::Error::custom(msg));
    }
    Ok(Some(path))
}

fn cgroup_parent<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !s.split('/').all(ok_part) {
        let msg = format!(
            "expected a relative cgroup path like \"drover\" (letters, digits, '-', '_', '.', '/'), got {s:?}"
        );
        return Err(serde::de::Error::custom(msg));
    }
    Ok(s)
}

fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<DurationMs, D::Error> {
    let v = DurationMs::deserialize(d)?;
    if v.0 == 0 {
        return Err(serde::de::Error::custom(
            "expected a duration above 0, like 10s",
        ));
    }
    Ok(v)
}

fn log_max_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    let v = ByteSize::deserialize(d)?;
    if v.0 < 4096 {
        return Err(serde::de::Error::custom(format!(
            "logs.max_bytes: expected at least 4Ki, got {} bytes",
            v.0
        )));
    }
    Ok(v)
}

fn log_files<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if !(1..=100).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "logs.files: expected 1 to 100, got {v}"
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        match AgentConfig::parse("agent.toml", text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = AgentConfig::parse("agent.toml", "").expect("parses");
        assert_eq!(c, AgentConfig::default_for_host());
        assert_eq!(
            c.logs,
            LogConfig {
                max_bytes: ByteSize(1 << 20),
                files: 2
            }
        );
    }

    #[test]
    fn settings_are_read() {
        let text = "device = \"pi-7\"\nstate_dir = \"/tmp/s\"\nrun_dir = \"/tmp/r\"\nmanifests_dir = \"\"\n\
                    cgroup_parent = \"drover-test-ab12\"\nresync_interval = \"2s\"\n\
                    log_level = \"debug\"\n[logs]\nmax_bytes = \"64Ki\"\nfiles = 5\n";
        let c = AgentConfig::parse("agent.toml", text).expect("parses");
        assert_eq!(c.device.as_str(), "pi-7");
        assert_eq!(c.state_dir, PathBuf::from("/tmp/s"));
        assert_eq!(c.run_dir, PathBuf::from("/tmp/r"));
        assert_eq!(c.manifests_dir, None);
        assert_eq!(c.cgroup_parent, "drover-test-ab12");
        assert_eq!(c.resync_interval, DurationMs(2000));
        assert_eq!(
            c.logs,
            LogConfig {
                max_bytes: ByteSize(64 << 10),
                files: 5
            }
        );
    }

    #[test]
    fn errors_are_located() {
        let unknown = parse_err("device = \"a\"\nstat_dir = \"/x\"\n");
        assert!(
            unknown.starts_with("agent.toml:2:1: unknown field `stat_dir`"),
            "{unknown}"
        );
        let name = parse_err("device = \"Pi_7\"\n");
        assert!(name.starts_with("agent.toml:1:10: name \"Pi_7\""), "{name}");
        let size = parse_err("[logs]\nmax_bytes = \"lots\"\n");
        assert!(
            size.starts_with("agent.toml:2:13: expected a size like 64Mi"),
            "{size}"
        );
        let tiny = parse_err("[logs]\nmax_bytes = \"0\"\n");
        assert!(
            tiny.starts_with("agent.toml:2:13: logs.max_bytes: expected at least 4Ki, got 0"),
            "{tiny}"
        );
        let entries = parse_err("[images]\nmax_layer_entries = 0\n");
        assert!(
            entries.starts_with("agent.toml:2:21: images.max_layer_entries: expected at least 1"),
            "{entries}"
        );
        let none = parse_err("[logs]\nfiles = 0\n");
        assert!(
            none.starts_with("agent.toml:2:9: logs.files: expected 1 to 100, got 0"),
            "{none}"
        );
        let rel = parse_err("state_dir = \"var/lib\"\n");
        assert!(
            rel.starts_with("agent.toml:1:13: expected an absolute path"),
            "{rel}"
        );
        let cg = parse_err("cgroup_parent = \"/../x\"\n");
        assert!(
            cg.starts_with("agent.toml:1:17: expected a relative cgroup path"),
            "{cg}"
        );
        let queue = parse_err("[telemetry]\nqueue = 0\n");
        assert!(
            queue.starts_with("agent.toml:2:9: telemetry.queue: expected 1..=256"),
            "{queue}"
        );
        let interval = parse_err("[telemetry]\ninterval = \"100000h\"\n");
        assert!(
            interval
                .starts_with("agent.toml:2:12: telemetry.interval: expected 0 (off) or 1s to 1h"),
            "{interval}"
        );
        let sec = parse_err("[security]\nhost_paths = [\"/srv\", \"data\"]\n");
        assert!(
            sec.starts_with("agent.toml:2:14: expected absolute paths without '..', got \"data\""),
            "{sec}"
        );
        let dur = parse_err("resync_interval = \"0s\"\n");
        assert!(
            dur.starts_with("agent.toml:1:19: expected a duration above 0"),
            "{dur}"
        );
    }

    #[test]
    fn host_names_are_sanitized() {
        let s = |h: &str| sanitize_host_name(h).map(|n| n.as_str().to_owned());
        assert_eq!(s("Raspberry_Pi.local\n"), Some("raspberry-pi".into()));
        assert_eq!(s("node-7"), Some("node-7".into()));
        assert_eq!(s("--"), None);
        assert_eq!(s("localhost"), None);
        assert_eq!(s(&"x".repeat(80)).map(|n| n.len()), Some(63));
    }
}
