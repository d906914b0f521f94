//! The agent's state folder: where everything lives, and the records that let a
//! restarted agent (or one after a power cut) pick up exactly where it was.
//!
//! Every file is written with `fsutil::write_private` (0600, durable) in folders of mode
//! 0700. Nothing here decides anything.
//! The daemon reaches these files only through [`StateStore`] ([`FileStateStore`] here,
//! an in-memory fake for unit tests beside it).

pub mod adopt;
#[cfg(test)]
pub mod memory;
mod store;
pub mod volumes;

pub use store::{FileStateStore, StateStore};
pub use volumes::VolumeUsage;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use drover_protocol::{DesiredState, DeviceStatus, Name, WorkloadSpec};
use serde::{Deserialize, Serialize};

use crate::fsutil::write_private;
use crate::reconcile::StartErrorKind;
use crate::reconcile::rollback::RevisionTrack;

/// The device's revision track per workload (`revisions.json`).
pub type Revisions = BTreeMap<Name, RevisionTrack>;

/// Paths inside the state folder (`root`, on disk) and the runtime folder (`run`, a tmpfs
/// such as `/run/drover`).
///
/// The runtime folder holds what is written again at every container start and needed to
/// start one: bundle `config.json`, the `/etc` files, the shim's `status.json` and
/// `shim.log`, libcontainer's state, and the agent's report for `ps`. A workload filling
/// the state disk through its volume therefore cannot keep any container from starting
/// (issue 10). What must survive a reboot stays on disk: records, desired states, images,
/// volumes, logs, and each container's overlay `upper/`/`work/` (data, so not in RAM).
#[derive(Clone, Debug)]
pub struct StatePaths {
    pub root: PathBuf,
    pub run: PathBuf,
}

impl StatePaths {
    pub fn new(root: impl Into<PathBuf>, run: impl Into<PathBuf>) -> Self {
        StatePaths {
            root: root.into(),
            run: run.into(),
        }
    }

    /// The paths of an agent config (`state_dir`, `run_dir`).
    pub fn of(cfg: &crate::config::AgentConfig) -> Self {
        StatePaths::new(&cfg.state_dir, &cfg.run_dir)
    }

    /// Creates the folders the agent writes into.
    /// Creates the folders of both; an error names the folder that failed.
    pub fn ensure(&self) -> Result<(), (PathBuf, io::Error)> {
        let state = [
            "workloads",
            "containers",
            "logs",
            "volumes",
            "netns",
            "images",
        ];
        // The state folder and its folders: 0700 (signed desired states, records, logs,
        // volumes are the agent's alone; containers reach volumes through root's mounts).
        // The runtime folders too: bundles hold each container's config.json, env values
        // included. Not `run_dir` itself, which may be a folder others share.
        let state = std::iter::once(self.root.clone())
            .chain(state.iter().map(|d| self.root.join(d)))
            .map(|d| (d, "state"));
        let runtime = ["containers", "runtime"]
            .iter()
            .map(|d| (self.run.join(d), "runtime"));
        for (d, kind) in state.chain(runtime) {
            match crate::fsutil::ensure_private_dir(&d) {
                Ok(Some(was)) => {
                    let was = format!("{was:o}");
                    tracing::warn!(folder = %d.display(), was, "tightened the mode of a {kind} folder to 0700");
                }
                Ok(None) => {}
                Err(e) => return Err((d, e)),
            }
        }
        Ok(())
    }

