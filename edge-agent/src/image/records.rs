//! Image records (`manifests/<hex>.json`: layers, config, size, last use) and the
//! reference map (`refs.json`: reference → manifest digest it was last resolved to).
//!
//! These files let the agent restart its workloads without network and let the budget
//! pick what to remove. Written atomically; it never removes anything (see `gc.rs`).
//! A write that only moves a timestamp (`last_used_ms`, `resolved_ms`) skips the fsyncs:
//! losing it at a power cut only makes an image look less recently used.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::layout::ResolvedImage;
use super::{ImageConfig, ImageError, ImageStore, PreparedImage};
use crate::fsutil;

/// What the store knows about one prepared image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The reference it was last prepared for.
    pub reference: String,
    pub manifest_digest: String,
    /// diff_ids (`sha256:…`) of its layers, bottom first.
    #[serde(alias = "diff_ids")]
    pub layers: Vec<String>,
    /// Manifest and config blobs kept in `blobs/sha256/` for this image.
    #[serde(default)]
    pub blobs: Vec<String>,
    #[serde(default)]
    pub config: Option<ImageConfig>,
    #[serde(default)]
    pub prepared_at_ms: u64,
    #[serde(default)]
    pub last_used_ms: u64,
    /// Disk use of its layers when it was prepared (shared layers count in each image).
    #[serde(default)]
    pub size_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct RefEntry {
    manifest_digest: String,
    resolved_ms: u64,
}

fn encode_err(e: serde_json::Error) -> ImageError {
    ImageError::Io {
        context: "encoding image store record".into(),
        source: io::Error::other(e),
    }
}

impl ImageStore {
    fn record_path(&self, digest: &Digest) -> PathBuf {
        self.manifests_dir().join(format!("{}.json", digest.hex()))
    }

