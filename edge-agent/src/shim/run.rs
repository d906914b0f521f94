//! `drover-agent shim run`: one container's whole life, from create to delete.
//!
//! Detaches from the agent, creates and starts the container with libcontainer, reports
//! `running <pid>` / `failed <message>` on the report pipe, supervises until init exits,
//! records the outcome in `status.json` and deletes the container. While it runs, the
//! container's probes rewrite `status.json` (and wake the agent) whenever their verdict
//! changes. It must never be run from a multi-threaded process (libcontainer clones the
//! caller).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use tracing::{info, warn};

use super::init::DroverExecutor;
use super::logs::RotatingLog;
use super::probe::{self, ProbeEngine};
use super::status::{PROBE_KILL_FILE, ShimState, ShimStatus};
use super::supervise::{Exit, Supervisor};
use super::{RunArgs, ShimError, oom, sys};
use crate::fsutil;

/// Runs the shim; returns the process exit code (only the detached child gets here).
pub fn run(args: &RunArgs, mut report: File) -> i32 {
    let mut status = initial_status();
    let spec = oci_spec::runtime::Spec::load(args.dir.join("bundle").join("config.json")).ok();
    if let Some(spec) = &spec {
        status.probes = probe::initial_status(spec);
    }
    let outcome = start(args, &mut status);
    let (mut container, log_rd) = match outcome {
        Ok(ok) => ok,
        Err(e) => {
            warn!(id = %args.id, "container failed to start: {e}");
            sys::ignore_sigpipe();
            status.state = ShimState::Failed;
            status.error = Some(e.to_string());
            status.finished_at_ms = Some(fsutil::now_ms());
            status.finished_at_boot_ms = Some(crate::clock::boot_ms());
            write_status(&status, args);
            let line = e.to_string().replace('\n', " ");
            let _ = writeln!(report, "failed {line}");
            notify(args, "exited");
            return 1;
        }
    };
    let pid = status.pid.unwrap_or_default();
    let _ = writeln!(report, "running {pid}");
    drop(report);
    info!(id = %args.id, pid, "container running");
    let probes = spec.as_ref().and_then(|s| start_probes(args, s));
    let exit = supervise(args, &mut container, log_rd, probes, &mut status);
    finish(args, &mut container, &mut status, exit);
    0
}

fn initial_status() -> ShimStatus {
    let shim_pid = std::process::id();
    ShimStatus {
        shim_pid,
        shim_start_ticks: fsutil::proc_start_ticks(shim_pid).unwrap_or(0),
        state: ShimState::Starting,
        pid: None,
        pid_start_ticks: None,
        started_at_ms: None,
        finished_at_ms: None,
        started_at_boot_ms: None,
        finished_at_boot_ms: None,
        exit_code: None,
        signal: None,
        oom_killed: false,
        error: None,
        probes: Default::default(),
    }
}

/// Writes the status into the container folder; a final one first into the data folder
/// on the state disk too (durable, so that it outlives a reboot that empties the
/// runtime folder). A full disk only loses that copy.
fn write_status(status: &ShimStatus, args: &RunArgs) {
    let finished = matches!(status.state, ShimState::Exited | ShimState::Failed);
    let data = args
        .data_dir
        .as_ref()
        .filter(|d| finished && **d != args.dir);
    for dir in data.into_iter().chain([&args.dir]) {
        if let Err(e) = status.write(dir) {
            warn!("writing the status into {} failed: {e}", dir.display());
        }
    }
}

/// Creates and starts the container with the log pipe as its stdout/stderr.
fn start(
    args: &RunArgs,
    status: &mut ShimStatus,
) -> Result<(Container, std::os::fd::OwnedFd), ShimError> {
    write_status(status, args);
    sys::install_early_handlers().map_err(ShimError::sys("installing signal handlers"))?;
    std::fs::create_dir_all(&args.root).map_err(ShimError::io("creating the libcontainer root"))?;
    remove_stale(&args.root, &args.id);
    let (log_rd, log_wr) = sys::log_pipe().map_err(ShimError::sys("creating the log pipe"))?;
    sys::stdout_to(log_wr.as_raw_fd()).map_err(ShimError::sys("redirecting stdout"))?;
    let created = create_and_start(args);
    let restored = sys::stdout_to_null();
    drop(log_wr);
    let container = created?;
    restored.map_err(ShimError::io("restoring stdout"))?;
    let pid = container.pid().ok_or(ShimError::NoPid)?;
    let pid = u32::try_from(pid.as_raw()).map_err(|_| ShimError::NoPid)?;
    status.state = ShimState::Running;
    status.pid = Some(pid);
    status.pid_start_ticks = fsutil::proc_start_ticks(pid);
    status.started_at_ms = Some(fsutil::now_ms());
    status.started_at_boot_ms = Some(crate::clock::boot_ms());
    write_status(status, args);
    Ok((container, log_rd))
}

