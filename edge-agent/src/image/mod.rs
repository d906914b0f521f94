//! Image store: turns OCI image layouts (`oci:/path[:tag|@sha256:…]`) into extracted,
//! content-addressed layer folders that the runtime stacks as overlayfs lowerdirs.
//!
//! Layout under the store root (`state_dir/images`):
//! - `layers/sha256/<diff_id hex>/` one folder per layer, shared by every image that
//!   contains it, extracted into a temporary folder and renamed into place;
//! - `manifests/<manifest hex>.json` a small record of each prepared image.
//!
//! It must never write outside its root: layer entries are confined to their folder
//! (no absolute paths, no `..`, no writing through symlinks), every blob is verified
//! against its digest while streaming, and a layer is never held in memory.

mod digest;
mod extract;
mod layer;
mod layout;
mod paths;
mod platform;
mod reference;
mod sysfs;
// The end-to-end tests' layout builder, shared so both build layouts the same way.
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_unsafe;
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../../tests/src/oci.rs"]
mod testutil;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil;

/// The parts of an image's config that matter to run it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// An image whose layers are all extracted in the store.
#[derive(Clone, Debug)]
pub struct PreparedImage {
    pub reference: String,
    /// `sha256:<hex>` of the platform manifest that was prepared.
    pub manifest_digest: String,
    /// Extracted layer folders, bottom layer first.
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference `{reference}`: {reason}")]
    Reference { reference: String, reason: String },
    #[error("OCI layout {}: {reason}", path.display())]
    Layout { path: PathBuf, reason: String },
    #[error("OCI layout {}: no manifest tagged `{tag}` in index.json (available tags: {available})", layout.display())]
    TagNotFound {
        layout: PathBuf,
        tag: String,
        available: String,
    },
    #[error(
        "image `{reference}`: no manifest for this host's platform {wanted} (available: {available})"
    )]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("blob {}: expected {expected}, found {actual}", path.display())]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("layer {layer}: media type `{media_type}` is not supported{hint}")]
    UnsupportedMediaType {
        layer: String,
        media_type: String,
        hint: &'static str,
    },
    #[error(
        "layer {layer}: refusing unsafe entry `{entry}`: {reason}; the layer was not extracted"
    )]
    UnsafeEntry {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("layer {layer}: {context}: {source}")]
    Extract {
        layer: String,
        context: String,
        source: io::Error,
    },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl ImageError {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// Content-addressed store of extracted image layers.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating folders as needed) the store at `root` and removes temporary
    /// folders left behind by a crashed extraction.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let store = Self {
            root: root.to_path_buf(),
        };
        for dir in [store.layers_dir(), store.manifests_dir()] {
            fs::create_dir_all(&dir)
                .map_err(ImageError::io(format!("creating {}", dir.display())))?;
        }
        layer::remove_stale_temp_dirs(&store.layers_dir());
        Ok(store)
    }

    /// Extracts (if needed) every layer of `reference` and returns its layer folders and
    /// config. Blocking; cheap when the layers are already in the store.
    pub fn prepare(&self, reference: &str) -> Result<PreparedImage, ImageError> {
        let parsed = reference::parse(reference).map_err(|reason| ImageError::Reference {
            reference: reference.to_string(),
            reason,
        })?;
        let layout = layout::Layout::open(&parsed.layout)?;
        let host = platform::HostPlatform::current();
        let image = layout.resolve(&parsed.selector, &host, reference)?;
        let layers_dir = self.layers_dir();
        let mut layers = Vec::with_capacity(image.layers.len());
        for l in &image.layers {
            layers.push(layer::ensure(&layers_dir, &layout, l)?);
        }
        self.write_record(reference, &image)?;
        Ok(PreparedImage {
            reference: reference.to_string(),
            manifest_digest: image.manifest_digest.to_string(),
            layers,
            config: image.config,
        })
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers").join("sha256")
    }

    fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// Records which layers an image uses (for garbage collection); written once.
    fn write_record(
        &self,
        reference: &str,
        image: &layout::ResolvedImage,
    ) -> Result<(), ImageError> {
        let path = self
            .manifests_dir()
            .join(format!("{}.json", image.manifest_digest.hex()));
        if path.exists() {
            return Ok(());
        }
        let diff_ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
        let record = serde_json::json!({
            "reference": reference,
            "manifest_digest": image.manifest_digest.to_string(),
            "diff_ids": diff_ids,
            "prepared_at_ms": fsutil::now_ms(),
        });
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| ImageError::Io {
            context: "encoding manifest record".into(),
            source: io::Error::other(e),
        })?;
        fsutil::write_atomic(&path, &bytes)
            .map_err(ImageError::io(format!("writing {}", path.display())))
    }
}
