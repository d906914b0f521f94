//! The agent: its parts, how it opens, and where desired state comes from.
//!
//! `Agent` composes the ports (runtime, images, state store, host, clock — real ones from
//! [`Agent::open`], fakes in unit tests through [`Agent::with_ports`]) with four small
//! parts: the desired-state sources, the image cache, the workload records and the
//! reporter. A reconcile pass (`pass.rs`) observes, plans and applies through them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drover_protocol::{DesiredState, DeviceStatus, Name, WorkloadSpec};
use tracing::{error, info, warn};

use super::images::ImageCache;
use super::manifests;
use super::report::Reporter;
use crate::clock::{Clock, SystemClock};
use crate::config::AgentConfig;
use crate::host::{Host, LinuxHost};
use crate::image::{ImageError, ImageService, ImageStore, StoreImageService};
use crate::reconcile::sources::{Merged, hold_running, merge};
use crate::runtime::{Runtime, ShimRuntime};
use crate::state::{self, FileStateStore, StatePaths, StateStore, WorkloadRecord};

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

/// Everything through which the agent touches the world.
pub struct Ports {
    pub runtime: Box<dyn Runtime>,
    pub images: Box<dyn ImageService>,
    pub state: Box<dyn StateStore>,
    pub host: Box<dyn Host>,
    pub clock: Arc<dyn Clock>,
}

/// The desired state and where it came from.
#[derive(Debug)]
pub(super) struct Sources {
    /// Workloads from the manifests folder (persisted as `desired.bin`).
    pub static_desired: DesiredState,
    /// The last verified desired state from the hub (persisted signed).
    pub hub_desired: Option<DesiredState>,
    /// The merged workloads as signed or written: the hub's and the static ones.
    pub given: Vec<WorkloadSpec>,
    /// What the agent reconciles towards: `given`, with the fallback revision in place
    /// of one the device rolled back; its generation is the hub's (0 without a hub).
    pub desired: DesiredState,
    /// Static workloads hidden by a hub workload of the same name.
    pub conflicts: Vec<String>,
    pub manifest_error: Option<String>,
    /// The static desired state changed but could not be saved (full disk): retried.
    pub static_unsaved: bool,
    /// The hub's signed desired state that could not be saved: retried.
    pub hub_unsaved: Option<Vec<u8>>,
}

pub struct Agent {
    pub cfg: AgentConfig,
    pub paths: StatePaths,
    pub(super) ports: Ports,
    pub(super) sources: Sources,
    pub(super) images: ImageCache,
    pub(super) records: BTreeMap<Name, WorkloadRecord>,
    /// The device's judgement of each workload's newest revision (`revisions.json`).
    pub(super) revisions: crate::state::Revisions,
    /// `revisions` changed but could not be saved: retried at every pass.
    pub(super) revisions_unsaved: bool,
    /// Records changed in memory whose write failed: written again at every pass.
    pub(super) unsaved: BTreeSet<Name>,
    pub(super) reporter: Reporter,
    /// Held for the agent's lifetime: one agent per state folder.
    _lock: Option<std::fs::File>,
}

impl Agent {
    /// Opens the state folder, takes its lock and loads what a previous agent left.
    pub fn open(cfg: AgentConfig) -> Result<Agent, DaemonError> {
        let paths = StatePaths::of(&cfg);
        paths.ensure().map_err(|(dir, source)| DaemonError::Io {
            context: format!(
                "creating {} (state_dir {}, run_dir {}; both must be writable by the agent)",
                dir.display(),
                paths.root.display(),
                paths.run.display()
            ),
            source,
        })?;
        let lock = lock_state(&paths)?;
        // Before the first observation: else containers whose status is on the state
        // disk (older agent, reboot) would be taken for lost and started a second time.
        crate::state::adopt::link_disk_statuses(&paths).map_err(|source| DaemonError::Io {
            context: format!(
                "linking statuses into runtime folder {}",
                paths.run.display()
            ),
            source,
        })?;
        let store = ImageStore::open(&paths.images())?;
        let pull_cfg = super::images::pull_config(&cfg);
        let ports = Ports {
            runtime: Box::new(ShimRuntime::new(paths.runtime())),
            images: Box::new(StoreImageService::new(store, pull_cfg, paths.agent_sock())),
            state: Box::new(FileStateStore {
                paths: paths.clone(),
            }),
            host: Box::new(LinuxHost),
            clock: Arc::new(SystemClock),
        };
        let mut agent = Agent::with_ports(cfg, ports);
        agent._lock = Some(lock);
        Ok(agent)
    }

