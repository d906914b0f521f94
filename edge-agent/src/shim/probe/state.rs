//! The probes' state machine: when each probe runs, and what its results mean — pure,
//! on a clock of milliseconds since the container started, so it is tested on a fake one.
//!
//! Kubernetes' semantics: a probe runs first `initialDelaySeconds` after the start, then
//! every `periodSeconds`; a run longer than `timeoutSeconds` is a failure; a result
//! changes the probe's verdict only after `successThreshold` / `failureThreshold`
//! consecutive equal results. Before its first verdict liveness counts as passing and
//! readiness as failing. A startup probe holds liveness and readiness off until it has
//! succeeded once, then never runs again. Liveness or startup reaching its failure
//! threshold asks for the container to be killed. It never does IO.

use drover_protocol::{Health, Probe};

use crate::runtime::spec::ContainerProbes;
use crate::shim::status::{MAX_PROBE_MESSAGE, ProbeStatus};

/// Milliseconds since the container started.
pub type Ms = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Startup => "startup",
            Kind::Liveness => "liveness",
            Kind::Readiness => "readiness",
        }
    }
}

/// What one run of a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Why it failed (`HTTP 500`, `connection refused`, `timed out after 1s`).
    Failure(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Unknown,
    Success,
    Failure,
}

#[derive(Clone, Debug)]
struct Timer {
    kind: Kind,
    probe: Probe,
    next_due: Ms,
    /// Set while a run is in flight: when it started.
    running_since: Option<Ms>,
    verdict: Verdict,
    /// Consecutive equal results, and which.
    run: u32,
    last: Option<bool>,
    failures: u32,
    /// The verdict was set by reaching a threshold (not the initial one).
    settled: bool,
}

impl Timer {
    fn new(kind: Kind, probe: &Probe) -> Timer {
        let verdict = match kind {
            Kind::Liveness => Verdict::Success,
            Kind::Readiness => Verdict::Failure,
            Kind::Startup => Verdict::Unknown,
        };
        Timer {
            kind,
            probe: probe.clone(),
            next_due: secs(probe.initial_delay_s),
            running_since: None,
            verdict,
            run: 0,
            last: None,
            failures: 0,
            settled: false,
        }
    }

    fn period(&self) -> Ms {
        secs(self.probe.period_s.max(1))
    }

    fn timeout(&self) -> Ms {
        secs(self.probe.timeout_s.max(1))
    }

    /// Records one result; true when the verdict became Failure just now.
    fn record(&mut self, ok: bool) -> bool {
        self.run = if self.last == Some(ok) {
            self.run + 1
        } else {
            1
        };
        self.last = Some(ok);
        self.failures = if ok { 0 } else { self.failures + 1 };
        let threshold = if ok {
            self.probe.success_threshold
        } else {
            self.probe.failure_threshold
        };
        if self.run < threshold.max(1) {
            return false;
        }
        let before = self.verdict;
        self.settled = true;
        self.verdict = if ok {
            Verdict::Success
        } else {
            Verdict::Failure
        };
        !ok && before != Verdict::Failure
    }
}

fn secs(s: u32) -> Ms {
    u64::from(s) * 1000
}

/// Why the container must be killed: `liveness probe failed 3 times: HTTP 500`.
pub type KillReason = String;

/// The probes of one container.
#[derive(Clone, Debug)]
pub struct ProbeMachine {
    timers: Vec<Timer>,
    startup_done: bool,
    message: Option<String>,
    killed: Option<KillReason>,
}

impl ProbeMachine {
    /// `None` when the container has no probe.
    pub fn new(probes: &ContainerProbes) -> Option<ProbeMachine> {
        let timers: Vec<Timer> = [
            (Kind::Startup, &probes.startup),
            (Kind::Liveness, &probes.liveness),
            (Kind::Readiness, &probes.readiness),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.as_ref().map(|p| Timer::new(k, p)))
        .collect();
        let startup_done = probes.startup.is_none();
        (!timers.is_empty()).then_some(ProbeMachine {
            timers,
            startup_done,
            message: None,
            killed: None,
        })
    }

    pub fn probe(&self, kind: Kind) -> Option<&Probe> {
        self.timer(kind).map(|t| &t.probe)
    }

    fn timer(&self, kind: Kind) -> Option<&Timer> {
        self.timers.iter().find(|t| t.kind == kind)
    }

