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
    pub(super) desired: DesiredState,
    pub(super) manifest_error: Option<String>,
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
        let desired = match state::load_desired(&paths) {
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
            generation = desired.generation,
            workloads = desired.workloads.len(),
            adopted_records = records.len(),
            "agent state loaded"
        );
        let images = ImageStore::open(&paths.images())?;
        let runtime = ShimRuntime::new(paths.runtime());
        Ok(Agent {
            cfg,
            paths,
            runtime,
            images,
            prepared: BTreeMap::new(),
            image_states: BTreeMap::new(),
            records,
            desired,
            manifest_error: None,
            last_report: None,
            _lock: lock,
        })
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

    /// Takes a new set of desired workloads; bumps and persists the generation on change.
    fn set_desired(&mut self, workloads: Vec<WorkloadSpec>) {
        if workloads == self.desired.workloads {
            return;
        }
        self.desired.workloads = workloads;
        self.desired.generation += 1;
        // Image references (tags) are resolved again for each generation.
        self.prepared.clear();
        self.image_states.clear();
        self.desired.device = self.cfg.device.clone();
        info!(
            generation = self.desired.generation,
            workloads = self.desired.workloads.len(),
            "new desired state"
        );
        if let Err(e) = state::save_desired(&self.paths, &self.desired) {
            error!("cannot persist desired state (it still applies until restart): {e}");
        }
    }

    /// One reconcile pass. Returns when the next pass is due at the latest (unix ms).
    pub fn reconcile(&mut self) -> Option<u64> {
        let mut wake = None;
        for _ in 0..MAX_ROUNDS {
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
        let observed = self.observe();
        if let Err(e) = self.report(&observed) {
            warn!("cannot write status: {e}");
        }
        wake
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
