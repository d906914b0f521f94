//! The shim's probe engine: the container's liveness, readiness and startup probes, run
//! from the shim's own poll loop — no thread, no helper process (an exec probe is one
//! short-lived process inside the container). [`state`] decides when each probe runs and
//! what results mean; [`net`] and [`exec`] do one run each; [`ProbeEngine`] ties them to
//! the loop: the fds to poll, the next wake-up, the children it started. It never writes
//! the status file and never stops the container itself: it says when to.

mod exec;
mod net;
pub mod state;
mod tls;

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use drover_protocol::ProbeAction;
use nix::poll::PollFlags;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use tracing::{debug, info};

pub use exec::ExecAs;
use exec::ExecCheck;
use net::{NetCheck, Step};
use state::{Kind, Ms, Outcome, ProbeMachine};

use crate::runtime::spec::ContainerProbes;
use crate::shim::status::ProbeStatus;

enum Check {
    /// Boxed: a TLS connection's buffers make it large.
    Net(Box<NetCheck>),
    Exec(ExecCheck),
}

/// The probes of one running container.
pub struct ProbeEngine {
    machine: ProbeMachine,
    /// When the container started: the machine's clock counts from here.
    epoch: Instant,
    checks: Vec<(Kind, Check)>,
    /// Exec runs killed at their timeout, not reaped yet.
    killed: Vec<Pid>,
    id: String,
    root: PathBuf,
    exec_as: ExecAs,
    reported: ProbeStatus,
    kill: Option<String>,
    halted: bool,
}

impl ProbeEngine {
    /// The engine for container `id` (libcontainer state under `root`) started at
    /// `epoch`; `None` when its runtime config asks for no probe.
    pub fn new(spec: &Spec, id: &str, root: PathBuf, epoch: Instant) -> Option<ProbeEngine> {
        let machine = ProbeMachine::new(&ContainerProbes::of(spec)?)?;
        let reported = machine.status();
        Some(ProbeEngine {
            machine,
            epoch,
            checks: Vec::new(),
            killed: Vec::new(),
            id: id.to_owned(),
            root,
            exec_as: ExecAs::of(spec),
            reported,
            kill: None,
            halted: false,
        })
    }

    /// What the probes say before any has run.
    pub fn initial_status(&self) -> ProbeStatus {
        self.reported.clone()
    }

    fn ms(&self, now: Instant) -> Ms {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// When the loop must wake at the latest for the probes; `None`: never.
    pub fn next_wake(&self) -> Option<Instant> {
        if self.halted {
            return None;
        }
        self.machine
            .next_wake()
            .map(|ms| self.epoch + Duration::from_millis(ms))
    }

    /// The fds of the runs in flight, with what to poll for; `ready` takes back the
    /// indices (into this list) that were ready.
    pub fn fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        self.checks
            .iter()
            .filter_map(|(_, c)| match c {
                Check::Net(n) => Some((n.fd(), n.interest())),
                Check::Exec(e) => e.fd().map(|fd| (fd, PollFlags::POLLIN)),
            })
            .collect()
    }

