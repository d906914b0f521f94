//! The shim's main loop: one thread, one `poll()` over a signalfd and the container's
//! log pipe. Reaps children, copies output into the rotating log, and stops the
//! container on SIGTERM/SIGINT (SIGTERM to init, SIGKILL to everything after the grace).
//! It also drives the container's probes (their sockets and pipes are polled here, the
//! next due probe bounds the poll timeout, probe processes are reaped here) and stops the
//! container as a stop does when a liveness or startup probe says so; each change of
//! their verdict goes to the `on_probe` callback. It never deletes the container and
//! never writes the status file itself.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use libcontainer::container::Container;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tracing::{info, warn};

use super::logs::RotatingLog;
use super::probe::ProbeEngine;
use super::status::ProbeStatus;
use super::warn_limit::WarnLimit;

/// How long output is drained after init exited.
const DRAIN: Duration = Duration::from_millis(200);
/// How long a partial line may wait for its newline.
const PARTIAL_FLUSH: Duration = Duration::from_millis(500);
/// At most one warning per this interval about failed container-log writes.
const LOG_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// How the container's init ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, or 128 + signal.
    pub code: i32,
    pub signal: Option<i32>,
}

pub struct Supervisor<'a> {
    container: &'a mut Container,
    init: Pid,
    sfd: SignalFd,
    log_rd: Option<OwnedFd>,
    log: Option<RotatingLog>,
    grace: Duration,
    stop_deadline: Option<Instant>,
    killed_all: bool,
    log_failures: WarnLimit,
    probes: Option<ProbeEngine>,
    on_probe: Box<dyn FnMut(&ProbeStatus) + 'a>,
}

/// What one `poll()` found ready.
#[derive(Default)]
struct Ready {
    signals: bool,
    log: bool,
    /// Indices into `ProbeEngine::fds`.
    probes: Vec<usize>,
}

impl<'a> Supervisor<'a> {
    pub fn new(
        container: &'a mut Container,
        init: Pid,
        sfd: SignalFd,
        log_rd: OwnedFd,
        log: Option<RotatingLog>,
        grace: Duration,
    ) -> Self {
        let log_rd = Some(log_rd);
        Supervisor {
            container,
            init,
            sfd,
            log_rd,
            log,
            grace,
            stop_deadline: None,
            killed_all: false,
            log_failures: WarnLimit::new(LOG_WARN_INTERVAL),
            probes: None,
            on_probe: Box::new(|_| {}),
        }
    }

    /// Runs `probes`, telling `on_probe` each change of their verdict.
    pub fn with_probes(
        mut self,
        probes: ProbeEngine,
        on_probe: impl FnMut(&ProbeStatus) + 'a,
    ) -> Self {
        self.probes = Some(probes);
        self.on_probe = Box::new(on_probe);
        self
    }

    /// Runs until init has exited and output is drained.
    pub fn run(mut self, stop_requested: bool) -> Exit {
        if stop_requested {
            self.begin_stop();
        }
        let mut exit = self.reap();
        while exit.is_none() {
            let ready = self.wait();
            if ready.signals && self.handle_signals() {
                exit = self.reap();
            }
            if ready.log {
                self.read_log();
            } else if !ready.signals {
                self.flush_partial();
            }
            if exit.is_none() {
                self.run_probes(&ready.probes);
            }
            self.check_deadline();
        }
        self.drain();
        exit.unwrap_or(Exit {
            code: 128 + libc::SIGKILL,
            signal: Some(libc::SIGKILL),
        })
    }

