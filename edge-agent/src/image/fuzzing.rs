//! Entry points for the fuzz targets in `fuzz/` (not part of the agent's API): the
//! decoding a registry response goes through in `pull.rs`, and one layer's extraction as
//! `layer.rs` does it, each reachable without a registry or an image store.
//!
//! They must never differ from the code paths they stand for: they only call the same
//! functions in the same order; nothing here is used by the agent itself.

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::digest::Digest;
use super::layer;
use super::layout::{self, ConfigBlob, Index, LayerRef, Manifest, ResolvedImage};
use super::limits::ImageBudget;
use super::platform::HostPlatform;
use super::zstd::MultiFrameDecoder;
use super::{ImageError, UnpackLimits};

/// What a manifest response resolved to for one host.
#[derive(Debug)]
pub enum Resolved {
    /// An image index: the digest of the entry picked for the host.
    Index(String),
    /// An image manifest with its config: the layers to fetch.
    Image(ResolvedImage),
}

/// A manifest or index `body` as `pull.rs` reads it (JSON, index or manifest by its
/// `manifests` key), for `host` (`std::env::consts::ARCH`-style, ARM version); a manifest
/// is paired with the config blob `config`.
pub fn resolve_manifest(
    body: &[u8],
    config: &[u8],
    (arch, arm_version): (&str, u32),
) -> Result<Resolved, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if value.get("manifests").is_some() {
        let index: Index = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let host = HostPlatform::for_arch(arch, arm_version);
        let entry =
            layout::pick_platform(index.manifests, &host, "fuzz").map_err(|e| e.to_string())?;
        return Ok(Resolved::Index(entry.digest));
    }
    let manifest: Manifest = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let config_digest = Digest::parse(&manifest.config.digest).map_err(|e| e.to_string())?;
    let config: ConfigBlob = serde_json::from_slice(config).map_err(|e| e.to_string())?;
    layout::build_image(Digest::of(body), manifest, &config_digest, config).map(Resolved::Image)
}

/// Extracts the blob at `blob` (of `media_type`) into `layers_dir` as `layer::ensure`
/// does when pulling, within `limits`; `lower` are the layers below it. The blob and
/// diff_id digests are computed here so that both checks pass and the layer is moved to
/// its final folder, which is returned.
pub fn extract_layer(
    layers_dir: &Path,
    blob: &Path,
    media_type: &str,
    lower: &[PathBuf],
    limits: UnpackLimits,
) -> Result<PathBuf, ImageError> {
    let bytes = std::fs::read(blob).map_err(|e| io_error("reading the blob", e))?;
    let diff_id = uncompressed_digest(&bytes, media_type, limits.layer_bytes)
        .map_err(|e| io_error("decompressing the blob", e))?;
    let layer = LayerRef {
        blob: Digest::of(&bytes),
        size: Some(bytes.len() as u64),
        media_type: media_type.to_owned(),
        diff_id,
    };
    let mut budget = ImageBudget::new(limits);
    layer::ensure(layers_dir, blob, (&layer, lower), &mut budget)
}

/// Digest of the decompressed stream, read up to `limit` + 1 bytes (beyond that the
/// extraction fails on its limit before the digest matters).
fn uncompressed_digest(bytes: &[u8], media_type: &str, limit: u64) -> io::Result<Digest> {
    let reader: Box<dyn Read + '_> = if media_type.ends_with("zstd") {
        Box::new(MultiFrameDecoder::new(BufReader::new(bytes)))
    } else if media_type.ends_with("gzip") {
        Box::new(MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut out = Vec::new();
    // A decoder error leaves the digest of what came before it: the extraction meets the
    // same error.
    let _ = reader.take(limit.saturating_add(1)).read_to_end(&mut out);
    Ok(Digest::of(&out))
}

fn io_error(context: &str, source: io::Error) -> ImageError {
    ImageError::Io {
        context: context.to_owned(),
        source,
    }
}
