//! The seam between the daemon and its state folder: workload records, the two persisted
//! desired states (the manifests folder's and the hub's signed one) and the `ps` report.

use std::collections::BTreeMap;

use drover_protocol::{DesiredState, Name};

use super::{AgentReport, Revisions, StateError, StatePaths, WorkloadRecord};

pub trait StateStore: Send {
    /// Every readable workload record, and the errors of those that are not (skipped).
    fn load_records(&self) -> (BTreeMap<Name, WorkloadRecord>, Vec<StateError>);
    fn save_record(&self, rec: &WorkloadRecord) -> Result<(), StateError>;
    /// Deleting a record that does not exist is fine.
    fn delete_record(&self, wl: &Name) -> Result<(), StateError>;
    /// The manifests folder's last desired state; `Ok(None)` when there is none yet.
    fn load_static_desired(&self) -> Result<Option<DesiredState>, StateError>;
    fn save_static_desired(&self, desired: &DesiredState) -> Result<(), StateError>;
    /// The hub's last desired state as received (signed bytes, verified again by the
    /// caller); `None` when there is none.
    fn load_hub_desired(&self) -> Option<Vec<u8>>;
    fn save_hub_desired(&self, payload: &[u8]) -> Result<(), StateError>;
    fn save_report(&self, report: &AgentReport) -> Result<(), StateError>;
    /// The device's revision tracks (on-device rollback); empty when there are none.
    fn load_revisions(&self) -> Result<Revisions, StateError>;
    fn save_revisions(&self, tracks: &Revisions) -> Result<(), StateError>;
    /// What each named volume holds, largest first (a bounded walk: call it only when
    /// the disk runs low).
    fn volume_usage(&self) -> Vec<super::VolumeUsage>;
}

/// The state folder on disk; every write is atomic (write, fsync, rename, fsync).
#[derive(Clone, Debug)]
pub struct FileStateStore {
    pub paths: StatePaths,
}

impl StateStore for FileStateStore {
    fn load_records(&self) -> (BTreeMap<Name, WorkloadRecord>, Vec<StateError>) {
        super::load_records(&self.paths)
    }

    fn save_record(&self, rec: &WorkloadRecord) -> Result<(), StateError> {
        super::save_record(&self.paths, rec)
    }

    fn delete_record(&self, wl: &Name) -> Result<(), StateError> {
        super::delete_record(&self.paths, wl)
    }

    fn load_static_desired(&self) -> Result<Option<DesiredState>, StateError> {
        super::load_desired(&self.paths)
    }

    fn save_static_desired(&self, desired: &DesiredState) -> Result<(), StateError> {
        super::save_desired(&self.paths, desired)
    }

    fn load_hub_desired(&self) -> Option<Vec<u8>> {
        std::fs::read(self.paths.hub_desired()).ok()
    }

    fn save_hub_desired(&self, payload: &[u8]) -> Result<(), StateError> {
        let path = self.paths.hub_desired();
        crate::fsutil::write_private(&path, payload)
            .map_err(|source| StateError::Io { path, source })
    }

    fn save_report(&self, report: &AgentReport) -> Result<(), StateError> {
        super::save_report(&self.paths, report)
    }

    fn load_revisions(&self) -> Result<Revisions, StateError> {
        super::load_revisions(&self.paths)
    }

    fn save_revisions(&self, tracks: &Revisions) -> Result<(), StateError> {
        super::save_revisions(&self.paths, tracks)
    }

    fn volume_usage(&self) -> Vec<super::VolumeUsage> {
        super::volumes::volume_usage(&self.paths.volumes_root(), super::volumes::MAX_ENTRIES)
    }
}