fn create_and_start(args: &RunArgs) -> Result<Container, ShimError> {
    let mut container = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.root)?
        .validate_id()?
        .with_executor(DroverExecutor)
        .as_init(args.dir.join("bundle"))
        .with_systemd(false)
        .with_detach(true)
        .build()?;
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(e.into());
    }
    Ok(container)
}

/// Deletes a container left in `root` by a shim that died (power cut); never fails.
fn remove_stale(root: &Path, id: &str) {
    let Some(dir) = super::state_folder(root, id) else {
        return;
    };
    warn!(id, "deleting a stale container");
    let deleted = Container::load(dir.clone()).and_then(|mut c| c.delete(true));
    if let Err(e) = deleted {
        warn!(
            id,
            "deleting the stale container failed: {e}; removing its state folder"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The container's probe engine, in the pod's network when it has its own.
fn start_probes(args: &RunArgs, spec: &oci_spec::runtime::Spec) -> Option<ProbeEngine> {
    let engine = ProbeEngine::new(spec, &args.id, args.root.clone(), std::time::Instant::now())?;
    if let Err(e) = probe::enter_pod_network(spec) {
        warn!(id = %args.id, "joining the pod's network namespace failed: {e}; network probes will fail");
    }
    Some(engine)
}

fn supervise(
    args: &RunArgs,
    container: &mut Container,
    log_rd: std::os::fd::OwnedFd,
    probes: Option<ProbeEngine>,
    status: &mut ShimStatus,
) -> Exit {
    let init = container.pid().unwrap_or(nix::unistd::Pid::from_raw(0));
    let grace = Duration::from_millis(args.stop_grace_ms);
    let (sfd, stop_requested) = match sys::route_signals_to_fd() {
        Ok(v) => v,
        Err(e) => {
            // Cannot supervise: kill the container rather than leave it unwatched.
            warn!("setting up the signalfd failed: {e}; killing the container");
            let _ = container.kill(nix::sys::signal::Signal::SIGKILL, true);
            let code = nix::sys::wait::waitpid(init, None);
            info!("init ended: {code:?}");
            return Exit {
                code: 128 + libc::SIGKILL,
                signal: Some(libc::SIGKILL),
            };
        }
    };
    let log = RotatingLog::open(&args.log, args.log_max_bytes, args.log_files)
        .inspect_err(|e| {
            warn!(
                "opening {} failed: {e}; container output is dropped",
                args.log.display()
            )
        })
        .ok();
    let sup = Supervisor::new(container, init, sfd, log_rd, log, grace);
    let Some(probes) = probes else {
        return sup.run(stop_requested);
    };
    let on_probe = |p: &super::status::ProbeStatus| {
        info!(id = %args.id, health = p.health.as_str(), ready = p.ready, failures = p.failures, "probe verdict changed");
        status.probes = p.clone();
        write_status(status, args);
        notify(args, "probe");
    };
    sup.with_probes(probes, on_probe).run(stop_requested)
}

/// Records the exit, deletes the container, tells the agent.
fn finish(args: &RunArgs, container: &mut Container, status: &mut ShimStatus, exit: Exit) {
    let oom_kills =
        oom::cgroups_path(&args.dir.join("bundle")).and_then(|p| oom::oom_kill_count(&p));
    // As Docker and Kubernetes report it: any OOM kill in the container's cgroup (which
    // lives as long as this instance) — also of a child whose death made PID 1 exit 137.
    status.oom_killed = oom_kills.unwrap_or(0) > 0;
    info!(id = %args.id, code = exit.code, oom_kills, "container exited");
    if let Err(e) = container.delete(true) {
        warn!(id = %args.id, "deleting the container failed: {e}");
        status.error = Some(format!("delete: {e}"));
    }
    status.state = ShimState::Exited;
    status.exit_code = Some(exit.code);
    status.signal = exit.signal;
    status.finished_at_ms = Some(fsutil::now_ms());
    status.finished_at_boot_ms = Some(crate::clock::boot_ms());
    status.probes.ready = false;
    remember_probe_kill(&args.dir, status.probes.killed_by_probe.as_deref());
    write_status(status, args);
    notify(args, "exited");
}

/// Keeps why a probe killed this instance for the agent's status after the restart
/// ([`PROBE_KILL_FILE`]); any other end forgets an earlier one.
fn remember_probe_kill(dir: &Path, reason: Option<&str>) {
    let path = dir.join(PROBE_KILL_FILE);
    let done = match reason {
        Some(r) => fsutil::replace_atomic(&path, r.as_bytes()),
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    if let Err(e) = done {
        warn!("updating {}: {e}", path.display());
    }
}

/// Wakes the agent to look again: `exited {id}`, `probe {id}`.
fn notify(args: &RunArgs, what: &str) {
    let Some(sock) = &args.notify else { return };
    let msg = format!("{what} {}", args.id);
    if let Ok(s) = UnixDatagram::unbound() {
        let _ = s.send_to(msg.as_bytes(), sock);
    }
}