    /// Advances the runs whose fds (indices into [`Self::fds`]) were ready.
    pub fn ready(&mut self, ready: &[usize], now: Instant) {
        let with_fd: Vec<usize> = (0..self.checks.len())
            .filter(|&i| match &self.checks[i].1 {
                Check::Net(_) => true,
                Check::Exec(e) => e.fd().is_some(),
            })
            .collect();
        let mut done = Vec::new();
        for &r in ready {
            let Some(&i) = with_fd.get(r) else { continue };
            match &mut self.checks[i].1 {
                Check::Net(n) => {
                    if let Step::Done(outcome) = n.advance() {
                        done.push((i, outcome));
                    }
                }
                Check::Exec(e) => e.read_output(),
            }
        }
        done.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, outcome) in done {
            let (kind, _) = self.checks.remove(i);
            self.finish(kind, now, outcome);
        }
    }

    /// A child ended: true when it was one of the probes' (then it is dealt with).
    pub fn child_ended(&mut self, status: WaitStatus, now: Instant) -> bool {
        let Some(pid) = status.pid() else {
            return false;
        };
        if let Some(i) = self.killed.iter().position(|p| *p == pid) {
            self.killed.swap_remove(i);
            return true;
        }
        let Some(i) = self
            .checks
            .iter()
            .position(|(_, c)| matches!(c, Check::Exec(e) if e.pid == pid))
        else {
            return false;
        };
        let (kind, check) = self.checks.remove(i);
        if let Check::Exec(mut e) = check {
            let outcome = e.outcome(status);
            self.finish(kind, now, outcome);
        }
        true
    }

    /// Ends the runs past their timeout and starts the runs due.
    pub fn tick(&mut self, now: Instant) {
        if self.halted {
            return;
        }
        let ms = self.ms(now);
        for kind in self.machine.overdue(ms) {
            if let Some(i) = self.checks.iter().position(|(k, _)| *k == kind)
                && let (_, Check::Exec(e)) = self.checks.remove(i)
            {
                e.kill();
                self.killed.push(e.pid);
            }
            let secs = self.machine.probe(kind).map_or(1, |p| p.timeout_s.max(1));
            self.finish(
                kind,
                now,
                Outcome::Failure(format!("timed out after {secs}s")),
            );
        }
        for kind in self.machine.due(ms) {
            self.machine.started(kind, ms);
            match self.start(kind) {
                Ok(check) => self.checks.push((kind, check)),
                Err(outcome) => self.finish(kind, now, outcome),
            }
        }
    }

    fn start(&self, kind: Kind) -> Result<Check, Outcome> {
        let action = &self.machine.probe(kind).ok_or(Outcome::Success)?.action;
        debug!(probe = kind.as_str(), "probe run");
        match action {
            ProbeAction::Exec { command } => {
                ExecCheck::start(&self.id, &self.root, &self.exec_as, command).map(Check::Exec)
            }
            _ => NetCheck::start(action).map(|n| Check::Net(Box::new(n))),
        }
    }

    fn finish(&mut self, kind: Kind, now: Instant, outcome: Outcome) {
        if let Outcome::Failure(why) = &outcome {
            debug!(probe = kind.as_str(), "probe failed: {why}");
        }
        if let Some(reason) = self.machine.finished(kind, self.ms(now), outcome) {
            info!(probe = kind.as_str(), "{reason}: stopping the container");
            self.kill = Some(reason);
        }
    }

    /// Set once when a liveness or startup probe failed its threshold: why.
    pub fn take_kill(&mut self) -> Option<String> {
        self.kill.take()
    }

    /// The status when it changed since the last call.
    pub fn take_change(&mut self) -> Option<ProbeStatus> {
        let now = self.machine.status();
        (now != self.reported).then(|| {
            self.reported = now.clone();
            now
        })
    }

    /// No more runs (the container is stopping): kills exec runs, drops sockets.
    pub fn halt(&mut self) {
        self.halted = true;
        for (_, c) in self.checks.drain(..) {
            if let Check::Exec(e) = c {
                e.kill();
                self.killed.push(e.pid);
            }
        }
    }
}

/// What the probes of the container `spec` describes say before any has run (the
/// default, `Health::None`, without probes).
pub fn initial_status(spec: &Spec) -> ProbeStatus {
    ContainerProbes::of(spec)
        .and_then(|p| ProbeMachine::new(&p))
        .map(|m| m.status())
        .unwrap_or_default()
}

/// Joins the pod's network namespace when the runtime config names one (`network:
/// none`), so that network probes reach the pod's own ports. Call only after the
/// container was created: before, libcontainer would put the container in the shim's.
pub fn enter_pod_network(spec: &Spec) -> std::io::Result<()> {
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|ns| {
            ns.iter()
                .find(|n| n.typ() == LinuxNamespaceType::Network)
                .and_then(|n| n.path().clone())
        });
    let Some(path) = path else { return Ok(()) };
    let f = std::fs::File::open(&path)?;
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
    Ok(())
}
