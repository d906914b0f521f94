//! `exec` probes: one short-lived process inside the running container (its namespaces,
//! cgroup, user and environment), started with libcontainer's tenant builder from the
//! shim, detached — the shim's loop reaps it like any child. Its stdout and stderr go to
//! one non-blocking pipe of which at most [`MAX_OUTPUT`] bytes are kept for the message.
//! Exit 0 = success. It must never wait for the process: the loop reaps it, or kills it
//! at the probe's timeout.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::state::Outcome;
use crate::shim::status::MAX_PROBE_MESSAGE;

/// Most output bytes kept from one run.
pub const MAX_OUTPUT: usize = MAX_PROBE_MESSAGE;

/// Who the probe runs as: the container process's user (with its supplementary groups,
/// as `docker exec` and kubelet's exec probes do) and working directory.
#[derive(Clone, Debug, Default)]
pub struct ExecAs {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub cwd: Option<String>,
}

impl ExecAs {
    pub fn of(spec: &oci_spec::runtime::Spec) -> ExecAs {
        let Some(p) = spec.process() else {
            return ExecAs::default();
        };
        ExecAs {
            uid: p.user().uid(),
            gid: p.user().gid(),
            additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
            cwd: Some(p.cwd().to_string_lossy().into_owned()),
        }
    }
}

/// libcontainer's default executor, after clearing the signal mask: the shim blocks the
/// signals its loop reads from a signalfd, and a blocked mask survives exec.
#[derive(Clone)]
struct ProbeExecutor;

impl Executor for ProbeExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
            .map_err(|e| ExecutorError::Other(format!("clearing the signal mask: {e}")))?;
        // The shim's loop ignores SIGPIPE, and an ignored signal stays ignored across exec.
        // SAFETY: restoring a default disposition in a single-threaded child is sound.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// One run of an exec probe in flight.
pub struct ExecCheck {
    pub pid: Pid,
    out: Option<OwnedFd>,
    output: Vec<u8>,
}

impl ExecCheck {
    /// Starts `command` in container `id` (libcontainer state under `root`).
    pub fn start(id: &str, root: &Path, who: &ExecAs, command: &[String]) -> Result<Self, Outcome> {
        let fail = |e: &dyn std::fmt::Display| Outcome::Failure(format!("exec: {e}"));
        let (rd, wr) = crate::shim::sys::log_pipe().map_err(|e| fail(&e))?;
        let wr2 = wr.try_clone().map_err(|e| fail(&e))?;
        let pid = ContainerBuilder::new(id.to_owned(), SyscallType::default())
            .with_root_path(root)
            .map_err(|e| fail(&e))?
            .with_executor(ProbeExecutor)
            .with_stdout(wr)
            .with_stderr(wr2)
            .as_tenant()
            .with_detach(true)
            .with_user(Some(who.uid))
            .with_group(Some(who.gid))
            .with_additional_gids(who.additional_gids.clone())
            .with_cwd(who.cwd.as_deref())
            .with_container_args(command.to_vec())
            .build();
        // libcontainer 0.7 leaves a `tenant-notify-*.sock` in the container's state folder
        // at every exec and never removes it: one file per probe run, forever.
        remove_tenant_sockets(&root.join(id));
        let pid = pid.map_err(|e| fail(&e))?;
        Ok(ExecCheck {
            pid,
            out: Some(rd),
            output: Vec::new(),
        })
    }

    /// The output pipe while it is open.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.out.as_ref().map(|f| f.as_fd())
    }

    /// Reads what the pipe holds now; keeps the first [`MAX_OUTPUT`] bytes.
    pub fn read_output(&mut self) {
        let Some(fd) = &self.out else { return };
        let mut buf = [0u8; 1024];
        loop {
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                Ok(0) => {
                    self.out = None;
                    return;
                }
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(self.output.len());
                    self.output.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    self.out = None;
                    return;
                }
            }
        }
    }

    /// The run's outcome from how the process ended.
    pub fn outcome(&mut self, status: WaitStatus) -> Outcome {
        self.read_output();
        let text = String::from_utf8_lossy(&self.output);
        let text = text.trim();
        let why = match status {
            WaitStatus::Exited(_, 0) => return Outcome::Success,
            WaitStatus::Exited(_, code) => format!("exit code {code}"),
            WaitStatus::Signaled(_, sig, _) => format!("killed by {sig}"),
            other => format!("{other:?}"),
        };
        Outcome::Failure(if text.is_empty() {
            why
        } else {
            format!("{why}: {text}")
        })
    }

    /// SIGKILL at the timeout; the loop still reaps it.
    pub fn kill(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
    }
}

/// Deletes the notify sockets libcontainer's tenant builder leaves in `state_dir`.
fn remove_tenant_sockets(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("tenant-notify-") && name.ends_with(".sock") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use oci_spec::runtime::{ProcessBuilder, SpecBuilder, UserBuilder};

    use super::*;

    #[test]
    fn exec_probes_run_as_the_containers_user_with_its_supplementary_groups() {
        let user = UserBuilder::default()
            .uid(1000u32)
            .gid(1000u32)
            .additional_gids(vec![44u32, 20])
            .build()
            .unwrap();
        let process = ProcessBuilder::default()
            .user(user)
            .cwd("/srv")
            .build()
            .unwrap();
        let spec = SpecBuilder::default().process(process).build().unwrap();
        let who = ExecAs::of(&spec);
        assert_eq!((who.uid, who.gid), (1000, 1000));
        assert_eq!(who.additional_gids, vec![44, 20]);
        assert_eq!(who.cwd.as_deref(), Some("/srv"));
    }
}
