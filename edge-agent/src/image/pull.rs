//! Pulling one image from an OCI distribution registry into the store: resolve the tag
//! (or pinned digest) to this host's manifest, fetch the config, download and extract
//! the layers that are missing, record the result.
//!
//! Blocking. It never starts a download below the free-disk floor, never trusts a byte
//! it has not verified, and falls back to the last resolution only when the registry
//! cannot be reached (not when it answers with an error).

use std::fs;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::client::Client;
use super::config::{Progress, PullConfig};
use super::digest::Digest;
use super::layout::{self, ConfigBlob, Index, LayerRef, Manifest, ResolvedImage};
use super::limits::ImageBudget;
use super::platform::HostPlatform;
use super::reference::{RegistryRef, Selector};
use super::{ImageError, ImageStore, PreparedImage, layer};
use crate::fsutil;

const PROGRESS_EVERY: Duration = Duration::from_millis(100);
const MAX_INDEX_DEPTH: usize = 4;

/// Prepares a registry or `hub:` image (`r.host` empty means the hub).
pub(super) fn prepare(
    store: &ImageStore,
    reference: &str,
    r: &RegistryRef,
    cfg: &PullConfig,
    progress: &dyn Fn(Progress),
) -> Result<PreparedImage, ImageError> {
    if matches!(r.selector, Selector::Digest(_))
        && let Some(done) = store.resolved(reference)
    {
        return Ok(done);
    }
    let mut client = client_for(reference, r, cfg)?;
    let (image, blobs) = match resolve(store, &mut client, reference, r) {
        Ok(found) => found,
        Err(ImageError::Unreachable { registry, reason }) => {
            let Some(done) = store.resolved(reference) else {
                return Err(ImageError::Unreachable { registry, reason });
            };
            warn!(%reference, manifest = %done.manifest_digest, "registry unreachable ({reason}); using the image resolved before");
            return Ok(done);
        }
        Err(e) => return Err(e),
    };
    let layers = fetch_layers(store, &mut client, &image, cfg, progress)?;
    store.save_prepared(reference, &image, &layers, blobs)?;
    Ok(PreparedImage {
        reference: reference.to_string(),
        manifest_digest: image.manifest_digest.to_string(),
        layers,
        config: image.config,
    })
}

fn client_for(reference: &str, r: &RegistryRef, cfg: &PullConfig) -> Result<Client, ImageError> {
    if r.host.is_empty() {
        let hub = cfg.hub.as_ref().ok_or_else(|| ImageError::Reference {
            reference: reference.to_string(),
            reason: "`hub:` images need the agent's `[hub] registry` setting".into(),
        })?;
        let creds = Some((hub.username.as_str(), hub.password.as_str()));
        let client = Client::new(&hub.url, &r.repo, creds, true);
        return match &hub.ca_pem {
            Some(pem) => client.with_ca(pem),
            None => Ok(client),
        };
    }
    let settings = cfg.registry(&r.host);
    let plain = settings.is_some_and(|s| s.insecure) || is_loopback(&r.host);
    let scheme = if plain { "http" } else { "https" };
    let creds = settings.and_then(|s| Some((s.username.as_deref()?, s.password.as_deref()?)));
    Ok(Client::new(
        &format!("{scheme}://{}", r.api_host()),
        &r.repo,
        creds,
        false,
    ))
}

fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    matches!(name, "localhost" | "127.0.0.1")
}

/// Resolves to this host's manifest; returns it and the blobs kept for it.
fn resolve(
    store: &ImageStore,
    client: &mut Client,
    reference: &str,
    r: &RegistryRef,
) -> Result<(ResolvedImage, Vec<String>), ImageError> {
    let host = HostPlatform::current();
    let mut wanted = r.manifest_ref();
    for _ in 0..MAX_INDEX_DEPTH {
        let (bytes, media_type) = client.manifest(&wanted)?;
        let digest = Digest::of(&bytes);
        // Pinned references and index entries name a digest: the bytes must match it.
        if let Ok(d) = Digest::parse(&wanted) {
            check_pinned(client, &d, &digest)?;
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| bad(client, format!("manifest {wanted} is not JSON: {e}")))?;
        if media_type.contains("manifest.v1") && value.get("fsLayers").is_some() {
            return Err(bad(
                client,
                format!("manifest {wanted} uses Docker schema 1, which is not supported"),
            ));
        }
        if value.get("manifests").is_some() {
            let index: Index = serde_json::from_value(value)
                .map_err(|e| bad(client, format!("index {wanted} is not valid: {e}")))?;
            wanted = layout::pick_platform(index.manifests, &host, reference)?.digest;
            continue;
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| bad(client, format!("manifest {wanted} is not valid: {e}")))?;
        store_blob(store, &digest, &bytes)?;
        let (config_digest, config) = fetch_config(store, client, &manifest)?;
        let blobs = vec![digest.to_string(), config_digest.to_string()];
        let image = layout::build_image(digest, manifest, &config_digest, config)
            .map_err(|e| bad(client, e))?;
        return Ok((image, blobs));
    }
    Err(bad(
        client,
        format!("image indexes nested deeper than {MAX_INDEX_DEPTH} levels"),
    ))
}

