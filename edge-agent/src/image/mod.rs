//! Image store: turns OCI image layouts (`oci:/path[:tag|@sha256:…]`) and images in
//! OCI distribution registries (`HOST/REPO:TAG`, `hub:REPO:TAG`) into extracted,
//! content-addressed layer folders that the runtime stacks as overlayfs lowerdirs.
//!
//! Layout under the store root (`state_dir/images`):
//! - `layers/sha256/<diff_id hex>/` one folder per layer, shared by every image that
//!   contains it, extracted into a temporary folder and renamed into place;
//! - `blobs/sha256/<hex>` downloaded blobs (`<hex>.partial` while downloading); layer
//!   blobs are deleted once extracted, manifests and configs are kept;
//! - `manifests/<manifest hex>.json` a record of each prepared image (layers, config,
//!   size, last use), `refs.json` reference → manifest digest last resolved.
//!
//! It must never write outside its root: layer entries are confined to their folder
//! (no absolute paths, no `..`, no writing through symlinks), every blob is verified
//! against its digest while streaming, and a layer is never held in memory.

mod auth;
mod client;
mod config;
mod digest;
mod download;
mod extract;
#[doc(hidden)]
pub mod fuzzing;
mod gc;
pub mod healthcheck;
mod layer;
mod layout;
mod limits;
mod paths;
mod platform;
mod pull;
mod pulls;
mod records;
mod reference;
mod sendcreds;
mod service;
mod sysfs;
mod zstd;
// The end-to-end tests' layout builder, shared so both build layouts the same way.
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_layout_paths;
#[cfg(test)]
mod tests_limits;
#[cfg(test)]
mod tests_registry;
#[cfg(test)]
mod tests_unsafe;
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../../tests/src/oci.rs"]
mod testutil;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

pub use config::{HubRegistry, ImagesConfig, Progress, PullConfig, RegistryConfig, UnpackLimits};
pub use gc::GcReport;
pub(crate) use layout::open_regular;
pub use records::ImageRecord;
pub use service::{ImageService, StoreImageService};

#[cfg(test)]
pub mod fake;

/// The parts of an image's config that matter to run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// Its `HEALTHCHECK`, if any. Absent in records written by older agents (then read
    /// again when the image is prepared again).
    #[serde(default)]
    pub healthcheck: Option<Box<healthcheck::ImageHealthcheck>>,
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
    #[error(
        "registry {registry}: manifest {repo}@{expected} has digest {actual}: refusing content that does not match the pinned digest (nothing was stored)"
    )]
    PinnedMismatch {
        registry: String,
        repo: String,
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
    #[error(
        "layer {layer} expands beyond {limit} bytes (images.max_layer_bytes); the layer was not extracted"
    )]
    LayerTooLarge { layer: String, limit: u64 },
    #[error(
        "the layers of this image expand beyond {limit} bytes at layer {layer} (images.max_image_bytes); the layer was not extracted"
    )]
    ImageTooLarge { layer: String, limit: u64 },
    #[error(
        "layer {layer} has more than {limit} entries (images.max_layer_entries); the layer was not extracted"
    )]
    TooManyEntries { layer: String, limit: u64 },
    #[error("layer {layer}: {context}: {source}")]
    Extract {
        layer: String,
        context: String,
        source: io::Error,
    },
    #[error(
        "image `{reference}`: its image index lists {entries} manifest(s) without a `platform`, so none can be chosen for this host ({wanted}); push the image with platforms set"
    )]
    PlatformlessIndex {
        reference: String,
        entries: usize,
        wanted: String,
    },
    #[error("registry {registry}: {reason}")]
    Registry { registry: String, reason: String },
    #[error("registry {registry}: authentication failed: {reason}")]
    Auth { registry: String, reason: String },
    #[error("registry {registry} cannot be reached: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error(
        "not enough free disk space for the image store: {free} bytes free, {needed} needed (download size + images.min_free_disk)"
    )]
    LowDisk { free: u64, needed: u64 },
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
    locks: Arc<Locks>,
}

#[derive(Debug, Default)]
struct Locks {
    /// Held shared by every prepare, exclusively by `gc`: a collection never removes a
    /// layer that a concurrent prepare is about to use.
    gc: RwLock<()>,
    /// Serializes read-modify-writes of records and `refs.json`.
    files: Mutex<()>,
}

