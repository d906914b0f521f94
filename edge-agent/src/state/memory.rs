//! A [`StateStore`] in memory for unit tests: behaves like the folder (records by name,
//! last write wins) and can be told to fail every write, as a full disk would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use drover_protocol::{DesiredState, Name};

use super::{AgentReport, Revisions, StateError, StateStore, WorkloadRecord};

#[derive(Default)]
struct Inner {
    records: BTreeMap<Name, WorkloadRecord>,
    static_desired: Option<DesiredState>,
    hub_desired: Option<Vec<u8>>,
    report: Option<AgentReport>,
    revisions: Revisions,
    reports_written: usize,
    fail_writes: bool,
    volumes: Vec<super::VolumeUsage>,
}

/// Clones share the same store.
#[derive(Clone, Default)]
pub struct MemoryStateStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStateStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every write fails with ENOSPC while set.
    pub fn fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }

    /// What [`StateStore::volume_usage`] reports from now on.
    pub fn set_volume_usage(&self, usage: Vec<super::VolumeUsage>) {
        self.lock().volumes = usage;
    }

    pub fn records(&self) -> BTreeMap<Name, WorkloadRecord> {
        self.lock().records.clone()
    }

    pub fn report(&self) -> Option<AgentReport> {
        self.lock().report.clone()
    }

    /// How many times the report was written.
    pub fn revisions(&self) -> Revisions {
        self.lock().revisions.clone()
    }

    pub fn reports_written(&self) -> usize {
        self.lock().reports_written
    }

    fn write(&self, f: impl FnOnce(&mut Inner)) -> Result<(), StateError> {
        let mut inner = self.lock();
        if inner.fail_writes {
            return Err(StateError::Io {
                path: PathBuf::from("(memory)"),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        f(&mut inner);
        Ok(())
    }
}

impl StateStore for MemoryStateStore {
    fn load_records(&self) -> (BTreeMap<Name, WorkloadRecord>, Vec<StateError>) {
        (self.lock().records.clone(), Vec::new())
    }

    fn save_record(&self, rec: &WorkloadRecord) -> Result<(), StateError> {
        self.write(|i| {
            i.records.insert(rec.spec.name.clone(), rec.clone());
        })
    }

    fn delete_record(&self, wl: &Name) -> Result<(), StateError> {
        self.write(|i| {
            i.records.remove(wl);
        })
    }

    fn load_static_desired(&self) -> Result<Option<DesiredState>, StateError> {
        Ok(self.lock().static_desired.clone())
    }

    fn save_static_desired(&self, desired: &DesiredState) -> Result<(), StateError> {
        self.write(|i| i.static_desired = Some(desired.clone()))
    }

    fn load_hub_desired(&self) -> Option<Vec<u8>> {
        self.lock().hub_desired.clone()
    }

    fn save_hub_desired(&self, payload: &[u8]) -> Result<(), StateError> {
        self.write(|i| i.hub_desired = Some(payload.to_vec()))
    }

    fn save_report(&self, report: &AgentReport) -> Result<(), StateError> {
        self.write(|i| {
            i.report = Some(report.clone());
            i.reports_written += 1;
        })
    }

    fn load_revisions(&self) -> Result<Revisions, StateError> {
        Ok(self.lock().revisions.clone())
    }

    fn save_revisions(&self, tracks: &Revisions) -> Result<(), StateError> {
        self.write(|i| i.revisions = tracks.clone())
    }

    fn volume_usage(&self) -> Vec<super::VolumeUsage> {
        self.lock().volumes.clone()
    }
}
