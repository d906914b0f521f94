//! Reading an OCI image layout folder: `oci-layout`, `index.json`, and the manifest,
//! image index and config blobs it points at, each verified against its digest.
//!
//! Reads small JSON blobs only (size-capped); layer blobs are streamed by `layer.rs`.
//! It never writes to the layout, and never reads through the host's view of it: every
//! file is resolved inside the layout folder (a symlink there cannot lead to a host file),
//! opened without blocking and used only when it is a regular file (a FIFO named
//! `index.json` must not hang the agent, which resolves layouts on its own loop).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::digest::Digest;
use super::platform::{HostPlatform, Platform};
use super::reference::Selector;
use super::{ImageConfig, ImageError};

/// Manifests, indexes and configs are small; anything bigger is refused.
const MAX_JSON_BLOB: u64 = 4 << 20;
/// Nesting limit for image indexes pointing at image indexes.
const MAX_INDEX_DEPTH: usize = 4;
const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Index {
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConfigSection {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    healthcheck: Option<super::healthcheck::ImageHealthcheck>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ConfigBlob {
    #[serde(default)]
    config: Option<ConfigSection>,
    rootfs: RootFs,
}

/// One layer of a resolved image.
#[derive(Clone, Debug)]
pub struct LayerRef {
    pub blob: Digest,
    pub size: Option<u64>,
    pub media_type: String,
    pub diff_id: Digest,
}

/// A manifest resolved for this host, with its verified config.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    pub manifest_digest: Digest,
    pub layers: Vec<LayerRef>,
    pub config: ImageConfig,
}

/// An OCI image layout folder.
pub struct Layout {
    root: PathBuf,
    /// The folder, through which every file of the layout is resolved.
    dir: pathrs::Root,
}

impl Layout {
    /// Checks that `root` looks like an OCI image layout (has `oci-layout`).
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let marker = root.join("oci-layout");
        let not_layout = |e: String| ImageError::Layout {
            path: root.to_path_buf(),
            reason: format!(
                "not an OCI image layout: cannot read {}: {e}",
                marker.display()
            ),
        };
        let dir = pathrs::Root::open(root).map_err(|e| not_layout(with_causes(&e)))?;
        let layout = Self {
            root: root.to_path_buf(),
            dir,
        };
        let bytes = layout
            .read_capped(Path::new("oci-layout"))
            .map_err(|e| not_layout(e.to_string()))?;
        let text = String::from_utf8_lossy(&bytes);
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| layout.err(format!("oci-layout is not valid JSON: {e}")))?;
        if value
            .get("imageLayoutVersion")
            .and_then(|v| v.as_str())
            .is_none()
        {
            return Err(layout.err("oci-layout has no `imageLayoutVersion`".into()));
        }
        Ok(layout)
    }

    /// Path of a blob in this layout (for messages; open it with [`Layout::open_blob`]).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(blob_rel(digest))
    }

    /// Opens a blob for streaming: resolved inside the layout, a regular file only.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, ImageError> {
        open_regular(&self.dir, &blob_rel(digest))
            .map_err(|e| self.err(format!("cannot read blob {digest}: {e}")))
    }

    /// Reads a file of the layout (at most [`MAX_JSON_BLOB`] bytes).
    fn read_capped(&self, rel: &Path) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        open_regular(&self.dir, rel)?
            .take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(std::io::Error::other(format!(
                "larger than {MAX_JSON_BLOB} bytes"
            )));
        }
        Ok(bytes)
    }

    fn err(&self, reason: String) -> ImageError {
        ImageError::Layout {
            path: self.root.clone(),
            reason,
        }
    }

    /// Finds the manifest selected by `selector` for `host` and reads its config.
    pub fn resolve(
        &self,
        selector: &Selector,
        host: &HostPlatform,
        reference: &str,
    ) -> Result<ResolvedImage, ImageError> {
        let mut desc = self.select_in_index(selector)?;
        for _ in 0..MAX_INDEX_DEPTH {
            let digest = self.parse_digest(&desc.digest, "index entry")?;
            let value = self.read_json_blob(&digest, desc.size)?;
            if value.get("manifests").is_none() {
                return self.read_image(digest, value);
            }
            let index: Index = self.decode(value, &digest, "image index")?;
            desc = pick_platform(index.manifests, host, reference)?;
        }
        Err(self.err(format!(
            "image indexes nested deeper than {MAX_INDEX_DEPTH} levels"
        )))
    }

    fn select_in_index(&self, selector: &Selector) -> Result<Descriptor, ImageError> {
        let bytes = self
            .read_capped(Path::new("index.json"))
            .map_err(|e| self.err(format!("cannot read index.json: {e}")))?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(format!("index.json is not a valid image index: {e}")))?;
        let by_tag = |tag: &str| {
            index
                .manifests
                .iter()
                .find(|d| d.annotations.get(REF_NAME).is_some_and(|n| n == tag))
        };
        let found = match selector {
            Selector::Tag(tag) => by_tag(tag),
            Selector::Default => by_tag("latest").or(if index.manifests.len() == 1 {
                index.manifests.first()
            } else {
                None
            }),
            Selector::Digest(d) => {
                let wanted = d.to_string();
                let listed = index.manifests.iter().find(|m| m.digest == wanted).cloned();
                return Ok(listed.unwrap_or_else(|| bare_descriptor(wanted)));
            }
        };
        found.cloned().ok_or_else(|| {
            let mut tags: Vec<&str> = index
                .manifests
                .iter()
                .filter_map(|d| d.annotations.get(REF_NAME))
                .map(String::as_str)
                .collect();
            tags.sort_unstable();
            let tag = match selector {
                Selector::Tag(t) => t.clone(),
                _ => "latest".to_string(),
            };
            let available = if tags.is_empty() {
                "none".to_string()
            } else {
                tags.join(", ")
            };
            ImageError::TagNotFound {
                layout: self.root.clone(),
                tag,
                available,
            }
        })
    }

    fn read_image(
        &self,
        manifest_digest: Digest,
        value: serde_json::Value,
    ) -> Result<ResolvedImage, ImageError> {
        let manifest: Manifest = self.decode(value, &manifest_digest, "image manifest")?;
        let config_digest = self.parse_digest(&manifest.config.digest, "manifest config")?;
        let config_value = self.read_json_blob(&config_digest, manifest.config.size)?;
        let config: ConfigBlob = self.decode(config_value, &config_digest, "image config")?;
        build_image(manifest_digest, manifest, &config_digest, config).map_err(|e| self.err(e))
    }

    fn parse_digest(&self, s: &str, what: &str) -> Result<Digest, ImageError> {
        Digest::parse(s).map_err(|e| self.err(format!("{what}: {e}")))
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        v: serde_json::Value,
        d: &Digest,
        what: &str,
    ) -> Result<T, ImageError> {
        serde_json::from_value(v)
            .map_err(|e| self.err(format!("blob {d} is not a valid {what}: {e}")))
    }

    /// Reads a small blob, checks its digest (and size when known) and parses it as JSON.
    fn read_json_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<serde_json::Value, ImageError> {
        let path = self.blob_path(digest);
        let bytes = self
            .read_capped(&blob_rel(digest))
            .map_err(|e| self.err(format!("cannot read blob {digest}: {e}")))?;
        let actual = Digest::of(&bytes);
        if actual != *digest || size.is_some_and(|s| s != bytes.len() as u64) {
            let expected = format!(
                "{digest} ({} bytes)",
                size.map_or("?".into(), |s| s.to_string())
            );
            let actual = format!("{actual} ({} bytes)", bytes.len());
            return Err(ImageError::DigestMismatch {
                path,
                expected,
                actual,
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| self.err(format!("blob {digest} is not JSON: {e}")))
    }
}

fn bare_descriptor(digest: String) -> Descriptor {
    Descriptor {
        media_type: String::new(),
        digest,
        size: None,
        annotations: HashMap::new(),
        platform: None,
    }
}

/// Pairs a manifest's layers with its config's diff_ids.
pub(super) fn build_image(
    manifest_digest: Digest,
    manifest: Manifest,
    config_digest: &Digest,
    config: ConfigBlob,
) -> Result<ResolvedImage, String> {
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(format!(
            "manifest {manifest_digest} lists {} layers but its config {config_digest} has {} rootfs.diff_ids",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        ));
    }
    let parse = |s: &str, what: &str| Digest::parse(s).map_err(|e| format!("{what}: {e}"));
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for (desc, diff_id) in manifest.layers.into_iter().zip(&config.rootfs.diff_ids) {
        layers.push(LayerRef {
            blob: parse(&desc.digest, "manifest layer")?,
            size: desc.size,
            media_type: desc.media_type,
            diff_id: parse(diff_id, "config rootfs.diff_ids")?,
        });
    }
    Ok(ResolvedImage {
        manifest_digest,
        layers,
        config: image_config(config.config.unwrap_or_default()),
    })
}

