//! A [`Runtime`] for unit tests of the daemon: no processes, the shims' status files kept
//! in memory and changed the way a real shim changes them. Every call is recorded.
//!
//! Containers start running at once (or fail, when scripted); a requested stop either
//! ends the container at once (`StopBehaviour::Exit`, like a process that handles
//! SIGTERM) or leaves it running until the test calls [`FakeRuntime::exit`] or the daemon
//! force-stops it (`StopBehaviour::Hang`, like a process that ignores SIGTERM).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Runtime, RuntimeError, ShimView};
use crate::clock::{Clock, FakeClock};
use crate::shim::RunArgs;
use crate::shim::status::{ProbeStatus, ShimState, ShimStatus};

/// One call the daemon made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeCall {
    Start { id: String },
    RequestStop { id: String },
    ForceStop { id: String },
    Clear { id: String },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopBehaviour {
    /// The container exits (code 143, SIGTERM) as soon as a stop is requested.
    #[default]
    Exit,
    /// The container keeps running through its grace period.
    Hang,
}

#[derive(Clone, Debug)]
struct Container {
    id: String,
    view: ShimView,
}

#[derive(Default)]
struct Inner {
    calls: Vec<RuntimeCall>,
    containers: BTreeMap<PathBuf, Container>,
    next_pid: u32,
    /// Container id → message: its next starts fail with it.
    fail_start: BTreeMap<String, String>,
    /// Container ids whose starts hang: the shim stays `starting` and never reports.
    hang_start: BTreeSet<String>,
    /// Container id → what its probes say from its next start on (default: no probes).
    probes: BTreeMap<String, ProbeStatus>,
    stop: StopBehaviour,
}

/// Clones share the same fake.
#[derive(Clone)]
pub struct FakeRuntime {
    inner: Arc<Mutex<Inner>>,
    clock: FakeClock,
}

