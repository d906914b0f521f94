//! The image store budget: removes unused images, oldest use first, until layers and
//! blobs fit in `max_bytes`, then the layers and blobs no remaining image references.
//!
//! It must never remove an image in the `in_use` set (nor a layer or blob one of them
//! references), even when the store stays over budget: it reports that instead. It
//! runs with every prepare excluded, so it never removes a layer being set up.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;
use std::sync::PoisonError;

use tracing::{info, warn};

use super::digest::Digest;
use super::records::{ImageRecord, disk_usage};
use super::{ImageError, ImageStore};

/// What one collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Manifest digests of the images removed, in removal order.
    pub removed_images: Vec<String>,
    pub removed_layers: usize,
    pub removed_blobs: usize,
    /// Store size (layers + blobs) before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Still above the budget: everything left is in use.
    pub over_budget: bool,
}

impl ImageStore {
    /// Bytes used by layers and blobs.
    pub fn store_bytes(&self) -> u64 {
        let mut seen = HashSet::new();
        disk_usage(&self.layers_dir(), &mut seen) + disk_usage(&self.blobs_dir(), &mut seen)
    }

    /// Removes images not in `in_use` (manifest digests), least recently used first,
    /// until the store is within `max_bytes`.
    pub fn gc(&self, in_use: &BTreeSet<String>, max_bytes: u64) -> Result<GcReport, ImageError> {
        let _exclusive = self
            .locks
            .gc
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let _files = self.lock_files();
        let before = self.store_bytes();
        let mut report = GcReport {
            bytes_before: before,
            bytes_after: before,
            ..GcReport::default()
        };
        if before <= max_bytes {
            return Ok(report);
        }
        let mut keep = self.all_records();
        let mut victims: Vec<ImageRecord> = keep
            .iter()
            .filter(|r| !in_use.contains(&r.manifest_digest))
            .cloned()
            .collect();
        victims.sort_by_key(|r| {
            (
                r.last_used_ms.max(r.prepared_at_ms),
                r.manifest_digest.clone(),
            )
        });
        let mut removed = HashSet::new();
        for victim in victims {
            if report.bytes_after <= max_bytes {
                break;
            }
            self.remove_record(&victim)?;
            keep.retain(|r| r.manifest_digest != victim.manifest_digest);
            self.remove_unreferenced(&keep, &mut report);
            report.bytes_after = self.store_bytes();
            removed.insert(victim.manifest_digest.clone());
            report.removed_images.push(victim.manifest_digest);
        }
        if !removed.is_empty() {
            self.forget_refs_to(&removed)?;
        }
        report.over_budget = report.bytes_after > max_bytes;
        if report.over_budget {
            warn!(
                bytes = report.bytes_after,
                max_bytes, "image store over budget: every remaining image is in use"
            );
        }
        if !report.removed_images.is_empty() {
            info!(
                images = report.removed_images.len(),
                freed = report.bytes_before.saturating_sub(report.bytes_after),
                "removed unused images"
            );
        }
        Ok(report)
    }

    fn remove_record(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let digest = Digest::parse(&record.manifest_digest).map_err(|reason| ImageError::Io {
            context: "image record".into(),
            source: std::io::Error::other(reason),
        })?;
        let path = self.manifests_dir().join(format!("{}.json", digest.hex()));
        fs::remove_file(&path).map_err(ImageError::io(format!("removing {}", path.display())))
    }

    /// Removes layer folders and blobs no record in `keep` references (temporary
    /// folders and `.partial` downloads are not digest-named and stay).
    fn remove_unreferenced(&self, keep: &[ImageRecord], report: &mut GcReport) {
        let layers: HashSet<&str> = keep
            .iter()
            .flat_map(|r| r.layers.iter().map(String::as_str))
            .collect();
        let blobs: HashSet<&str> = keep
            .iter()
            .flat_map(|r| {
                r.blobs
                    .iter()
                    .map(String::as_str)
                    .chain([r.manifest_digest.as_str()])
            })
            .collect();
        report.removed_layers += remove_entries(&self.layers_dir(), |name| {
            Digest::parse(&format!("sha256:{name}"))
                .is_ok_and(|_| !layers.contains(format!("sha256:{name}").as_str()))
        });
        report.removed_blobs += remove_entries(&self.blobs_dir(), |name| {
            Digest::parse(&format!("sha256:{name}"))
                .is_ok_and(|_| !blobs.contains(format!("sha256:{name}").as_str()))
        });
    }
}

/// Removes the entries of `dir` whose name `doomed` accepts; returns how many.
fn remove_entries(dir: &Path, doomed: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !doomed(&name) {
            continue;
        }
        let path = entry.path();
        let result = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match result {
            Ok(()) => count += 1,
            Err(e) => warn!(path = %path.display(), "cannot remove unused image data: {e}"),
        }
    }
    count
}
