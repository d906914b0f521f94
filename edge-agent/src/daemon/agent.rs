//! The agent's in-memory state and one reconcile pass: observe → plan → apply → report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_protocol::{DesiredState, Name, WorkloadSpec};
use tracing::{error, info, warn};

use super::manifests;
use crate::config::AgentConfig;
use crate::fsutil::now_ms;
use crate::image::{ImageError, ImageStore, PreparedImage};
use crate::reconcile::{ImageState, plan};
use crate::runtime::ShimRuntime;
use crate::state::{self, StatePaths, WorkloadRecord};

/// A reconcile pass stops after this many rounds of actions, so that nothing can spin.
const MAX_ROUNDS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("image store: {0}")]
    Image(#[from] ImageError),
    #[error("another agent is already running on state folder {0}")]
    Locked(PathBuf),
}

impl DaemonError {
    pub fn hub(e: impl std::fmt::Display) -> Self {
        DaemonError::Io {
            context: "hub link".into(),
            source: std::io::Error::other(e.to_string()),
        }
    }

    pub fn signal(source: std::io::Error) -> Self {
        DaemonError::Io {
            context: "installing signal handlers".into(),
            source,
        }
    }
}

pub struct Agent {
    pub cfg: AgentConfig,
    pub paths: StatePaths,
    pub(super) runtime: ShimRuntime,
    pub(super) images: ImageStore,
    pub(super) prepared: BTreeMap<String, PreparedImage>,
    pub(super) image_states: BTreeMap<String, ImageState>,
    pub(super) records: BTreeMap<Name, WorkloadRecord>,
    /// What the agent reconciles towards: the hub's workloads plus the static ones.
    /// Its generation is the hub's (0 without a hub).
    pub(super) desired: DesiredState,
    /// Workloads from the manifests folder (persisted as `desired.bin`).
    pub(super) static_desired: DesiredState,
    /// The last verified desired state from the hub (persisted signed, `hub-desired.bin`).
    pub(super) hub_desired: Option<DesiredState>,
    /// Static workloads hidden by a hub workload of the same name.
    pub(super) conflicts: Vec<String>,
    pub(super) manifest_error: Option<String>,
    /// Image pulls running in the background.
    pub(super) pulls: super::pulls::Pulls,
    /// When the image store was last trimmed to its budget.
    pub(super) last_gc_ms: u64,
    /// Set when a workload went away: its image may be unused now.
    pub(super) gc_requested: bool,
    /// The latest link statistics, shown in the report.
    pub(super) link_stats: Option<crate::hub_link::LinkStats>,
    /// A changed status the event loop has yet to hand to the hub link.
    pub(super) status_to_publish: Option<drover_protocol::DeviceStatus>,
    /// The last report written (without time and memory), to skip identical writes.
    pub(super) last_report: Option<state::AgentReport>,
    /// Held for the agent's lifetime: one agent per state folder.
    _lock: std::fs::File,
}

impl Agent {
    /// Opens the state folder, takes its lock and loads what a previous agent left.
    pub fn open(cfg: AgentConfig) -> Result<Agent, DaemonError> {
        let paths = StatePaths::new(&cfg.state_dir);
        let io = |context: String| move |source| DaemonError::Io { context, source };
        paths.ensure().map_err(io(format!(
            "creating state folder {}",
            paths.root.display()
        )))?;
        let lock = lock_state(&paths)?;
        let (records, errors) = state::load_records(&paths);
        for e in errors {
            error!("skipping unreadable workload record: {e}");
        }
        let static_desired = match state::load_desired(&paths) {
            Ok(Some(d)) => d,
            Ok(None) => DesiredState {
                device: cfg.device.clone(),
                generation: 0,
                workloads: vec![],
            },
            Err(e) => {
                error!("ignoring unreadable desired state: {e}");
                DesiredState {
                    device: cfg.device.clone(),
                    generation: 0,
                    workloads: vec![],
                }
            }
        };
        info!(
            device = %cfg.device,
            state_dir = %paths.root.display(),
            generation = static_desired.generation,
            workloads = static_desired.workloads.len(),
            adopted_records = records.len(),
            "agent state loaded"
        );
        let images = ImageStore::open(&paths.images())?;
        let runtime = ShimRuntime::new(paths.runtime());
        let desired = DesiredState {
            device: cfg.device.clone(),
            generation: 0,
            workloads: vec![],
        };
        let mut agent = Agent {
            cfg,
            paths,
            runtime,
            images,
            prepared: BTreeMap::new(),
            image_states: BTreeMap::new(),
            records,
            desired,
            static_desired,
            hub_desired: None,
            conflicts: Vec::new(),
            manifest_error: None,
            last_report: None,
            pulls: super::pulls::Pulls::default(),
            last_gc_ms: 0,
            gc_requested: false,
            link_stats: None,
            status_to_publish: None,
            _lock: lock,
        };
        agent.load_hub_desired();
        agent.merge();
        Ok(agent)
    }

