//! Puts one layer into the store: streams the blob through digest checks and the
//! decompressor into a temporary folder, then renames it to `layers/sha256/<diff_id>`.
//!
//! A layer folder exists under its final name only when it was completely extracted and
//! both digests matched; anything else is deleted. A layer is never held in memory.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;
use tracing::{info, warn};

use super::ImageError;
use super::digest::HashingReader;
use super::extract;
use super::layout::LayerRef;
use super::limits::{ImageBudget, LayerBudget, LimitedReader};
use super::zstd::MultiFrameDecoder;
use crate::fsutil;

const TEMP_PREFIX: &str = ".tmp-";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A decompressing reader that gives its inner reader back.
enum Decompress<R: BufRead> {
    Plain(R),
    Gzip(MultiGzDecoder<R>),
    Zstd(Box<MultiFrameDecoder<R>>),
}

impl<R: BufRead> Decompress<R> {
    fn into_inner(self) -> R {
        match self {
            Self::Plain(r) => r,
            Self::Gzip(d) => d.into_inner(),
            Self::Zstd(d) => (*d).into_inner(),
        }
    }
}

impl<R: BufRead> Read for Decompress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(r) => r.read(buf),
            Self::Gzip(d) => d.read(buf),
            Self::Zstd(d) => d.read(buf),
        }
    }
}

fn compression(layer: &LayerRef) -> Result<Compression, ImageError> {
    let mt = layer.media_type.as_str();
    let unsupported = |hint| ImageError::UnsupportedMediaType {
        layer: layer.blob.to_string(),
        media_type: mt.to_string(),
        hint,
    };
    if mt.ends_with("tar+gzip") || mt.ends_with(".tar.gzip") {
        Ok(Compression::Gzip)
    } else if mt.ends_with(".tar") {
        Ok(Compression::None)
    } else if mt.ends_with("tar+zstd") || mt.ends_with(".tar.zstd") {
        Ok(Compression::Zstd)
    } else {
        Err(unsupported(" (expected a tar, tar+gzip or tar+zstd layer)"))
    }
}

/// Folder of `layer` in the store, if it is already extracted.
pub fn present(layers_dir: &Path, layer: &LayerRef) -> Option<PathBuf> {
    let dest = layers_dir.join(layer.diff_id.hex());
    is_extracted(&dest).then_some(dest)
}

/// True when `dir` is an extracted layer's folder (a real folder, not a symlink).
pub fn is_extracted(dir: &Path) -> bool {
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
}

/// Checks that the layer's media type can be extracted (before anything is downloaded).
pub fn check_media_type(layer: &LayerRef) -> Result<(), ImageError> {
    compression(layer).map(drop)
}

/// Returns the folder of `layer`, extracting it from the compressed blob at `blob` (a
/// file of the agent's own store) first when it is not in the store, within `budget`
/// (what it expanded to is added to it).
/// `lower`: the folders of the layers below it, bottom first (a hard link may name a
/// file of one of them).
pub fn ensure(
    layers_dir: &Path,
    blob: &Path,
    (layer, lower): (&LayerRef, &[PathBuf]),
    budget: &mut ImageBudget,
) -> Result<PathBuf, ImageError> {
    if let Some(dest) = present(layers_dir, layer) {
        return Ok(dest);
    }
    let file = File::open(blob).map_err(|source| ImageError::Extract {
        layer: layer.blob.to_string(),
        context: format!("opening blob {}", blob.display()),
        source,
    })?;
    ensure_from(layers_dir, (file, blob), (layer, lower), budget)
}

