//! The seam between the daemon and images: background pulls with progress, what a
//! reference resolved to before (for offline restarts), use stamps and the store's budget.
//! [`StoreImageService`] is the real one (the [`ImageStore`] plus pull threads); a fake
//! for unit tests is in `image/fake.rs`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::pulls::Pulls;
use super::{GcReport, ImageError, ImageStore, PreparedImage, Progress, PullConfig};

pub trait ImageService: Send {
    /// Starts preparing `reference` in the background (pull, verify, extract) unless that
    /// is already under way. The result comes out of [`ImageService::take_finished`].
    fn start_pull(&mut self, reference: &str);
    /// Pulls that ended since the last call.
    fn take_finished(&mut self) -> Vec<(String, Result<PreparedImage, ImageError>)>;
    /// Progress of the pulls still running.
    fn running(&self) -> Vec<(String, Progress)>;
    /// What `reference` resolved to last time, if all its layers are still here.
    fn resolved(&self, reference: &str) -> Option<PreparedImage>;
    /// True while every layer folder of a prepared image is still in the store.
    fn still_present(&self, image: &PreparedImage) -> bool;
    /// Records that the image `manifest_digest` was used now (for LRU removal).
    fn touch(&self, manifest_digest: &str) -> Result<(), ImageError>;
    /// Removes least recently used images outside `in_use` until the store holds at most
    /// `max_bytes`.
    fn gc(&mut self, in_use: &BTreeSet<String>, max_bytes: u64) -> Result<GcReport, ImageError>;
}

/// The image store on disk, pulling on one thread per image.
pub struct StoreImageService {
    store: ImageStore,
    pulls: Pulls,
    cfg: PullConfig,
    /// The agent's socket, poked when a pull ends.
    notify: PathBuf,
}

impl StoreImageService {
    pub fn new(store: ImageStore, cfg: PullConfig, notify: PathBuf) -> Self {
        StoreImageService {
            store,
            pulls: Pulls::default(),
            cfg,
            notify,
        }
    }
}

impl ImageService for StoreImageService {
    fn start_pull(&mut self, reference: &str) {
        self.pulls.start(
            &self.store,
            reference,
            self.cfg.clone(),
            self.notify.clone(),
        );
    }

    fn take_finished(&mut self) -> Vec<(String, Result<PreparedImage, ImageError>)> {
        self.pulls.take_finished()
    }

    fn running(&self) -> Vec<(String, Progress)> {
        self.pulls.running()
    }

    fn resolved(&self, reference: &str) -> Option<PreparedImage> {
        self.store.resolved(reference)
    }

    fn still_present(&self, image: &PreparedImage) -> bool {
        image.layers.iter().all(|l| super::layer::is_extracted(l))
    }

    fn touch(&self, manifest_digest: &str) -> Result<(), ImageError> {
        self.store.touch(manifest_digest)
    }

    fn gc(&mut self, in_use: &BTreeSet<String>, max_bytes: u64) -> Result<GcReport, ImageError> {
        self.store.gc(in_use, max_bytes)
    }
}
