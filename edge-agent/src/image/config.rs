//! Image settings: the `[images]` section of the agent config and what one pull needs
//! (registry credentials, the hub registry, the free-disk floor).
//!
//! Plain data: it never opens a connection or a file. Passwords are never printed
//! (`Debug` redacts them).

use std::fmt;

use drover_protocol::quantity::ByteSize;
use serde::{Deserialize, Serialize};

/// `[images]` in the agent config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Image store budget: unused images are removed, oldest use first, above it.
    pub max_bytes: ByteSize,
    /// Below this free space in the state folder, pulls are refused (and status says so).
    pub min_free_disk: ByteSize,
    /// Per-registry settings (`[[images.registries]]`).
    pub registries: Vec<RegistryConfig>,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            max_bytes: ByteSize(2 << 30),
            min_free_disk: ByteSize(256 << 20),
            registries: Vec::new(),
        }
    }
}

/// Settings for one registry host (`host` as in references: `HOST[:PORT]`, `docker.io`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub host: String,
    /// Plain http instead of https.
    #[serde(default)]
    pub insecure: bool,
    /// HTTP Basic credentials, also used to fetch a Bearer token when the registry asks.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("host", &self.host)
            .field("insecure", &self.insecure)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The agent's own hub as a registry (`hub:` references), authenticated with HTTP
/// Basic `device-name:credential`.
#[derive(Clone, PartialEq, Eq)]
pub struct HubRegistry {
    /// `http://host:port` (or https).
    pub url: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for HubRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubRegistry")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Everything one `prepare_with` needs besides the reference.
#[derive(Clone, Debug, Default)]
pub struct PullConfig {
    pub registries: Vec<RegistryConfig>,
    pub hub: Option<HubRegistry>,
    /// A download is refused when it would leave less free space than this (bytes).
    pub min_free_disk: u64,
}

impl PullConfig {
    /// From the `[images]` config and the hub registry (if the agent has a hub).
    pub fn new(images: &ImagesConfig, hub: Option<HubRegistry>) -> Self {
        Self {
            registries: images.registries.clone(),
            hub,
            min_free_disk: images.min_free_disk.0,
        }
    }

    /// Settings for `host` (Docker Hub under any of its names).
    pub fn registry(&self, host: &str) -> Option<&RegistryConfig> {
        let canon = |h: &str| match h {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
            other => other.to_ascii_lowercase(),
        };
        let host = canon(host);
        self.registries.iter().find(|r| canon(&r.host) == host)
    }
}

/// Progress of a pull: bytes of the layers still to download (resumed bytes count as done).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub done_bytes: u64,
    pub total_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_config_from_toml() {
        let c: ImagesConfig = toml::from_str(
            r#"
            max_bytes = "1Gi"
            [[registries]]
            host = "registry.local:5000"
            insecure = true
            username = "u"
            password = "p"
            "#,
        )
        .unwrap();
        assert_eq!(c.max_bytes, ByteSize(1 << 30));
        assert_eq!(c.min_free_disk, ByteSize(256 << 20));
        assert!(c.registries[0].insecure);
        assert!(!format!("{c:?}").contains("\"p\""));
        let pull = PullConfig::new(&c, None);
        assert!(pull.registry("registry.local:5000").is_some());
        assert!(pull.registry("other").is_none());
        assert!(toml::from_str::<ImagesConfig>("colour = 1").is_err());
        assert_eq!(ImagesConfig::default().max_bytes, ByteSize(2 << 30));
    }
}