impl ImageStore {
    /// Opens (creating folders as needed) the store at `root` and removes temporary
    /// folders left behind by a crashed extraction.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let store = Self {
            root: root.to_path_buf(),
            locks: Arc::default(),
        };
        for dir in [store.layers_dir(), store.manifests_dir(), store.blobs_dir()] {
            fs::create_dir_all(&dir)
                .map_err(ImageError::io(format!("creating {}", dir.display())))?;
        }
        layer::remove_stale_temp_dirs(&store.layers_dir());
        Ok(store)
    }

    /// `prepare_with` for references that need no settings (`oci:` layouts, anonymous
    /// registries), without progress reports.
    pub fn prepare(&self, reference: &str) -> Result<PreparedImage, ImageError> {
        self.prepare_with(reference, &PullConfig::default(), &|_| {})
    }

    /// Makes every layer of `reference` available in the store (pulling from a registry
    /// when needed) and returns its layer folders and config. Blocking; cheap when the
    /// layers are already in the store. When the registry cannot be reached, the image
    /// the reference last resolved to is used if all its layers are present.
    pub fn prepare_with(
        &self,
        reference: &str,
        cfg: &PullConfig,
        progress: &dyn Fn(Progress),
    ) -> Result<PreparedImage, ImageError> {
        let parsed = reference::parse_any(reference).map_err(|reason| ImageError::Reference {
            reference: reference.to_string(),
            reason,
        })?;
        let _shared = self.locks.gc.read().unwrap_or_else(PoisonError::into_inner);
        match parsed {
            reference::Source::Oci(r) => self.prepare_layout(reference, &r, cfg),
            reference::Source::Registry(r) => pull::prepare(self, reference, &r, cfg, progress),
        }
    }

    /// `prepare` for an `oci:` layout whose layers are all in the store already: nothing
    /// to extract or download, so it is cheap enough for the caller's thread (a reconcile
    /// pass). `None` for registry references and for layouts with a layer still to
    /// extract: those go to a background pull.
    pub fn prepare_local(&self, reference: &str) -> Option<Result<PreparedImage, ImageError>> {
        let reference::Source::Oci(parsed) = reference::parse_any(reference).ok()? else {
            return None;
        };
        let _shared = self.locks.gc.read().unwrap_or_else(PoisonError::into_inner);
        self.prepare_layout_with(reference, &parsed, None)
            .transpose()
    }

    fn prepare_layout(
        &self,
        reference: &str,
        parsed: &reference::Reference,
        cfg: &PullConfig,
    ) -> Result<PreparedImage, ImageError> {
        let prepared = self.prepare_layout_with(reference, parsed, Some(cfg))?;
        prepared.ok_or_else(|| ImageError::Layout {
            path: parsed.layout.clone(),
            reason: "layers were not extracted".into(),
        })
    }

    /// Resolves the layout's image; extracts missing layers when `extract` gives the
    /// free-disk floor and unpack limits (`images.min_free_disk`, as for pulls), else
    /// returns `Ok(None)` as soon as a layer is missing.
    fn prepare_layout_with(
        &self,
        reference: &str,
        parsed: &reference::Reference,
        extract: Option<&PullConfig>,
    ) -> Result<Option<PreparedImage>, ImageError> {
        let layout = layout::Layout::open(&parsed.layout)?;
        let host = platform::HostPlatform::current();
        let image = layout.resolve(&parsed.selector, &host, reference)?;
        let layers_dir = self.layers_dir();
        if let Some(PullConfig { min_free_disk, .. }) = extract {
            let missing = image
                .layers
                .iter()
                .filter(|l| layer::present(&layers_dir, l).is_none());
            let total: u64 = missing.filter_map(|l| l.size).sum();
            if total > 0 {
                pull::check_disk(self, total, *min_free_disk)?;
            }
        }
        let limits = extract.map(|c| c.limits).unwrap_or_default();
        let mut budget = limits::ImageBudget::new(limits);
        let mut layers = Vec::with_capacity(image.layers.len());
        for l in &image.layers {
            let dir = match layer::present(&layers_dir, l) {
                Some(dir) => dir,
                None if extract.is_some() => {
                    let blob = (layout.open_blob(&l.blob)?, &*layout.blob_path(&l.blob));
                    layer::ensure_from(&layers_dir, blob, (l, &layers), &mut budget)?
                }
                None => return Ok(None),
            };
            layers.push(dir);
        }
        self.save_prepared(reference, &image, &layers, Vec::new())?;
        Ok(Some(PreparedImage {
            reference: reference.to_string(),
            manifest_digest: image.manifest_digest.to_string(),
            layers,
            config: image.config,
        }))
    }

    /// Free bytes (for unprivileged users) on the filesystem of the store, if known.
    // The statvfs field types are narrower than u64 on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    pub fn disk_free_bytes(&self) -> Option<u64> {
        let st = nix::sys::statvfs::statvfs(&self.root).ok()?;
        Some(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers").join("sha256")
    }

    fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    fn lock_files(&self) -> MutexGuard<'_, ()> {
        self.locks
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
