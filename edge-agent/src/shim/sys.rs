//! The shim's process plumbing: detaching from the agent, file descriptors, signals.
//!
//! Everything here assumes a single-threaded process (the shim); it must never be called
//! from the agent's multi-threaded daemon.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{ForkResult, dup2, fork, setsid};

/// Set by the stop handler while signals are not yet routed through the signalfd.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// The signals the supervise loop reads from its signalfd.
const LOOP_SIGNALS: [Signal; 4] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
];

/// Duplicates stdout (the agent's report pipe) to a close-on-exec descriptor.
pub fn dup_report_fd() -> nix::Result<File> {
    let fd = fcntl(1, FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: `fd` was just returned by fcntl and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Forks; the parent exits at once (the agent reaps it), the child starts a new session.
/// Must be called while the process is single-threaded.
pub fn detach() -> nix::Result<()> {
    // SAFETY: the shim is single-threaded here (no runtime, no helper threads yet), so
    // the child may run arbitrary code after fork.
    match unsafe { fork() }? {
        // SAFETY: _exit ends the process at once, skipping atexit handlers shared with the child.
        ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
        ForkResult::Child => setsid().map(drop),
    }
}

fn dev_null() -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open("/dev/null")
}

/// Points fds 0, 1 and 2 at /dev/null.
pub fn null_stdio() -> std::io::Result<()> {
    let null = dev_null()?;
    for fd in 0..=2 {
        dup2(null.as_raw_fd(), fd)?;
    }
    Ok(())
}

/// Points fds 1 and 2 at `fd` (the container's log pipe), for the init to inherit.
pub fn stdout_to(fd: RawFd) -> nix::Result<()> {
    dup2(fd, 1)?;
    dup2(fd, 2).map(drop)
}

/// Points fds 1 and 2 back at /dev/null.
pub fn stdout_to_null() -> std::io::Result<()> {
    let null = dev_null()?;
    stdout_to(null.as_raw_fd())?;
    Ok(())
}

/// The container's stdout/stderr pipe: (read end, non-blocking; write end). Both CLOEXEC.
pub fn log_pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    fcntl(r.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok((r, w))
}

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

extern "C" fn on_hangup(_: libc::c_int) {}

/// Until the container runs, SIGTERM/SIGINT only set a flag and SIGHUP is ignored.
/// Handlers (unlike blocked or ignored signals) are reset by exec, so the container's
/// init does not inherit them; for the same reason SIGPIPE (ignored by the Rust runtime)
/// goes back to its default here and is ignored again by [`route_signals_to_fd`].
pub fn install_early_handlers() -> nix::Result<()> {
    // SAFETY: the handlers only store to an atomic or do nothing (async-signal-safe).
    unsafe {
        nix::sys::signal::signal(Signal::SIGTERM, SigHandler::Handler(on_stop_signal))?;
        nix::sys::signal::signal(Signal::SIGINT, SigHandler::Handler(on_stop_signal))?;
        nix::sys::signal::signal(Signal::SIGHUP, SigHandler::Handler(on_hangup))?;
        nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl)?;
    }
    Ok(())
}

/// Blocks the loop's signals and returns a non-blocking signalfd for them, plus whether
/// a stop was requested before. Call only after the container's init has exec'd.
pub fn route_signals_to_fd() -> nix::Result<(SignalFd, bool)> {
    ignore_sigpipe();
    let mut mask = SigSet::empty();
    for s in LOOP_SIGNALS {
        mask.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    Ok((sfd, STOP_REQUESTED.load(Ordering::SeqCst)))
}

/// Ignores SIGPIPE again (as the Rust runtime does): a closed report pipe is an error, not death.
pub fn ignore_sigpipe() {
    // SAFETY: setting SIGPIPE to ignored is always sound.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}