    /// An agent on the given ports, with what their state store holds.
    pub fn with_ports(cfg: AgentConfig, ports: Ports) -> Agent {
        let paths = StatePaths::of(&cfg);
        let (records, errors) = ports.state.load_records();
        for e in errors {
            error!("skipping unreadable workload record: {e}");
        }
        let empty = || DesiredState {
            device: cfg.device.clone(),
            generation: 0,
            workloads: vec![],
        };
        let static_desired = ports
            .state
            .load_static_desired()
            .unwrap_or_else(|e| {
                error!("ignoring unreadable desired state: {e}");
                None
            })
            .unwrap_or_else(empty);
        info!(
            device = %cfg.device,
            state_dir = %paths.root.display(),
            generation = static_desired.generation,
            workloads = static_desired.workloads.len(),
            adopted_records = records.len(),
            "agent state loaded"
        );
        let sources = Sources {
            static_desired,
            hub_desired: None,
            given: Vec::new(),
            desired: empty(),
            conflicts: Vec::new(),
            manifest_error: None,
            static_unsaved: false,
            hub_unsaved: None,
        };
        let revisions = ports.state.load_revisions().unwrap_or_else(|e| {
            error!(
                "ignoring unreadable revision tracks (a rollback done offline is judged again): {e}"
            );
            Default::default()
        });
        let mut agent = Agent {
            cfg,
            paths,
            ports,
            sources,
            images: ImageCache::default(),
            records,
            revisions,
            revisions_unsaved: false,
            unsaved: BTreeSet::new(),
            reporter: Reporter::default(),
            _lock: None,
        };
        agent.load_hub_desired();
        agent.merge();
        agent
    }

    pub fn manifests_dir(&self) -> Option<&Path> {
        self.cfg.manifests_dir.as_deref()
    }

    pub fn resync_interval(&self) -> Duration {
        self.cfg.resync_interval.as_duration()
    }

    /// The status the hub link has yet to send, if it changed since the last one.
    pub fn take_status(&mut self) -> Option<DeviceStatus> {
        self.reporter.status_to_publish.take()
    }

    /// The hub link's statistics, shown in the next report.
    pub fn set_link_stats(&mut self, stats: Option<crate::hub_link::LinkStats>) {
        self.reporter.link_stats = stats;
    }

    /// Re-reads the manifests folder. A broken file keeps the last good desired state.
    pub fn load_manifests(&mut self) {
        let Some(dir) = self.cfg.manifests_dir.clone() else {
            return;
        };
        match manifests::read_dir(&dir) {
            Ok(workloads) => {
                if self.sources.manifest_error.take().is_some() {
                    info!(dir = %dir.display(), "manifests are readable again");
                }
                self.set_static_desired(workloads);
            }
            Err(e) => {
                if self.sources.manifest_error.as_deref() != Some(e.as_str()) {
                    error!("manifests not applied, keeping the last good state: {e}");
                }
                self.sources.manifest_error = Some(e);
            }
        }
    }

    /// Takes a new set of static workloads; bumps and persists their generation on change.
    pub fn set_static_desired(&mut self, workloads: Vec<WorkloadSpec>) {
        let s = &mut self.sources.static_desired;
        if workloads == s.workloads {
            return;
        }
        s.workloads = workloads;
        s.generation += 1;
        s.device = self.cfg.device.clone();
        info!(
            generation = s.generation,
            workloads = s.workloads.len(),
            "new static manifests"
        );
        self.sources.static_unsaved = true;
        self.save_unsaved_desired(true);
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
        self.sources.hub_unsaved = Some(payload.to_vec());
        self.save_unsaved_desired(true);
        self.sources.hub_desired = Some(desired);
        self.merge();
    }

    /// Persists the desired states whose last write failed (it applies in memory anyway;
    /// tried again at every pass until it is on disk). Failures are logged when `loud`
    /// (the first try), not at every retry.
    pub(super) fn save_unsaved_desired(&mut self, loud: bool) {
        let s = &mut self.sources;
        if s.static_unsaved {
            match self.ports.state.save_static_desired(&s.static_desired) {
                Ok(()) => s.static_unsaved = false,
                Err(e) if loud => error!(
                    "cannot persist the manifests' desired state (it applies; retried at every pass): {e}"
                ),
                Err(_) => {}
            }
        }
        if let Some(payload) = &s.hub_unsaved {
            match self.ports.state.save_hub_desired(payload) {
                Ok(()) => s.hub_unsaved = None,
                Err(e) if loud => error!(
                    "cannot persist the hub's desired state (it applies; retried at every pass): {e}"
                ),
                Err(_) => {}
            }
        }
    }