    /// Polls the signalfd, the log pipe and the probes' fds; says which are ready.
    fn wait(&self) -> Ready {
        let timeout = self.poll_timeout();
        let mut fds = vec![PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(rd) = &self.log_rd {
            fds.push(PollFd::new(rd.as_fd(), PollFlags::POLLIN));
        }
        let first_probe = fds.len();
        if let Some(p) = &self.probes {
            fds.extend(p.fds().into_iter().map(|(fd, ev)| PollFd::new(fd, ev)));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ready::default(),
            Err(e) => {
                warn!("poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                return Ready {
                    signals: true,
                    ..Ready::default()
                };
            }
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        Ready {
            signals: ready(&fds[0]),
            log: self.log_rd.is_some() && ready(&fds[1]),
            probes: (first_probe..fds.len())
                .filter(|&i| ready(&fds[i]))
                .map(|i| i - first_probe)
                .collect(),
        }
    }

    /// Advances the probes; stops the container when one says so; reports changes.
    fn run_probes(&mut self, ready: &[usize]) {
        let Some(p) = &mut self.probes else { return };
        let now = Instant::now();
        p.ready(ready, now);
        p.tick(now);
        let kill = p.take_kill();
        let change = p.take_change();
        if let Some(st) = change {
            (self.on_probe)(&st);
        }
        if let Some(reason) = kill {
            info!(reason = %reason, "probe failure: stopping the container");
            self.begin_stop();
        }
    }

    fn poll_timeout(&self) -> PollTimeout {
        let mut t = self
            .stop_deadline
            .filter(|_| !self.killed_all)
            .map(|d| d.saturating_duration_since(Instant::now()));
        if self.log.as_ref().is_some_and(RotatingLog::has_partial) {
            t = Some(t.map_or(PARTIAL_FLUSH, |t| t.min(PARTIAL_FLUSH)));
        }
        if let Some(at) = self.probes.as_ref().and_then(ProbeEngine::next_wake) {
            let left = at.saturating_duration_since(Instant::now());
            t = Some(t.map_or(left, |t| t.min(left)));
        }
        match t {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(t.as_millis().max(1)).unwrap_or(PollTimeout::MAX),
        }
    }

    /// Handles pending signals; returns true when a SIGCHLD arrived.
    fn handle_signals(&mut self) -> bool {
        let mut child = false;
        loop {
            match self.sfd.read_signal() {
                Ok(Some(info)) => match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => child = true,
                    Ok(Signal::SIGTERM | Signal::SIGINT) => self.begin_stop(),
                    _ => {}
                },
                Ok(None) => return child,
                Err(e) => {
                    warn!("reading signalfd failed: {e}");
                    return true;
                }
            }
        }
    }

    /// Reaps every exited child; returns init's exit once it is among them.
    fn reap(&mut self) -> Option<Exit> {
        let mut exit = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.init => {
                    exit = Some(Exit { code, signal: None })
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.init => {
                    exit = Some(Exit {
                        code: 128 + sig as i32,
                        signal: Some(sig as i32),
                    })
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return exit,
                Ok(other) => {
                    if let Some(p) = &mut self.probes {
                        p.child_ended(other, Instant::now());
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    warn!("waitpid failed: {e}");
                    return exit;
                }
            }
        }
    }

    fn begin_stop(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        if let Some(p) = &mut self.probes {
            p.halt();
        }
        info!(
            grace_ms = self.grace.as_millis() as u64,
            "stop requested: SIGTERM to init"
        );
        if let Err(e) = kill(self.init, Signal::SIGTERM) {
            warn!("SIGTERM to init failed: {e}");
        }
        self.stop_deadline = Some(Instant::now() + self.grace);
    }

    fn check_deadline(&mut self) {
        let Some(deadline) = self.stop_deadline else {
            return;
        };
        if self.killed_all || Instant::now() < deadline {
            return;
        }
        info!("grace period over: SIGKILL to all processes of the container");
        self.killed_all = true;
        if let Err(e) = self.container.kill(Signal::SIGKILL, true) {
            warn!("killing the container failed: {e}; SIGKILL to init only");
            let _ = kill(self.init, Signal::SIGKILL);
        }
    }

    /// Copies what the pipe holds now into the log; closes the pipe at EOF.
    fn read_log(&mut self) {
        let Some(rd) = self.log_rd.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        loop {
            match nix::unistd::read(rd, &mut buf) {
                Ok(0) => {
                    self.flush_partial();
                    self.log_rd = None;
                    return;
                }
                Ok(n) => {
                    let Some(log) = &mut self.log else { continue };
                    if let Err(e) = log.write(&buf[..n]) {
                        self.log_write_failed(&e);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(e) => {
                    warn!("reading the log pipe failed: {e}");
                    self.log_rd = None;
                    return;
                }
            }
        }
    }

    fn flush_partial(&mut self) {
        let Some(log) = &mut self.log else { return };
        if let Err(e) = log.flush_partial() {
            self.log_write_failed(&e);
        }
    }

    /// Warns about a failed container-log write: the first, then one a minute (a chatty
    /// container on a full disk fails at every line, and `shim.log` is in RAM).
    fn log_write_failed(&mut self, e: &std::io::Error) {
        if let Some(unreported) = self.log_failures.hit(Instant::now()) {
            warn!(
                unreported,
                "writing the container log failed: {e} (told at most once a minute)"
            );
        }
    }

    /// After init exited: copy remaining output until EOF or [`DRAIN`] elapsed.
    fn drain(&mut self) {
        let end = Instant::now() + DRAIN;
        while let Some(rd) = &self.log_rd {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [PollFd::new(rd.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
            if matches!(poll(&mut fds, ms), Ok(0)) {
                break;
            }
            self.read_log();
        }
        self.flush_partial();
        self.log_rd = None;
    }
}
