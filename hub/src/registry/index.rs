//! `registry/index.json`: which repositories exist, their tags, and which manifests and
//! blobs each one may serve. Plain data, loaded once and rewritten atomically on import.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{RegistryError, io_err, write_atomic};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub repositories: BTreeMap<String, Repository>,
}

/// One repository: tags, and every manifest (image index or image manifest, nested ones
/// included) and other blob (configs, layers) reachable from them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub tags: BTreeMap<String, TagEntry>,
    /// Manifest digest → media type and size.
    pub manifests: BTreeMap<String, ManifestEntry>,
    /// Blob digest (configs, layers) → size.
    pub blobs: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEntry {
    pub digest: String,
    pub media_type: String,
    /// `os/arch[/variant]` of each image, for `image ls`.
    pub platforms: Vec<String>,
    /// Bytes of every distinct blob the tag reaches (manifests, configs, layers).
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub media_type: String,
    pub size: u64,
}

impl Index {
    /// Reads the index; an empty one when the file does not exist yet.
    pub fn load(path: &Path) -> Result<Index, RegistryError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| RegistryError::Corrupt {
                path: path.to_owned(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(io_err("cannot read", path)(e)),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| RegistryError::Corrupt {
            path: path.to_owned(),
            source,
        })?;
        write_atomic(path, &bytes).map_err(io_err("cannot write", path))
    }
}

impl Repository {
    /// Adds `other`'s tags (replacing same-named ones), manifests and blobs.
    pub fn merge(&mut self, other: Repository) {
        self.tags.extend(other.tags);
        self.manifests.extend(other.manifests);
        self.blobs.extend(other.blobs);
    }

    /// The manifest a tag or digest names: `(digest, entry)`.
    pub fn resolve(&self, reference: &str) -> Option<(String, &ManifestEntry)> {
        let digest = match self.tags.get(reference) {
            Some(t) => t.digest.clone(),
            None => reference.to_owned(),
        };
        let entry = self.manifests.get(&digest)?;
        Some((digest, entry))
    }

    /// Whether the repository may serve `digest` as a blob (manifests are blobs too).
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blobs.contains_key(digest) || self.manifests.contains_key(digest)
    }
}
