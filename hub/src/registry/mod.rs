//! The hub's image registry: a content-addressed blob store and a repository/tag index
//! under `<data_dir>/registry/`, filled by `drover-hub image import` (OCI image layouts on
//! the hub's machine) and served read-only to devices over the OCI distribution API (`/v2`).
//!
//! Layout on disk:
//! - `blobs/sha256/<hex>` every blob (indexes, manifests, configs, layers), written to a
//!   staging folder, verified against its digest and size, then renamed into place;
//! - `index.json` the repositories: tags, manifests (with their media types) and blobs,
//!   rewritten atomically (temp + fsync + rename);
//! - `tmp/` staging folders of imports in progress (removed when an import ends).
//!
//! This module must never accept a blob whose digest it has not checked, and never lets a
//! request path reach the file system except as a validated `sha256:<64 hex>` digest.

mod http;
mod import;
mod index;
mod names;
mod nofollow;

#[cfg(test)]
mod tests;
// The end-to-end tests' layout builder, so the tests import real-looking layouts.
#[cfg(test)]
#[allow(dead_code, clippy::unwrap_used)]
#[path = "../../../tests/src/oci.rs"]
pub(crate) mod testoci;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub use http::{RegistryState, router};
pub use index::{Index, ManifestEntry, Repository, TagEntry};
pub use names::{Digest, check_name, check_tag};

use crate::views::ImageView;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Why an import or a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Something is wrong with what was asked for (the layout, a name, a tag).
    #[error("{0}")]
    Invalid(String),
    #[error("blob {digest} in the layout does not match its descriptor: {found}")]
    Mismatch { digest: String, found: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("registry index {}: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl RegistryError {
    /// `true` when the caller's input is at fault (HTTP 400), not the hub.
    pub fn is_invalid(&self) -> bool {
        match self {
            RegistryError::Invalid(_) | RegistryError::Mismatch { .. } => true,
            RegistryError::Io { what, .. } => what.starts_with("layout"),
            RegistryError::Corrupt { .. } => false,
        }
    }
}

impl From<drover_protocol::DigestError> for RegistryError {
    fn from(e: drover_protocol::DigestError) -> Self {
        RegistryError::Invalid(e.to_string())
    }
}

pub(crate) fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RegistryError {
    let path = path.to_owned();
    move |source| RegistryError::Io { what, path, source }
}

/// The registry of one hub: blob folder plus the in-memory copy of `index.json`.
pub struct Registry {
    root: PathBuf,
    index: Mutex<Index>,
}

impl Registry {
    /// Opens (creating the folders if needed) the registry at `root`.
    pub fn open(root: &Path) -> Result<Registry, RegistryError> {
        for dir in [root.join("blobs").join("sha256"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        }
        let index = Index::load(&root.join("index.json"))?;
        Ok(Registry {
            root: root.to_owned(),
            index: Mutex::new(index),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    pub(crate) fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of one repository's entry.
    pub fn repository(&self, name: &str) -> Option<Repository> {
        self.index().repositories.get(name).cloned()
    }

    /// The digest `/v2/REPO/manifests/TAG` serves (an image index or a manifest), if
    /// the repository has that tag. What the hub pins `hub:REPO:TAG` to at apply.
    pub fn resolve(&self, repo: &str, tag: &str) -> Option<Digest> {
        let index = self.index();
        let entry = index.repositories.get(repo)?.tags.get(tag)?;
        Digest::parse(&entry.digest).ok()
    }

    /// Every tag of every repository, by name then tag.
    pub fn images(&self) -> Vec<ImageView> {
        let index = self.index();
        let mut out = Vec::new();
        for (name, repo) in &index.repositories {
            for (tag, t) in &repo.tags {
                out.push(ImageView {
                    name: name.clone(),
                    tag: tag.clone(),
                    digest: t.digest.clone(),
                    media_type: t.media_type.clone(),
                    platforms: t.platforms.clone(),
                    size: t.size,
                });
            }
        }
        out
    }

    /// Merges an import into the index and writes it out; on a write error the
    /// in-memory index is left as it was.
    pub(crate) fn commit(&self, name: &str, repo: Repository) -> Result<(), RegistryError> {
        let mut index = self.index();
        let mut next = index.clone();
        next.repositories
            .entry(name.to_owned())
            .or_default()
            .merge(repo);
        next.save(&self.root.join("index.json"))?;
        *index = next;
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}