/// The entry of an image index for `host`; a clear error when there is none.
pub(super) fn pick_platform(
    manifests: Vec<Descriptor>,
    host: &HostPlatform,
    reference: &str,
) -> Result<Descriptor, ImageError> {
    let platforms: Vec<Option<Platform>> = manifests.iter().map(|d| d.platform.clone()).collect();
    if !platforms.is_empty() && platforms.iter().all(Option::is_none) {
        return Err(ImageError::PlatformlessIndex {
            reference: reference.to_string(),
            entries: platforms.len(),
            wanted: host.describe(),
        });
    }
    match host.select(&platforms) {
        Some(i) => Ok(manifests[i].clone()),
        None => {
            let available: Vec<String> =
                platforms.iter().flatten().map(Platform::describe).collect();
            Err(ImageError::NoMatchingPlatform {
                reference: reference.to_string(),
                wanted: host.describe(),
                available: if available.is_empty() {
                    "none listed".into()
                } else {
                    available.join(", ")
                },
            })
        }
    }
}

fn image_config(c: ConfigSection) -> ImageConfig {
    ImageConfig {
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        working_dir: c.working_dir.filter(|s| !s.is_empty()),
        user: c.user.filter(|s| !s.is_empty()),
        healthcheck: c.healthcheck.map(Box::new),
    }
}

/// pathrs's message with the errors beneath it (`… failed: No such file or directory`).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

fn blob_rel(digest: &Digest) -> PathBuf {
    Path::new("blobs").join("sha256").join(digest.hex())
}

/// Opens `rel` inside `dir` for reading (symlinks resolved inside it, never above it),
/// only when it is a regular file: the type is checked on an `O_PATH` handle before the
/// file is opened, so a FIFO is never opened (no hang) and a device never touched.
pub(crate) fn open_regular(dir: &pathrs::Root, rel: &Path) -> std::io::Result<File> {
    use pathrs::flags::OpenFlags;
    let handle = dir
        .resolve(rel)
        .map_err(|e| std::io::Error::other(with_causes(&e)))?;
    let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(
        &handle,
    )))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(std::io::Error::other("not a regular file"));
    }
    let flags = OpenFlags::O_RDONLY | OpenFlags::O_NONBLOCK | OpenFlags::O_CLOEXEC;
    handle
        .reopen(flags)
        .map_err(|e| std::io::Error::other(with_causes(&e)))
}