    fn timer_mut(&mut self, kind: Kind) -> Option<&mut Timer> {
        self.timers.iter_mut().find(|t| t.kind == kind)
    }

    /// Whether `t` may run at all now (startup gating; nothing after a kill).
    fn active(&self, t: &Timer) -> bool {
        self.killed.is_none()
            && match t.kind {
                Kind::Startup => !self.startup_done,
                _ => self.startup_done,
            }
    }

    /// The probes to start now.
    pub fn due(&self, now: Ms) -> Vec<Kind> {
        self.timers
            .iter()
            .filter(|t| self.active(t) && t.running_since.is_none() && t.next_due <= now)
            .map(|t| t.kind)
            .collect()
    }

    /// The runs in flight whose timeout has passed.
    pub fn overdue(&self, now: Ms) -> Vec<Kind> {
        self.timers
            .iter()
            .filter(|t| t.running_since.is_some_and(|s| s + t.timeout() <= now))
            .map(|t| t.kind)
            .collect()
    }

    /// The next instant something is due (a start or a timeout); `None`: nothing will be.
    pub fn next_wake(&self) -> Option<Ms> {
        self.timers
            .iter()
            .filter(|t| self.active(t))
            .map(|t| match t.running_since {
                Some(s) => s + t.timeout(),
                None => t.next_due,
            })
            .min()
    }

    /// The run of `kind` started at `now`.
    pub fn started(&mut self, kind: Kind, now: Ms) {
        if let Some(t) = self.timer_mut(kind) {
            t.running_since = Some(now);
            t.next_due = now + t.period();
        }
    }

    /// The run of `kind` ended at `now`; `Some` when the container must now be killed.
    pub fn finished(&mut self, kind: Kind, now: Ms, outcome: Outcome) -> Option<KillReason> {
        let startup_done = self.startup_done;
        let t = self.timer_mut(kind)?;
        t.running_since.take()?;
        t.next_due = t.next_due.max(now);
        let ok = outcome == Outcome::Success;
        let failed_now = t.record(ok);
        let failures = t.failures;
        if let Outcome::Failure(why) = &outcome {
            self.message = Some(bounded(&format!("{} probe: {why}", kind.as_str())));
        }
        if kind == Kind::Startup && ok && !startup_done {
            self.startup_done = true;
            for t in self.timers.iter_mut().filter(|t| t.kind != Kind::Startup) {
                t.next_due = t.next_due.max(now);
            }
        }
        let kills = matches!(kind, Kind::Liveness | Kind::Startup);
        if !(kills && failed_now && self.killed.is_none()) {
            return None;
        }
        let why = match outcome {
            Outcome::Failure(why) => why,
            Outcome::Success => String::new(),
        };
        let times = if failures == 1 { "time" } else { "times" };
        let reason = bounded(&format!(
            "{} probe failed {failures} {times}: {why}",
            kind.as_str()
        ));
        self.killed = Some(reason.clone());
        Some(reason)
    }

    /// What the probes say now (`killed_by_probe` once a kill was asked for).
    pub fn status(&self) -> ProbeStatus {
        let verdict = |k| self.timer(k).map(|t| t.verdict);
        let decided = |k| self.timer(k).is_some_and(|t| t.settled);
        let live = verdict(Kind::Liveness);
        let ready_v = verdict(Kind::Readiness);
        let startup_ok = self.startup_done;
        let ready = startup_ok && ready_v.is_none_or(|v| v == Verdict::Success);
        let failing = live == Some(Verdict::Failure)
            || verdict(Kind::Startup) == Some(Verdict::Failure)
            || (ready_v == Some(Verdict::Failure) && decided(Kind::Readiness));
        let any_decided = [Kind::Liveness, Kind::Readiness].into_iter().any(decided);
        let health = if self.killed.is_some() || failing {
            Health::Unhealthy
        } else if !startup_ok || !any_decided {
            Health::Starting
        } else {
            Health::Healthy
        };
        ProbeStatus {
            health,
            ready: ready && self.killed.is_none(),
            failures: self.timers.iter().map(|t| t.failures).max().unwrap_or(0),
            message: self.message.clone(),
            killed_by_probe: self.killed.clone(),
        }
    }
}

/// `s` cut to at most [`MAX_PROBE_MESSAGE`] bytes on a character boundary.
pub fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_PROBE_MESSAGE);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