/// [`ensure`] from a blob already opened (by [`super::layout::Layout::open_blob`]);
/// `shown` names it in messages.
pub fn ensure_from(
    layers_dir: &Path,
    (blob, shown): (File, &Path),
    (layer, lower): (&LayerRef, &[PathBuf]),
    budget: &mut ImageBudget,
) -> Result<PathBuf, ImageError> {
    if let Some(dest) = present(layers_dir, layer) {
        return Ok(dest);
    }
    let dest = layers_dir.join(layer.diff_id.hex());
    let kind = compression(layer)?;
    let tmp = layers_dir.join(temp_name(layer.diff_id.hex()));
    let io_err = |context: String| move |source| ImageError::Io { context, source };
    fs::create_dir(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    let source = (blob, shown);
    let limit = budget.next_layer();
    let result = extract_verified(source, kind, &tmp, (layer, lower), limit).and_then(|bytes| {
        budget.add(bytes);
        let dir = File::open(&tmp).map_err(io_err(format!("opening {}", tmp.display())))?;
        nix::unistd::syncfs(dir.as_raw_fd())
            .map_err(|e| io_err(format!("syncing {}", tmp.display()))(e.into()))
    });
    if let Err(e) = result {
        remove_dir(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, &dest) {
        remove_dir(&tmp);
        // Another extraction of the same layer may have won the race: that is fine.
        if !dest.is_dir() {
            return Err(io_err(format!("renaming {} into place", tmp.display()))(e));
        }
    }
    File::open(layers_dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing {}", layers_dir.display())))?;
    info!(layer = %layer.blob, diff_id = %layer.diff_id, "extracted image layer");
    Ok(dest)
}

/// Streams the blob through both digest checks and the layer's budget into `tmp`;
/// returns what the layer expanded to.
fn extract_verified(
    (file, blob): (File, &Path),
    kind: Compression,
    tmp: &Path,
    (layer, lower): (&LayerRef, &[PathBuf]),
    budget: LayerBudget,
) -> Result<u64, ImageError> {
    let name = layer.blob.to_string();
    let outer = HashingReader::new(BufReader::with_capacity(64 * 1024, file));
    let outer = BufReader::with_capacity(64 * 1024, outer);
    let decompressed = match kind {
        Compression::None => Decompress::Plain(outer),
        Compression::Gzip => Decompress::Gzip(MultiGzDecoder::new(outer)),
        Compression::Zstd => Decompress::Zstd(Box::new(MultiFrameDecoder::new(outer))),
    };
    let (limited, over) = LimitedReader::new(decompressed, budget.bytes);
    let mut archive = tar::Archive::new(HashingReader::new(limited));
    let beyond = |e| {
        if over.get() {
            budget.too_large(&name)
        } else {
            e
        }
    };
    let content = extract::unpack(&mut archive, tmp, (&name, lower), budget).map_err(beyond)?;
    let drain_err = |source| {
        beyond(ImageError::Extract {
            layer: name.clone(),
            context: "reading the rest of the blob".into(),
            source,
        })
    };
    let (limited, diff_id, _) = archive.into_inner().finish().map_err(drain_err)?;
    let expanded = limited.count().max(content);
    let (_, blob_digest, size) = limited
        .into_inner()
        .into_inner()
        .into_inner()
        .finish()
        .map_err(drain_err)?;
    if blob_digest != layer.blob || layer.size.is_some_and(|s| s != size) {
        let expected = format!(
            "{} ({} bytes)",
            layer.blob,
            layer.size.map_or("?".into(), |s| s.to_string())
        );
        let actual = format!("{blob_digest} ({size} bytes)");
        return Err(ImageError::DigestMismatch {
            path: blob.to_path_buf(),
            expected,
            actual,
        });
    }
    if diff_id != layer.diff_id {
        let expected = format!(
            "uncompressed content {} (diff_id from the image config)",
            layer.diff_id
        );
        return Err(ImageError::DigestMismatch {
            path: blob.to_path_buf(),
            expected,
            actual: diff_id.to_string(),
        });
    }
    Ok(expanded)
}

/// `.tmp-<hex>-<pid>-<start ticks>-<n>`: unique per extraction, and tells whether the
/// process that made it is still alive.
fn temp_name(hex: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let ticks = fsutil::proc_start_ticks(pid).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{TEMP_PREFIX}{hex}-{pid}-{ticks}-{n}")
}

/// Deletes temporary folders whose extracting process is gone (a crash or power cut).
pub fn remove_stale_temp_dirs(layers_dir: &Path) {
    let Ok(entries) = fs::read_dir(layers_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let mut parts = rest.split('-').skip(1).map(str::parse::<u64>);
        let owner_alive = match (parts.next(), parts.next()) {
            (Some(Ok(pid)), Some(Ok(ticks))) => {
                u32::try_from(pid).is_ok_and(|pid| fsutil::process_matches(pid, ticks))
            }
            _ => false,
        };
        if !owner_alive {
            warn!(folder = %name, "removing leftover temporary layer folder");
            remove_dir(&entry.path());
        }
    }
}

fn remove_dir(path: &Path) {
    // remove_dir_all does not follow symlinks inside the tree.
    if let Err(e) = fs::remove_dir_all(path) {
        warn!(folder = %path.display(), "cannot remove temporary layer folder: {e}");
    }
}
