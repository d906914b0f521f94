//! An [`ImageService`] for unit tests: images are names the test makes available (or
//! makes fail); a pull ends when the daemon next collects, unless the test holds pulls
//! back to look at what happens while one runs. Every `gc` is recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::service::ImageService;
use super::{GcReport, ImageConfig, ImageError, PreparedImage, Progress};

#[derive(Default)]
struct Inner {
    /// Reference → manifest digest of the images a pull finds.
    available: BTreeMap<String, String>,
    /// Reference → what resolved before (kept across "restarts" of the agent).
    resolved: BTreeMap<String, PreparedImage>,
    running: BTreeSet<String>,
    pulls_started: Vec<String>,
    hold: bool,
    gc_calls: Vec<BTreeSet<String>>,
}

/// Clones share the same fake.
#[derive(Clone, Default)]
pub struct FakeImages {
    inner: Arc<Mutex<Inner>>,
}

/// The prepared form of image `reference` with digest `digest`.
pub fn prepared(reference: &str, digest: &str) -> PreparedImage {
    PreparedImage {
        reference: reference.to_owned(),
        manifest_digest: digest.to_owned(),
        layers: vec![PathBuf::from(format!("/fake/layers/{digest}"))],
        config: ImageConfig {
            entrypoint: vec![],
            cmd: vec!["/bin/sh".to_owned()],
            env: vec![],
            working_dir: None,
            user: None,
            healthcheck: None,
        },
    }
}

impl FakeImages {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pull of `reference` will find it, with manifest digest `digest`.
    pub fn add(&self, reference: &str, digest: &str) {
        self.lock()
            .available
            .insert(reference.to_owned(), digest.to_owned());
    }

    /// The store loses `reference` (trimmed, or its disk replaced): it no longer resolves
    /// until it is pulled again.
    pub fn remove_from_store(&self, reference: &str) {
        self.lock().resolved.remove(reference);
    }

    /// Pulls stay running while `hold` is set.
    pub fn hold_pulls(&self, hold: bool) {
        self.lock().hold = hold;
    }

    /// References whose pull was started, in order.
    pub fn pulls_started(&self) -> Vec<String> {
        self.lock().pulls_started.clone()
    }

    /// The `in_use` sets of every collection so far.
    pub fn gc_calls(&self) -> Vec<BTreeSet<String>> {
        self.lock().gc_calls.clone()
    }
}

impl ImageService for FakeImages {
    fn start_pull(&mut self, reference: &str) {
        let mut inner = self.lock();
        if inner.running.insert(reference.to_owned()) {
            inner.pulls_started.push(reference.to_owned());
        }
    }

    fn take_finished(&mut self) -> Vec<(String, Result<PreparedImage, ImageError>)> {
        let mut inner = self.lock();
        if inner.hold {
            return Vec::new();
        }
        let done: Vec<String> = std::mem::take(&mut inner.running).into_iter().collect();
        done.into_iter()
            .map(|r| {
                let result = match inner.available.get(&r) {
                    Some(digest) => {
                        let p = prepared(&r, digest);
                        inner.resolved.insert(r.clone(), p.clone());
                        Ok(p)
                    }
                    None => Err(ImageError::Registry {
                        registry: "fake".to_owned(),
                        reason: format!("manifest unknown: {r}"),
                    }),
                };
                (r, result)
            })
            .collect()
    }

    fn running(&self) -> Vec<(String, Progress)> {
        let p = Progress {
            done_bytes: 10,
            total_bytes: 100,
        };
        self.lock().running.iter().map(|r| (r.clone(), p)).collect()
    }

    fn resolved(&self, reference: &str) -> Option<PreparedImage> {
        self.lock().resolved.get(reference).cloned()
    }

    fn still_present(&self, image: &PreparedImage) -> bool {
        self.lock().resolved.contains_key(&image.reference)
    }

    fn touch(&self, _manifest_digest: &str) -> Result<(), ImageError> {
        Ok(())
    }

    fn gc(&mut self, in_use: &BTreeSet<String>, _max_bytes: u64) -> Result<GcReport, ImageError> {
        self.lock().gc_calls.push(in_use.clone());
        Ok(GcReport::default())
    }
}