    /// Loads the hub's last desired state, verifying it again against the pinned key and
    /// opening it with the device's sealing key (a state stored only signed, before an
    /// upgrade, still loads): a file that does not verify (changed key, tampering) is
    /// ignored, loudly.
    fn load_hub_desired(&mut self) {
        let Some(hub) = &self.cfg.hub else { return };
        let Some(payload) = self.ports.state.load_hub_desired() else {
            return;
        };
        let verified = hub
            .verifying_key()
            .map_err(|e| e.to_string())
            .and_then(|key| {
                let seal = drover_protocol::keys::SealSecret::derive(hub.credential.as_bytes());
                drover_protocol::sealed::open_desired(&payload, &key, &self.cfg.device, 0, &seal)
                    .map_err(|e| e.to_string())
            });
        match verified {
            Ok(d) => {
                info!(
                    generation = d.generation,
                    workloads = d.workloads.len(),
                    "hub's desired state loaded from disk"
                );
                self.sources.hub_desired = Some(d);
            }
            Err(e) => error!("ignoring the stored hub desired state: {e}"),
        }
    }

    /// The generation of the hub's desired state held (0 when none).
    pub fn hub_generation(&self) -> u64 {
        self.sources
            .hub_desired
            .as_ref()
            .map_or(0, |d| d.generation)
    }

    /// Recomputes the desired workloads from the sources and the revision tracks.
    pub(super) fn merge(&mut self) {
        let s = &mut self.sources;
        let Merged {
            workloads,
            conflicts,
        } = merge(s.hub_desired.as_ref(), &s.static_desired.workloads);
        let mut workloads = workloads;
        s.conflicts = conflicts;
        if self.cfg.hub.is_some() && s.hub_desired.is_none() {
            let running = self
                .records
                .values()
                .filter(|r| r.stopping.is_none())
                .map(|r| &r.spec);
            let kept = hold_running(&mut workloads, running);
            if !kept.is_empty() {
                warn!(workloads = ?kept, "no verified desired state from the hub: keeping what runs until it sends one");
                s.conflicts.push(format!(
                    "no verified desired state from the hub yet: keeping {} as they run until it sends one",
                    kept.join(", ")
                ));
            }
        }
        if let Some(w) = cross_source_cycle(&workloads, &s.static_desired.workloads) {
            warn!("{w}");
            s.conflicts.push(w);
        }
        let generation = s.hub_desired.as_ref().map_or(0, |d| d.generation);
        let workloads = {
            s.given = workloads;
            super::revisions::effective_workloads(&s.given, &self.revisions)
        };
        if workloads != s.desired.workloads {
            // Image references (tags) are resolved again for each new desired state.
            self.images.forget_resolutions();
        }
        s.desired = DesiredState {
            device: self.cfg.device.clone(),
            generation,
            workloads,
        };
    }
}

/// A `dependsOn` cycle that only the merge of the hub's workloads and the manifests
/// folder's forms (each side is checked alone where it is written): none of its workloads
/// can start, so say which, and where each comes from.
fn cross_source_cycle(
    merged: &[WorkloadSpec],
    static_workloads: &[WorkloadSpec],
) -> Option<String> {
    let cycle = drover_protocol::manifest::workload_cycle(merged)?;
    let from = |n: &Name| {
        if static_workloads.iter().any(|w| &w.name == n) {
            "manifests folder"
        } else {
            "hub"
        }
    };
    let path: Vec<String> = cycle.iter().map(|n| format!("{n} ({})", from(n))).collect();
    Some(format!(
        "dependsOn forms a cycle between the hub's workloads and the manifests folder's: {}; none of them starts until one side drops its dependsOn",
        path.join(" → ")
    ))
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
    // A previous agent killed a moment ago may still have its lock held for a while by a
    // child it was forking (the descriptor lives until that child's exec): wait briefly
    // before calling the folder taken.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        if std::time::Instant::now() >= deadline {
            return Err(DaemonError::Locked(paths.root.clone()));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// How long a starting agent waits for the state folder's lock before it reports another
/// agent running there.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn the_state_lock_waits_for_a_brief_holder_and_refuses_a_lasting_one() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(dir.path(), dir.path().join("run"));
        let first = lock_state(&paths).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(400));
            drop(first);
        });
        let second = lock_state(&paths).expect("a holder gone within LOCK_WAIT");
        releaser.join().unwrap();
        let t = std::time::Instant::now();
        let err = lock_state(&paths).unwrap_err();
        assert!(matches!(err, DaemonError::Locked(_)), "{err}");
        assert!(t.elapsed() >= LOCK_WAIT);
        drop(second);
    }
}