    pub(super) fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    pub(super) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub(super) fn read_record(&self, digest: &Digest) -> Option<ImageRecord> {
        let bytes = fs::read(self.record_path(digest)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Every readable record (unreadable ones are skipped).
    pub(super) fn all_records(&self) -> Vec<ImageRecord> {
        let Ok(entries) = fs::read_dir(self.manifests_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&fs::read(e.path()).ok()?).ok())
            .collect()
    }

    /// Writes a record; `durable` unless only its timestamps changed.
    fn write_record_file(&self, record: &ImageRecord, durable: bool) -> Result<(), ImageError> {
        let digest = Digest::parse(&record.manifest_digest).map_err(|reason| ImageError::Io {
            context: "writing image record".into(),
            source: io::Error::other(reason),
        })?;
        let path = self.record_path(&digest);
        let bytes = serde_json::to_vec_pretty(record).map_err(encode_err)?;
        write_file(&path, &bytes, durable)
    }

    /// Creates or refreshes the record of a prepared image and maps `reference` to it.
    pub(super) fn save_prepared(
        &self,
        reference: &str,
        image: &ResolvedImage,
        layer_dirs: &[PathBuf],
        blobs: Vec<String>,
    ) -> Result<(), ImageError> {
        let _guard = self.lock_files();
        let now = fsutil::now_ms();
        let existing = self.read_record(&image.manifest_digest);
        let mut record = match existing.clone() {
            Some(r) => r,
            None => ImageRecord {
                reference: String::new(),
                manifest_digest: image.manifest_digest.to_string(),
                layers: image.layers.iter().map(|l| l.diff_id.to_string()).collect(),
                blobs: Vec::new(),
                config: None,
                prepared_at_ms: now,
                last_used_ms: 0,
                size_bytes: 0,
            },
        };
        record.reference = reference.to_string();
        record.config = Some(image.config.clone());
        record.last_used_ms = now;
        record.blobs = blobs;
        if record.size_bytes == 0 {
            let mut seen = HashSet::new();
            record.size_bytes = layer_dirs.iter().map(|d| disk_usage(d, &mut seen)).sum();
        }
        let same_record = existing.is_some_and(|e| {
            e.reference == record.reference
                && e.config == record.config
                && e.blobs == record.blobs
                && e.size_bytes == record.size_bytes
        });
        // A write that only moves a timestamp may fail (full disk): the image is ready.
        let written = self.write_record_file(&record, !same_record);
        tolerate_if(same_record, written)?;
        let digest = image.manifest_digest.to_string();
        let mut refs = self.read_refs();
        let same_ref = refs
            .get(reference)
            .is_some_and(|e| e.manifest_digest == digest);
        refs.insert(
            reference.to_string(),
            RefEntry {
                manifest_digest: digest,
                resolved_ms: now,
            },
        );
        tolerate_if(same_ref, self.write_refs(&refs, !same_ref))
    }

    fn read_refs(&self) -> BTreeMap<String, RefEntry> {
        fs::read(self.refs_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Read-modify-write of `refs.json`; the caller holds the file lock.
    pub(super) fn update_refs(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, RefEntry>),
    ) -> Result<(), ImageError> {
        let mut refs = self.read_refs();
        change(&mut refs);
        self.write_refs(&refs, true)
    }

    fn write_refs(
        &self,
        refs: &BTreeMap<String, RefEntry>,
        durable: bool,
    ) -> Result<(), ImageError> {
        let path = self.refs_path();
        let bytes = serde_json::to_vec_pretty(refs).map_err(encode_err)?;
        write_file(&path, &bytes, durable)
    }

    /// Drops `refs.json` entries pointing at removed images; the caller holds the file lock.
    pub(super) fn forget_refs_to(&self, removed: &HashSet<String>) -> Result<(), ImageError> {
        self.update_refs(|refs| refs.retain(|_, e| !removed.contains(&e.manifest_digest)))
    }

    /// Records that an image was just used (a container of it started).
    pub fn touch(&self, manifest_digest: &str) -> Result<(), ImageError> {
        let digest = Digest::parse(manifest_digest).map_err(|e| ImageError::Reference {
            reference: manifest_digest.to_string(),
            reason: e.to_string(),
        })?;
        let _guard = self.lock_files();
        let Some(mut record) = self.read_record(&digest) else {
            return Ok(());
        };
        record.last_used_ms = fsutil::now_ms();
        self.write_record_file(&record, false)
    }

    /// The image `reference` was last resolved to, if all its layers are still in the
    /// store: no network needed (offline restarts, digest-pinned references).
    pub fn resolved(&self, reference: &str) -> Option<PreparedImage> {
        let entry = self.read_refs().remove(reference)?;
        let digest = Digest::parse(&entry.manifest_digest).ok()?;
        let record = self.read_record(&digest)?;
        let layers_dir = self.layers_dir();
        let mut layers = Vec::with_capacity(record.layers.len());
        for diff_id in &record.layers {
            let dir = layers_dir.join(Digest::parse(diff_id).ok()?.hex());
            if !super::layer::is_extracted(&dir) {
                return None;
            }
            layers.push(dir);
        }
        Some(PreparedImage {
            reference: reference.to_string(),
            manifest_digest: record.manifest_digest,
            layers,
            config: record.config?,
        })
    }
}

/// Bytes allocated on disk under `path` (hard links counted once per `seen` set).
pub(super) fn disk_usage(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir()
            && let Ok(entries) = fs::read_dir(&p)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    total
}

/// A failed write of what only refreshes a timestamp is logged, not an error.
fn tolerate_if(timestamp_only: bool, written: Result<(), ImageError>) -> Result<(), ImageError> {
    match written {
        Err(e) if timestamp_only => {
            tracing::warn!("image store: {e} (only a timestamp was not updated)");
            Ok(())
        }
        other => other,
    }
}

fn write_file(path: &Path, bytes: &[u8], durable: bool) -> Result<(), ImageError> {
    let written = if durable {
        fsutil::write_private(path, bytes)
    } else {
        fsutil::replace_private(path, bytes)
    };
    written.map_err(ImageError::io(format!("writing {}", path.display())))
}