    pub fn manifests_dir(&self) -> Option<&Path> {
        self.cfg.manifests_dir.as_deref()
    }

    pub fn resync_interval(&self) -> Duration {
        self.cfg.resync_interval.as_duration()
    }

    /// Re-reads the manifests folder. A broken file keeps the last good desired state.
    pub fn load_manifests(&mut self) {
        let Some(dir) = self.cfg.manifests_dir.clone() else {
            return;
        };
        match manifests::read_dir(&dir) {
            Ok(workloads) => {
                if self.manifest_error.take().is_some() {
                    info!(dir = %dir.display(), "manifests are readable again");
                }
                self.set_desired(workloads);
            }
            Err(e) => {
                if self.manifest_error.as_deref() != Some(e.as_str()) {
                    error!("manifests not applied, keeping the last good state: {e}");
                }
                self.manifest_error = Some(e);
            }
        }
    }

    /// Takes a new set of static workloads; bumps and persists their generation on change.
    fn set_desired(&mut self, workloads: Vec<WorkloadSpec>) {
        if workloads == self.static_desired.workloads {
            return;
        }
        self.static_desired.workloads = workloads;
        self.static_desired.generation += 1;
        self.static_desired.device = self.cfg.device.clone();
        info!(
            generation = self.static_desired.generation,
            workloads = self.static_desired.workloads.len(),
            "new static manifests"
        );
        if let Err(e) = state::save_desired(&self.paths, &self.static_desired) {
            error!(
                "cannot persist the manifests' desired state (it still applies until restart): {e}"
            );
        }
        self.merge();
    }

    /// Takes a verified desired state from the hub; `payload` is its signed form, kept so
    /// that it can be verified again after a restart.
    pub fn set_hub_desired(&mut self, desired: DesiredState, payload: &[u8]) {
        info!(
            generation = desired.generation,
            workloads = desired.workloads.len(),
            "new desired state from the hub"
        );
        if let Err(e) = crate::fsutil::write_atomic(&self.paths.hub_desired(), payload) {
            error!("cannot persist the hub's desired state (it still applies until restart): {e}");
        }
        self.hub_desired = Some(desired);
        self.merge();
    }

    /// Loads the hub's last desired state, verifying it again against the pinned key: a
    /// file that does not verify (changed key, tampering) is ignored, loudly.
    fn load_hub_desired(&mut self) {
        let Some(hub) = &self.cfg.hub else { return };
        let Ok(payload) = std::fs::read(self.paths.hub_desired()) else {
            return;
        };
        let verified = hub
            .verifying_key()
            .map_err(|e| e.to_string())
            .and_then(|key| {
                drover_protocol::auth::verify_desired(&payload, &key, &self.cfg.device, 0)
                    .map_err(|e| e.to_string())
            });
        match verified {
            Ok(d) => {
                info!(
                    generation = d.generation,
                    workloads = d.workloads.len(),
                    "hub's desired state loaded from disk"
                );
                self.hub_desired = Some(d);
            }
            Err(e) => error!("ignoring the stored hub desired state: {e}"),
        }
    }

    /// The generation of the hub's desired state held (0 when none).
    pub fn hub_generation(&self) -> u64 {
        self.hub_desired.as_ref().map_or(0, |d| d.generation)
    }

    /// Recomputes `desired` from the hub's and the static workloads. The hub wins a name
    /// clash; the hidden static workload is reported.
    fn merge(&mut self) {
        let mut workloads = self
            .hub_desired
            .as_ref()
            .map(|d| d.workloads.clone())
            .unwrap_or_default();
        self.conflicts.clear();
        for w in &self.static_desired.workloads {
            if workloads.iter().any(|h| h.name == w.name) {
                self.conflicts.push(format!("workload `{}` is defined by the hub and in the manifests folder: the hub's is used", w.name));
            } else {
                workloads.push(w.clone());
            }
        }
        let generation = self.hub_generation();
        if workloads != self.desired.workloads || generation != self.desired.generation {
            if workloads != self.desired.workloads {
                // Image references (tags) are resolved again for each new desired state.
                self.prepared.clear();
                self.image_states.clear();
            }
            self.desired = DesiredState {
                device: self.cfg.device.clone(),
                generation,
                workloads,
            };
        }
    }