impl FakeRuntime {
    pub fn new(clock: FakeClock) -> Self {
        FakeRuntime {
            inner: Arc::default(),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every call so far, in order; the record is emptied.
    pub fn take_calls(&self) -> Vec<RuntimeCall> {
        std::mem::take(&mut self.lock().calls)
    }

    pub fn set_stop_behaviour(&self, b: StopBehaviour) {
        self.lock().stop = b;
    }

    /// Starts of container `id` fail with `message` until [`Self::heal`].
    pub fn fail_starts(&self, id: &str, message: &str) {
        self.lock()
            .fail_start
            .insert(id.to_owned(), message.to_owned());
    }

    pub fn heal(&self, id: &str) {
        let mut inner = self.lock();
        inner.fail_start.remove(id);
        inner.hang_start.remove(id);
    }

    /// Starts of container `id` hang (libcontainer stuck in create) until [`Self::heal`]:
    /// the shim stays alive in `starting` and `start` times out.
    pub fn hang_starts(&self, id: &str) {
        self.lock().hang_start.insert(id.to_owned());
    }

    /// The probes of container `id` say `probes`, now and after each start, as its shim
    /// would write them.
    pub fn set_probes(&self, id: &str, probes: ProbeStatus) {
        let mut inner = self.lock();
        if let Some(c) = inner.containers.values_mut().find(|c| c.id == id) {
            c.view.status.probes = probes.clone();
        }
        inner.probes.insert(id.to_owned(), probes);
    }

    /// Container `id` exits with `code` now, as its shim would record it.
    pub fn exit(&self, id: &str, code: i32) {
        let (wall, boot) = (self.clock.wall_ms(), self.clock.boot_ms());
        let mut inner = self.lock();
        if let Some(c) = inner.containers.values_mut().find(|c| c.id == id) {
            finish(&mut c.view, code, wall, boot);
        }
    }

    /// The shim of `id` and its container vanish without a final status (kill -9 of the
    /// shim, power cut): the status file still says `running`.
    pub fn lose(&self, id: &str) {
        if let Some(c) = self.lock().containers.values_mut().find(|c| c.id == id) {
            c.view.shim_alive = false;
            c.view.init_alive = false;
        }
    }

    /// Ids whose container runs now.
    pub fn running(&self) -> Vec<String> {
        self.lock()
            .containers
            .values()
            .filter(|c| c.view.status.state == ShimState::Running && c.view.init_alive)
            .map(|c| c.id.clone())
            .collect()
    }

    /// The init PID of running container `id`.
    pub fn pid(&self, id: &str) -> Option<u32> {
        self.lock()
            .containers
            .values()
            .find(|c| c.id == id && c.view.init_alive)
            .and_then(|c| c.view.status.pid)
    }
}

/// A shim status in `starting`.
fn starting(pid: u32, wall: u64, boot: u64) -> ShimStatus {
    ShimStatus {
        shim_pid: pid + 100_000,
        shim_start_ticks: 1,
        state: ShimState::Starting,
        pid: Some(pid),
        pid_start_ticks: Some(1),
        started_at_ms: Some(wall),
        finished_at_ms: None,
        started_at_boot_ms: Some(boot),
        finished_at_boot_ms: None,
        exit_code: None,
        signal: None,
        oom_killed: false,
        error: None,
        probes: Default::default(),
    }
}

fn finish(view: &mut ShimView, code: i32, wall: u64, boot: u64) {
    let s = &mut view.status;
    s.state = ShimState::Exited;
    s.exit_code = Some(code);
    s.signal = (code > 128).then_some(code - 128);
    s.finished_at_ms = Some(wall);
    s.finished_at_boot_ms = Some(boot);
    view.shim_alive = false;
    view.init_alive = false;
}

impl Runtime for FakeRuntime {
    fn start(&self, args: &RunArgs) -> Result<u32, RuntimeError> {
        let (wall, boot) = (self.clock.wall_ms(), self.clock.boot_ms());
        let mut inner = self.lock();
        inner.calls.push(RuntimeCall::Start {
            id: args.id.clone(),
        });
        inner.next_pid += 1;
        let pid = 1000 + inner.next_pid;
        let failure = inner.fail_start.get(&args.id).cloned();
        if inner.hang_start.contains(&args.id) {
            let mut view = ShimView {
                status: starting(pid, wall, boot),
                shim_alive: true,
                init_alive: false,
            };
            view.status.pid = None;
            inner.containers.insert(
                args.dir.clone(),
                Container {
                    id: args.id.clone(),
                    view,
                },
            );
            return Err(RuntimeError::StartTimeout {
                id: args.id.clone(),
            });
        }
        let mut status = ShimStatus {
            state: ShimState::Running,
            probes: inner.probes.get(&args.id).cloned().unwrap_or_default(),
            ..starting(pid, wall, boot)
        };
        if let Some(message) = &failure {
            status.state = ShimState::Failed;
            status.pid = None;
            status.error = Some(message.clone());
            status.finished_at_ms = Some(wall);
            status.finished_at_boot_ms = Some(boot);
        }
        let view = ShimView {
            status,
            shim_alive: failure.is_none(),
            init_alive: failure.is_none(),
        };
        inner.containers.insert(
            args.dir.clone(),
            Container {
                id: args.id.clone(),
                view,
            },
        );
        match failure {
            Some(message) => Err(RuntimeError::StartFailed {
                id: args.id.clone(),
                message,
            }),
            None => Ok(pid),
        }
    }

    fn request_stop(&self, dir: &Path) {
        let (wall, boot) = (self.clock.wall_ms(), self.clock.boot_ms());
        let mut inner = self.lock();
        let stop = inner.stop;
        // A container folder is named after the container's id.
        let id = dir
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        inner.calls.push(RuntimeCall::RequestStop { id });
        if let Some(c) = inner.containers.get_mut(dir)
            && stop == StopBehaviour::Exit
            && c.view.shim_alive
        {
            finish(&mut c.view, 143, wall, boot);
        }
    }

    fn inspect(&self, dir: &Path) -> Option<ShimView> {
        self.lock().containers.get(dir).map(|c| c.view.clone())
    }

    fn force_stop(&self, id: &str, dir: &Path) -> Result<(), RuntimeError> {
        let (wall, boot) = (self.clock.wall_ms(), self.clock.boot_ms());
        let mut inner = self.lock();
        inner
            .calls
            .push(RuntimeCall::ForceStop { id: id.to_owned() });
        if let Some(c) = inner.containers.get_mut(dir)
            && c.view.status.state != ShimState::Exited
        {
            finish(&mut c.view, 137, wall, boot);
        }
        Ok(())
    }

    fn clear(&self, id: &str, dir: &Path, _data: &Path) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.calls.push(RuntimeCall::Clear { id: id.to_owned() });
        inner.containers.remove(dir);
        Ok(())
    }
}