    pub fn desired(&self) -> PathBuf {
        self.root.join("desired.bin")
    }
    pub fn hub_desired(&self) -> PathBuf {
        self.root.join("hub-desired.bin")
    }
    /// The device's own judgement of each workload's newest revision (kept across
    /// reboots: a rollback done offline holds until the hub sends another revision).
    pub fn revisions(&self) -> PathBuf {
        self.root.join("revisions.json")
    }
    /// The agent's report for `ps`: rewritten by every agent, so in the runtime folder.
    pub fn status(&self) -> PathBuf {
        self.run.join("status.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("agent.lock")
    }
    pub fn agent_sock(&self) -> PathBuf {
        self.root.join("agent.sock")
    }
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }
    /// libcontainer's state root.
    pub fn runtime(&self) -> PathBuf {
        self.run.join("runtime")
    }
    /// libcontainer's state root of agents before the runtime folder (migration only).
    pub fn legacy_runtime(&self) -> PathBuf {
        self.root.join("runtime")
    }
    pub fn record(&self, wl: &Name) -> PathBuf {
        self.root.join("workloads").join(format!("{wl}.json"))
    }
    /// Where a record goes while the state disk cannot take it (full): the runtime
    /// folder, so that an agent restart still knows the containers it started.
    pub fn record_fallback(&self, wl: &Name) -> PathBuf {
        self.run.join("workloads").join(format!("{wl}.json"))
    }
    /// The shim's container folder (in the runtime folder): `bundle/config.json`, `etc/`,
    /// `status.json`, `shim.log`.
    pub fn container_dir(&self, wl: &Name, c: &Name) -> PathBuf {
        self.run.join("containers").join(container_id(wl, c))
    }
    /// The container's folder on disk: overlay `upper/`, `work/` and the `bundle/rootfs`
    /// mount point.
    pub fn container_data_dir(&self, wl: &Name, c: &Name) -> PathBuf {
        self.root.join("containers").join(container_id(wl, c))
    }
    pub fn logs_dir(&self, wl: &Name) -> PathBuf {
        self.root.join("logs").join(wl.as_str())
    }
    pub fn log_file(&self, wl: &Name, c: &Name) -> PathBuf {
        self.logs_dir(wl).join(format!("{c}.log"))
    }
    pub fn volumes_root(&self) -> PathBuf {
        self.root.join("volumes")
    }
    pub fn volumes_dir(&self, wl: &Name) -> PathBuf {
        self.volumes_root().join(wl.as_str())
    }
    pub fn netns(&self, wl: &Name) -> PathBuf {
        self.root.join("netns").join(wl.as_str())
    }
}

/// The libcontainer id of a container: `{workload}.{container}`. Names never contain
/// a dot, so the pair can always be told apart.
pub fn container_id(wl: &Name, c: &Name) -> String {
    format!("{wl}.{c}")
}

/// What the agent remembers about a workload it created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadRecord {
    /// The spec it was created from; a different desired spec means replacement.
    pub spec: WorkloadSpec,
    pub created_at_ms: u64,
    pub containers: BTreeMap<Name, ContainerRecord>,
    /// Set once its containers were asked to stop: the workload is being removed (or
    /// replaced) and is deleted when they are down. Kept across agent restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping: Option<StopRecord>,
}

/// When a workload's stop was requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRecord {
    /// Wall clock (Unix ms), for people.
    pub requested_at_ms: u64,
    /// Boot clock (`clock::boot_ms`), for the deadline.
    pub requested_at_boot_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub restarts: u32,
    pub backoff_level: u32,
    /// True once a shim has been started for it: from then on, no shim and no final
    /// status means the container was lost (power cut), not that it never ran.
    pub started: bool,
    /// Set when the last start failed before a shim could report anything.
    pub start_error: Option<StartFailure>,
    pub image_digest: Option<String>,
    /// A restart was asked for (`drover-hub restart`) and its stop requested: the next
    /// start happens as soon as it is down, whatever the restart policy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_requested: bool,
}

/// Why the last start of a container failed, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartFailure {
    /// Wall clock (Unix ms), for people.
    pub at_ms: u64,
    /// Boot clock, for the back-off; absent in records of older agents.
    #[serde(default)]
    pub at_boot_ms: Option<u64>,
    /// Absent in records of older agents: retried with back-off, as they were.
    #[serde(default)]
    pub kind: StartErrorKind,
    pub error: String,
}