    /// One reconcile pass. Returns when the next pass is due at the latest (unix ms).
    pub fn reconcile(&mut self) -> Option<u64> {
        let mut wake = None;
        for _ in 0..MAX_ROUNDS {
            self.collect_pulls();
            let observed = self.observe();
            let p = plan(&self.desired.workloads, &observed, now_ms());
            wake = p.wake_at_ms;
            if p.actions.is_empty() {
                break;
            }
            for action in p.actions {
                self.apply(action);
            }
        }
        self.collect_pulls();
        let observed = self.observe();
        if let Err(e) = self.report(&observed) {
            warn!("cannot write status: {e}");
        }
        self.trim_images();
        if !self.pulls.running().is_empty() {
            // Refresh the pull progress in the status every second.
            let soon = now_ms() + 1_000;
            wake = Some(wake.map_or(soon, |w: u64| w.min(soon)));
        }
        wake
    }

    /// Takes in finished pulls and the progress of running ones.
    fn collect_pulls(&mut self) {
        for (image, result) in self.pulls.take_finished() {
            let state = match result {
                Ok(p) => {
                    self.prepared.insert(image.clone(), p);
                    ImageState::Ready
                }
                Err(error) => ImageState::Failed {
                    error,
                    at_ms: now_ms(),
                },
            };
            self.image_states.insert(image, state);
        }
        for (image, p) in self.pulls.running() {
            let state = ImageState::Pulling {
                done_bytes: p.done_bytes,
                total_bytes: p.total_bytes,
            };
            self.image_states.insert(image, state);
        }
    }

    /// What one pull needs: registry settings, the hub's registry, the free-disk floor.
    pub(super) fn pull_config(&self) -> crate::image::PullConfig {
        let hub = self.cfg.hub.as_ref().and_then(|h| {
            Some(crate::image::HubRegistry {
                url: h.registry.clone()?,
                username: self.cfg.device.to_string(),
                password: h.credential.clone(),
            })
        });
        crate::image::PullConfig::new(&self.cfg.images, hub)
    }

    pub(super) fn min_free_disk(&self) -> u64 {
        self.cfg.images.min_free_disk.0
    }

    /// Keeps the image store within `images.max_bytes`: once a minute, and right after a
    /// workload was removed or replaced; never while a pull runs. Images of desired or created workloads are never removed.
    fn trim_images(&mut self) {
        let now = now_ms();
        let due = now >= self.last_gc_ms + 60_000 || self.gc_requested;
        if !due || !self.pulls.running().is_empty() {
            return;
        }
        self.last_gc_ms = now;
        self.gc_requested = false;
        let mut in_use: std::collections::BTreeSet<String> = self
            .desired
            .workloads
            .iter()
            .flat_map(|w| &w.containers)
            .filter_map(|c| {
                self.prepared
                    .get(c.image.as_str())
                    .map(|p| p.manifest_digest.clone())
            })
            .collect();
        in_use.extend(
            self.records
                .values()
                .flat_map(|r| r.containers.values())
                .filter_map(|c| c.image_digest.clone()),
        );
        match self.images.gc(&in_use, self.cfg.images.max_bytes.0) {
            Ok(r) if !r.removed_images.is_empty() => info!(
                removed_images = r.removed_images.len(),
                bytes_before = r.bytes_before,
                bytes_after = r.bytes_after,
                "image store trimmed to its budget"
            ),
            Ok(r) if r.over_budget => {
                warn!(
                    bytes = r.bytes_after,
                    budget = self.cfg.images.max_bytes.0,
                    "image store over budget: every image is in use"
                )
            }
            Ok(_) => {}
            Err(e) => warn!("trimming the image store: {e}"),
        }
    }
}

fn lock_state(paths: &StatePaths) -> Result<std::fs::File, DaemonError> {
    let path = paths.lock();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| DaemonError::Io {
            context: format!("opening {}", path.display()),
            source,
        })?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(DaemonError::Locked(paths.root.clone()));
    }
    Ok(file)
}
