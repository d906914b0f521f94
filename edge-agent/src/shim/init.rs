//! `init: true`: a minimal init as the container's PID 1, as `docker run --init` (tini) does.
//!
//! libcontainer hands the last step of the container's init process — replacing itself with
//! the command — to an [`Executor`]. With [`INIT_ANNOTATION`] set in the runtime config,
//! [`DroverExecutor`] forks first: the child execs the command exactly as without `init`;
//! the parent stays PID 1 of the container's PID namespace (already in its rootfs, cgroup
//! and namespaces, with its user, capabilities and seccomp filter). It forwards every
//! signal it receives to the command, reaps every process that ends (orphans are
//! re-parented to PID 1, so none stays a zombie) and exits as soon as the command does,
//! with its exit code, or 128 + N when signal N killed it.
//!
//! No binary is put into the image: PID 1 is the shim's own code, asleep in `sigwait`. It
//! closes what an exec would have closed (every close-on-exec descriptor: libcontainer's
//! channels, the shim's report pipe), so nobody waits on it for an end of file. Forking
//! here is sound because the container's init process is single-threaded (libcontainer
//! clones it).

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use oci_spec::runtime::Spec;

pub use crate::runtime::spec::INIT_ANNOTATION;

/// Signals that only ever come from a fault of the process itself: never blocked (the
/// kernel would kill PID 1 on them anyway) and never forwarded.
const SYNCHRONOUS: [Signal; 7] = [
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
];

/// Terminal job-control signals: received, not forwarded (as tini does).
const NOT_FORWARDED: [Signal; 2] = [Signal::SIGTTIN, Signal::SIGTTOU];

/// libcontainer's executor, plus the `init` option of the runtime config.
#[derive(Clone, Default)]
pub struct DroverExecutor;

impl Executor for DroverExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if !wants_init(spec) {
            return DefaultExecutor {}.exec(spec);
        }
        let forwarded = forwarded_set();
        let mut old = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut old))
            .map_err(|e| ExecutorError::Other(format!("init: blocking signals: {e}")))?;
        // SAFETY: the container's init process is single-threaded (see the module doc).
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
                DefaultExecutor {}.exec(spec)
            }
            Ok(ForkResult::Parent { child }) => {
                close_exec_fds();
                reap_until_exit(child, &forwarded)
            }
            Err(e) => Err(ExecutorError::Other(format!("init: fork: {e}"))),
        }
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Whether the runtime config asks for an init as PID 1.
pub fn wants_init(spec: &Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(INIT_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Every signal but the synchronous ones (SIGKILL and SIGSTOP cannot be blocked anyway).
fn forwarded_set() -> SigSet {
    let mut set = SigSet::all();
    for s in SYNCHRONOUS {
        set.remove(s);
    }
    set
}

/// Closes every descriptor marked close-on-exec, as the exec PID 1 skips would have.
fn close_exec_fds() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (3..4096).collect(),
    };
    for fd in fds.into_iter().filter(|fd| *fd > 2) {
        // SAFETY: F_GETFD and close on a plain descriptor number; EBADF is harmless.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC != 0 {
                libc::close(fd);
            }
        }
    }
}

/// PID 1's whole life: wait for a signal, forward it, reap; exit with the command's status.
fn reap_until_exit(command: Pid, set: &SigSet) -> ! {
    loop {
        if let Ok(sig) = set.wait()
            && sig != Signal::SIGCHLD
            && !NOT_FORWARDED.contains(&sig)
        {
            let _ = kill(command, sig);
        }
        if let Some(code) = reap(command) {
            // SAFETY: `_exit` ends the process without running anything else.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Reaps every ended child; the command's exit code once it has ended.
fn reap(command: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, c)) if pid == command => code = Some(c),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                code = Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) => return code,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            // No child left and the command's status never seen (cannot happen): PID 1
            // must not spin; 255 says "unknown".
            Err(_) => return Some(code.unwrap_or(255)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(annotation: Option<&str>) -> Spec {
        let mut spec = Spec::default();
        if let Some(v) = annotation {
            spec.set_annotations(Some([(INIT_ANNOTATION.to_owned(), v.to_owned())].into()));
        }
        spec
    }

    #[test]
    fn init_is_asked_for_by_the_annotation_only() {
        assert!(wants_init(&spec_with(Some("true"))));
        assert!(!wants_init(&spec_with(Some("false"))));
        assert!(!wants_init(&spec_with(None)));
    }

    #[test]
    fn faults_are_neither_blocked_nor_forwarded_but_stops_are() {
        let set = forwarded_set();
        assert!(set.contains(Signal::SIGTERM));
        assert!(set.contains(Signal::SIGCHLD));
        assert!(set.contains(Signal::SIGUSR1));
        assert!(!set.contains(Signal::SIGSEGV));
    }
}