/// Refuses a manifest or index that does not hash to the digest it was asked by: a
/// pinned (signed) reference must get exactly that content, or nothing.
fn check_pinned(client: &Client, expected: &Digest, actual: &Digest) -> Result<(), ImageError> {
    if expected == actual {
        return Ok(());
    }
    Err(ImageError::PinnedMismatch {
        registry: client.base().to_string(),
        repo: client.repo().to_string(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}

fn bad(client: &Client, reason: String) -> ImageError {
    ImageError::Registry {
        registry: client.base().to_string(),
        reason,
    }
}

fn store_blob(store: &ImageStore, digest: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
    let path = store.blobs_dir().join(digest.hex());
    fsutil::write_private(&path, bytes)
        .map_err(ImageError::io(format!("writing {}", path.display())))
}

fn fetch_config(
    store: &ImageStore,
    client: &mut Client,
    manifest: &Manifest,
) -> Result<(Digest, ConfigBlob), ImageError> {
    let digest = Digest::parse(&manifest.config.digest)
        .map_err(|e| bad(client, format!("manifest config: {e}")))?;
    if manifest.config.size.is_some_and(|s| s > 4 << 20) {
        return Err(bad(client, format!("config {digest} is larger than 4 MiB")));
    }
    let path = client.blob_to_file(
        &digest,
        manifest.config.size,
        &store.blobs_dir(),
        &mut |_| {},
    )?;
    let bytes = fs::read(&path).map_err(ImageError::io(format!("reading {}", path.display())))?;
    let config = serde_json::from_slice(&bytes).map_err(|e| {
        bad(
            client,
            format!("config {digest} is not a valid image config: {e}"),
        )
    })?;
    Ok((digest, config))
}

/// Downloads and extracts the layers not yet in the store; returns all layer folders.
fn fetch_layers(
    store: &ImageStore,
    client: &mut Client,
    image: &ResolvedImage,
    cfg: &PullConfig,
    progress: &dyn Fn(Progress),
) -> Result<Vec<std::path::PathBuf>, ImageError> {
    let layers_dir = store.layers_dir();
    let missing: Vec<&LayerRef> = image
        .layers
        .iter()
        .filter(|l| layer::present(&layers_dir, l).is_none())
        .collect();
    for l in &missing {
        layer::check_media_type(l)?;
    }
    let total: u64 = missing.iter().filter_map(|l| l.size).sum();
    if !missing.is_empty() {
        check_disk(store, total, cfg.min_free_disk)?;
    }
    let mut reporter = Reporter::new(progress, total);
    let mut budget = ImageBudget::new(cfg.limits);
    for l in &missing {
        let blob = client.blob_to_file(&l.blob, l.size, &store.blobs_dir(), &mut |n| {
            reporter.current(n);
        })?;
        reporter.finish_layer(l.size.unwrap_or(0));
        let below = image.layers.iter().take_while(|x| x.diff_id != l.diff_id);
        let lower: Vec<_> = below.map(|x| layers_dir.join(x.diff_id.hex())).collect();
        let result = layer::ensure(&layers_dir, &blob, (l, &lower), &mut budget);
        if let Err(e) = fs::remove_file(&blob) {
            warn!(blob = %blob.display(), "cannot remove extracted layer blob: {e}");
        }
        result?;
    }
    reporter.flush();
    if !missing.is_empty() {
        info!(manifest = %image.manifest_digest, layers = missing.len(), bytes = total, "pulled image");
    }
    image
        .layers
        .iter()
        .map(|l| {
            layer::present(&layers_dir, l).ok_or_else(|| ImageError::Io {
                context: format!("layer {} vanished from the store", l.diff_id),
                source: std::io::ErrorKind::NotFound.into(),
            })
        })
        .collect()
}

pub(super) fn check_disk(store: &ImageStore, download: u64, floor: u64) -> Result<(), ImageError> {
    let Some(free) = store.disk_free_bytes() else {
        return Ok(());
    };
    let needed = floor.saturating_add(download);
    if free < needed {
        return Err(ImageError::LowDisk { free, needed });
    }
    Ok(())
}

/// Turns per-blob byte counts into throttled `Progress` calls.
struct Reporter<'a> {
    progress: &'a dyn Fn(Progress),
    total: u64,
    finished: u64,
    current: u64,
    last: Option<Instant>,
}

impl<'a> Reporter<'a> {
    fn new(progress: &'a dyn Fn(Progress), total: u64) -> Self {
        Self {
            progress,
            total,
            finished: 0,
            current: 0,
            last: None,
        }
    }

    fn current(&mut self, on_disk: u64) {
        self.current = on_disk;
        if self.last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
            self.flush();
        }
    }

    fn finish_layer(&mut self, size: u64) {
        self.finished += size;
        self.current = 0;
    }

    fn flush(&mut self) {
        self.last = Some(Instant::now());
        (self.progress)(Progress {
            done_bytes: (self.finished + self.current).min(self.total),
            total_bytes: self.total,
        });
    }
}