/// The agent's last published view, for `drover-agent ps` (and later the hub).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub agent_pid: u32,
    pub status: DeviceStatus,
    /// Set while the manifests folder cannot be read; the last good state is kept.
    pub manifest_error: Option<String>,
    /// Things worth a look that do not stop anything (e.g. a static workload hidden by
    /// a hub workload of the same name).
    pub warnings: Vec<String>,
    /// The link to the hub, when one is configured.
    pub hub: Option<crate::hub_link::LinkStats>,
    /// Each desired workload's labels (not part of the wire status), for `ps -o json`.
    #[serde(default)]
    pub labels: BTreeMap<Name, BTreeMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: corrupt record: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Codec {
        path: PathBuf,
        source: drover_protocol::CodecError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn save_record(paths: &StatePaths, rec: &WorkloadRecord) -> Result<(), StateError> {
    let path = paths.record(&rec.spec.name);
    let bytes = serde_json::to_vec_pretty(rec).map_err(|source| StateError::Corrupt {
        path: path.clone(),
        source,
    })?;
    let fallback = paths.record_fallback(&rec.spec.name);
    match write_private(&path, &bytes) {
        Ok(()) => {
            if fallback != path {
                let _ = fs::remove_file(&fallback);
            }
            Ok(())
        }
        Err(e) => {
            // The state disk is full (or broken): keep the record where an agent
            // restart finds it, and report the failure so the durable write is retried.
            if fallback != path {
                let kept = fallback
                    .parent()
                    .map_or(Ok(()), fs::create_dir_all)
                    .and_then(|()| crate::fsutil::replace_private(&fallback, &bytes));
                if let Err(k) = kept {
                    tracing::warn!(
                        "keeping {} in the runtime folder failed: {k}",
                        path.display()
                    );
                }
            }
            Err(io_err(&path)(e))
        }
    }
}

pub fn delete_record(paths: &StatePaths, wl: &Name) -> Result<(), StateError> {
    let _ = fs::remove_file(paths.record_fallback(wl));
    let path = paths.record(wl);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
        _ => Ok(()),
    }
}

/// Loads every workload record. A corrupt one is reported and skipped, never fatal.
/// A record kept in the runtime folder (its state-disk write failed) is newer than the one
/// on the state disk and wins.
pub fn load_records(paths: &StatePaths) -> (BTreeMap<Name, WorkloadRecord>, Vec<StateError>) {
    let (mut records, mut errors) = (BTreeMap::new(), Vec::new());
    load_records_from(&paths.root.join("workloads"), &mut records, &mut errors);
    if paths.run != paths.root {
        load_records_from(&paths.run.join("workloads"), &mut records, &mut errors);
    }
    (records, errors)
}

fn load_records_from(
    dir: &Path,
    records: &mut BTreeMap<Name, WorkloadRecord>,
    errors: &mut Vec<StateError>,
) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let parsed = fs::read(&path).map_err(io_err(&path)).and_then(|b| {
            serde_json::from_slice::<WorkloadRecord>(&b).map_err(|source| StateError::Corrupt {
                path: path.clone(),
                source,
            })
        });
        match parsed {
            Ok(rec) => {
                records.insert(rec.spec.name.clone(), rec);
            }
            Err(e) => errors.push(e),
        }
    }
}

pub fn save_desired(paths: &StatePaths, desired: &DesiredState) -> Result<(), StateError> {
    let path = paths.desired();
    let bytes = drover_protocol::encode(desired).map_err(|source| StateError::Codec {
        path: path.clone(),
        source,
    })?;
    write_private(&path, &bytes).map_err(io_err(&path))
}

