//! The daemon's view of images: what each reference resolved to for the current desired
//! state, the state of each pull the planner asked for, and the store's trimming.

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::agent::Agent;
use crate::config::AgentConfig;
use crate::image::{HubRegistry, ImageService, PreparedImage, PullConfig};
use crate::reconcile::ImageState;
use crate::reconcile::images::{fallback_images, gc_due, images_in_use};

#[derive(Debug, Default)]
pub(super) struct ImageCache {
    /// Reference → what it resolved to for this desired state.
    prepared: BTreeMap<String, PreparedImage>,
    /// Reference → pull state, for the planner and the status.
    pub states: BTreeMap<String, ImageState>,
    /// Boot-clock time of the last trim.
    last_gc: Option<u64>,
    /// Set when a workload went away: its image may be unused now.
    pub gc_requested: bool,
}

/// What one pull needs: registry settings, the hub's registry, the free-disk floor.
pub(super) fn pull_config(cfg: &AgentConfig) -> PullConfig {
    let hub = cfg.hub.as_ref().and_then(|h| {
        Some(HubRegistry {
            // An unreadable CA file fails the pull (an empty CA), never falls back.
            ca_pem: h.ca_pem().unwrap_or_else(|_| Some(String::new())),
            url: h.registry.clone()?,
            username: cfg.device.to_string(),
            // The registry password derived from the credential, never the credential.
            password: drover_protocol::keys::registry_password(h.credential.as_bytes()),
        })
    });
    PullConfig::new(&cfg.images, hub)
}

impl ImageCache {
    /// A new desired state: tags are resolved again.
    pub fn forget_resolutions(&mut self) {
        self.prepared.clear();
        self.states.clear();
    }

    /// Takes in finished pulls and the progress of running ones.
    pub fn collect(&mut self, service: &mut dyn ImageService, now_boot: u64) {
        for (image, result) in service.take_finished() {
            let state = match result {
                Ok(p) => {
                    info!(image = %image, digest = %p.manifest_digest, layers = p.layers.len(), "image ready");
                    self.prepared.insert(image.clone(), p);
                    ImageState::Ready
                }
                Err(e) => {
                    warn!(image = %image, "image not available: {e}");
                    ImageState::Failed {
                        error: e.to_string(),
                        at_boot_ms: now_boot,
                    }
                }
            };
            self.states.insert(image, state);
        }
        for (image, p) in service.running() {
            let state = ImageState::Pulling {
                done_bytes: p.done_bytes,
                total_bytes: p.total_bytes,
            };
            self.states.insert(image, state);
        }
    }

    /// The prepared image for a container start: from this generation's cache, else what
    /// the store resolved before (no network: a device restarts workloads offline); only
    /// while its layers are still in the store.
    pub fn ensure(&mut self, service: &dyn ImageService, image: &str) -> Option<PreparedImage> {
        if let Some(p) = self.prepared.get(image)
            && service.still_present(p)
        {
            return Some(p.clone());
        }
        let Some(found) = service.resolved(image) else {
            self.forget(image);
            return None;
        };
        self.prepared.insert(image.to_string(), found.clone());
        Some(found)
    }

    /// `image` is gone from the store: the planner will ask for it again.
    fn forget(&mut self, image: &str) {
        self.prepared.remove(image);
        self.states.remove(image);
    }

    /// A pull was asked for: it shows as started at once.
    pub fn pulling(&mut self, image: &str) {
        self.states.insert(
            image.to_string(),
            ImageState::Pulling {
                done_bytes: 0,
                total_bytes: 0,
            },
        );
    }
}

impl Agent {
    /// Keeps the image store within `images.max_bytes` when [`gc_due`] says so. Images of
    /// desired or created workloads are never removed.
    pub(super) fn trim_images(&mut self) {
        let now = self.ports.clock.boot_ms();
        let running = !self.ports.images.running().is_empty();
        let c = &mut self.images;
        if !gc_due(now, c.last_gc, c.gc_requested, running) {
            return;
        }
        c.last_gc = Some(now);
        c.gc_requested = false;
        let resolved: BTreeMap<String, String> = c
            .prepared
            .iter()
            .map(|(r, p)| (r.clone(), p.manifest_digest.clone()))
            .collect();
        let mut in_use = images_in_use(&self.sources.desired.workloads, &resolved, &self.records);
        // The fallback revision's images stay, so that the device can go back offline.
        let service = self.ports.images.as_ref();
        in_use.extend(
            fallback_images(&self.sources.given)
                .filter_map(|image| service.resolved(image))
                .map(|p| p.manifest_digest),
        );
        let max = self.cfg.images.max_bytes.0;
        match self.ports.images.gc(&in_use, max) {
            Ok(r) if !r.removed_images.is_empty() => info!(
                removed_images = r.removed_images.len(),
                bytes_before = r.bytes_before,
                bytes_after = r.bytes_after,
                "image store trimmed to its budget"
            ),
            Ok(r) if r.over_budget => {
                warn!(
                    bytes = r.bytes_after,
                    budget = max,
                    "image store over budget: every image is in use"
                )
            }
            Ok(_) => {}
            Err(e) => warn!("trimming the image store: {e}"),
        }
    }
}
