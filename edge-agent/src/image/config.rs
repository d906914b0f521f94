//! Image settings: the `[images]` section of the agent config and what one pull needs
//! (registry credentials, the hub registry, the free-disk floor).
//!
//! Plain data: it never opens a connection or a file. Passwords are never printed
//! (`Debug` redacts them).

use std::fmt;

use drover_protocol::quantity::ByteSize;
use serde::{Deserialize, Deserializer, Serialize};

/// `[images]` in the agent config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Image store budget: unused images are removed, oldest use first, above it.
    pub max_bytes: ByteSize,
    /// Below this free space in the state folder, pulls are refused (and status says so).
    pub min_free_disk: ByteSize,
    /// Most bytes one layer may expand to (its tar stream, sparse files at their full
    /// size); a layer beyond it is refused while streaming and its partial folder deleted.
    #[serde(deserialize_with = "layer_bytes")]
    pub max_layer_bytes: ByteSize,
    /// Most bytes the layers extracted for one image may expand to, together (4Gi). Not
    /// tied to `max_bytes`: that budget is a target for removing *unused* images, and an
    /// image in use is kept above it.
    #[serde(deserialize_with = "image_bytes")]
    pub max_image_bytes: ByteSize,
    /// Most entries (files, folders, links…) in one layer.
    #[serde(deserialize_with = "layer_entries")]
    pub max_layer_entries: u64,
    /// Per-registry settings (`[[images.registries]]`).
    pub registries: Vec<RegistryConfig>,
}

fn layer_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    at_least_one_kib(d, "images.max_layer_bytes")
}

fn image_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    at_least_one_kib(d, "images.max_image_bytes")
}

fn at_least_one_kib<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<ByteSize, D::Error> {
    let v = ByteSize::deserialize(d)?;
    if v.0 < 1024 {
        let msg = format!("{key}: expected at least 1Ki, got {} bytes", v.0);
        return Err(serde::de::Error::custom(msg));
    }
    Ok(v)
}

fn layer_entries<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v == 0 {
        let msg = "images.max_layer_entries: expected at least 1, got 0";
        return Err(serde::de::Error::custom(msg));
    }
    Ok(v)
}

/// Limits on what layers may expand to (from `[images]`), checked while extracting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    /// `images.max_layer_bytes`.
    pub layer_bytes: u64,
    /// `images.max_image_bytes`.
    pub image_bytes: u64,
    /// `images.max_layer_entries`.
    pub layer_entries: u64,
}

impl UnpackLimits {
    pub fn new(images: &ImagesConfig) -> Self {
        Self {
            layer_bytes: images.max_layer_bytes.0,
            image_bytes: images.max_image_bytes.0,
            layer_entries: images.max_layer_entries,
        }
    }
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self::new(&ImagesConfig::default())
    }
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            max_bytes: ByteSize(2 << 30),
            min_free_disk: ByteSize(256 << 20),
            max_layer_bytes: ByteSize(1 << 30),
            max_image_bytes: ByteSize(4 << 30),
            max_layer_entries: 200_000,
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
    /// The fleet CA (PEM) pinned for an `https://` hub registry; None = the usual roots.
    pub ca_pem: Option<String>,
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
    /// What layers may expand to.
    pub limits: UnpackLimits,
}

impl PullConfig {
    /// From the `[images]` config and the hub registry (if the agent has a hub).
    pub fn new(images: &ImagesConfig, hub: Option<HubRegistry>) -> Self {
        Self {
            registries: images.registries.clone(),
            hub,
            min_free_disk: images.min_free_disk.0,
            limits: UnpackLimits::new(images),
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

    #[test]
    fn unpack_limits_have_defaults_apart_from_the_store_budget_and_are_checked() {
        let d = UnpackLimits::default();
        assert_eq!((d.layer_bytes, d.image_bytes), (1 << 30, 4 << 30));
        assert_eq!(d.layer_entries, 200_000);
        let c: ImagesConfig = toml::from_str(
            "max_bytes = \"512Mi\"\nmax_layer_bytes = \"64Mi\"\nmax_layer_entries = 10\n",
        )
        .unwrap();
        let l = PullConfig::new(&c, None).limits;
        assert_eq!(
            (l.layer_bytes, l.image_bytes, l.layer_entries),
            (64 << 20, 4 << 30, 10)
        );
        let c: ImagesConfig = toml::from_str("max_image_bytes = \"100Mi\"").unwrap();
        assert_eq!(UnpackLimits::new(&c).image_bytes, 100 << 20);
        let err = toml::from_str::<ImagesConfig>("max_layer_entries = 0").unwrap_err();
        assert!(
            err.to_string().contains("expected at least 1, got 0"),
            "{err}"
        );
        let err = toml::from_str::<ImagesConfig>("max_layer_bytes = \"12\"").unwrap_err();
        assert!(err.to_string().contains("at least 1Ki"), "{err}");
    }
}