/// The last persisted desired state; `Ok(None)` when there is none yet. A state written
/// by an older agent (older envelope version) is read too.
pub fn load_desired(paths: &StatePaths) -> Result<Option<DesiredState>, StateError> {
    let path = paths.desired();
    match fs::read(&path) {
        Ok(bytes) => drover_protocol::compat::decode_any(&bytes)
            .map(Some)
            .map_err(|source| StateError::Codec { path, source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// The revision tracks by workload; `Ok(empty)` when there are none yet.
pub fn load_revisions(paths: &StatePaths) -> Result<Revisions, StateError> {
    let path = paths.revisions();
    match fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Revisions::new()),
        Err(e) => Err(io_err(&path)(e)),
    }
}

pub fn save_revisions(paths: &StatePaths, tracks: &Revisions) -> Result<(), StateError> {
    let path = paths.revisions();
    let bytes = serde_json::to_vec_pretty(tracks).map_err(|source| StateError::Corrupt {
        path: path.clone(),
        source,
    })?;
    write_private(&path, &bytes).map_err(io_err(&path))
}

pub fn save_report(paths: &StatePaths, report: &AgentReport) -> Result<(), StateError> {
    let path = paths.status();
    let bytes = serde_json::to_vec_pretty(report).map_err(|source| StateError::Corrupt {
        path: path.clone(),
        source,
    })?;
    write_private(&path, &bytes).map_err(io_err(&path))
}

pub fn load_report(paths: &StatePaths) -> Result<AgentReport, StateError> {
    let path = paths.status();
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// `encode(&desired)` by the envelope-version-1 build (commit 34ca3cb): device `pi-1`,
    /// generation 7, workload `web` with container `main` from `hub:sensor:1.0`.
    const V1_DESIRED: &str = "01010470692d3107010377656201046d61696e0e6875623a73656e736f723a312e3001072f62696e2f7368000101410162000001808080200000000000010464617461904e";

    #[test]
    fn a_record_the_state_disk_refuses_is_kept_in_the_runtime_folder_and_wins() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(dir.path().join("state"), dir.path().join("run"));
        paths.ensure().unwrap();
        let name = Name::new("web").unwrap();
        let spec = WorkloadSpec::new(name.clone(), vec![]);
        let record = |created_at_ms| WorkloadRecord {
            spec: spec.clone(),
            created_at_ms,
            containers: BTreeMap::new(),
            stopping: None,
        };
        save_record(&paths, &record(1)).unwrap();
        // The state disk refuses the next write (here: its folder is no folder).
        let workloads = paths.root.join("workloads");
        fs::rename(&workloads, dir.path().join("aside")).unwrap();
        fs::write(&workloads, b"").unwrap();
        let newer = record(2);
        assert!(
            save_record(&paths, &newer).is_err(),
            "the failure is reported"
        );
        assert!(paths.record_fallback(&name).is_file());
        fs::remove_file(&workloads).unwrap();
        fs::rename(dir.path().join("aside"), &workloads).unwrap();
        let (loaded, errors) = load_records(&paths);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(loaded[&name], newer, "the runtime folder's copy is newer");
        // Saved durably again: the fallback copy goes.
        save_record(&paths, &newer).unwrap();
        assert!(!paths.record_fallback(&name).exists());
        delete_record(&paths, &name).unwrap();
        assert!(load_records(&paths).0.is_empty());
    }

    #[test]
    fn a_desired_state_persisted_by_an_older_agent_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(dir.path(), dir.path().join("run"));
        assert_eq!(load_desired(&paths).unwrap(), None);
        let bytes: Vec<u8> = (0..V1_DESIRED.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&V1_DESIRED[i..i + 2], 16).unwrap())
            .collect();
        fs::write(paths.desired(), bytes).unwrap();
        let old = load_desired(&paths).unwrap().unwrap();
        assert_eq!((old.device.as_str(), old.generation), ("pi-1", 7));
        assert_eq!(
            old.workloads[0].containers[0].image.as_str(),
            "hub:sensor:1.0"
        );
        assert!(old.workloads[0].labels.is_empty());
        // Saved again, it is written in the current version and reads back the same.
        save_desired(&paths, &old).unwrap();
        let current = drover_protocol::codec::VERSION;
        assert!(current > 1);
        assert_eq!(u16::from(fs::read(paths.desired()).unwrap()[0]), current);
        assert_eq!(load_desired(&paths).unwrap(), Some(old));
    }
}
