//! The per-container shim: the only place libcontainer is driven from.
//!
//! `drover-agent shim run …` is the agent's own binary re-executed, single-threaded, once
//! per container: it detaches (double fork + setsid), creates and starts the container,
//! reports `running <pid>` or `failed <message>` as one line on its original stdout,
//! then supervises the container, copies its output into a rotating log and records the
//! outcome in `status.json`. `drover-agent shim delete …` force-deletes what a dead shim
//! left behind. Nothing here may run inside the agent's (multi-threaded) daemon process.

mod init;
pub mod logs;
mod oom;
pub mod probe;
mod run;
pub mod status;
mod supervise;
mod sys;
mod warn_limit;

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

pub use logs::RotatingLog;

/// File name of the shim's own diagnostics inside a container folder.
pub const SHIM_LOG_FILE: &str = "shim.log";

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: nix::Error,
    },
    #[error("libcontainer: {0}")]
    Container(#[from] libcontainer::error::LibcontainerError),
    #[error("the started container has no init pid")]
    NoPid,
}

impl ShimError {
    fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ShimError {
        move |source| ShimError::Io { what, source }
    }
    fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> ShimError {
        move |source| ShimError::Sys { what, source }
    }
}

/// `drover-agent shim …` (hidden; started by the agent only).
#[derive(Debug, clap::Args)]
pub struct ShimArgs {
    #[command(subcommand)]
    pub command: ShimCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ShimCommand {
    /// Create, start and supervise one container (detaches from the caller).
    Run(RunArgs),
    /// Force-delete a container left behind by a shim that died.
    Delete(DeleteArgs),
}

#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// libcontainer id (`{workload}.{container}`).
    #[arg(long)]
    pub id: String,
    /// Container folder: holds `bundle/`, `status.json`, `shim.log`.
    #[arg(long)]
    pub dir: PathBuf,
    /// libcontainer state root.
    #[arg(long)]
    pub root: PathBuf,
    /// The container's folder on the state disk: gets a durable copy of the final
    /// status, which the agent reads after a reboot emptied `dir` (a tmpfs).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Container stdout/stderr log file.
    #[arg(long)]
    pub log: PathBuf,
    #[arg(long, default_value_t = 1024 * 1024)]
    pub log_max_bytes: u64,
    #[arg(long, default_value_t = 2)]
    pub log_files: u32,
    #[arg(long, default_value_t = 10_000)]
    pub stop_grace_ms: u64,
    /// Unix datagram socket to send `exited {id}` to at the end.
    #[arg(long)]
    pub notify: Option<PathBuf>,
}

impl RunArgs {
    /// The arguments after `drover-agent`, for the agent to spawn the shim with.
    pub fn to_command_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            "shim".into(),
            "run".into(),
            "--id".into(),
            self.id.clone().into(),
        ];
        for (flag, path) in [
            ("--dir", &self.dir),
            ("--root", &self.root),
            ("--log", &self.log),
        ] {
            v.extend([flag.into(), path.into()]);
        }
        v.extend([
            "--log-max-bytes".into(),
            self.log_max_bytes.to_string().into(),
        ]);
        v.extend(["--log-files".into(), self.log_files.to_string().into()]);
        v.extend([
            "--stop-grace-ms".into(),
            self.stop_grace_ms.to_string().into(),
        ]);
        if let Some(d) = &self.data_dir {
            v.extend(["--data-dir".into(), d.into()]);
        }
        if let Some(n) = &self.notify {
            v.extend(["--notify".into(), n.into()]);
        }
        v
    }
}

#[derive(Clone, Debug, clap::Args)]
pub struct DeleteArgs {
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub root: PathBuf,
}

/// Entry point of `drover-agent shim`; returns the process exit code. Must be called
/// before any thread or async runtime is started.
pub fn main(args: ShimArgs) -> i32 {
    match args.command {
        ShimCommand::Run(run) => run_main(run),
        ShimCommand::Delete(del) => delete_main(&del),
    }
}

fn run_main(mut args: RunArgs) -> i32 {
    for p in [&mut args.dir, &mut args.root, &mut args.log]
        .into_iter()
        .chain(args.data_dir.as_mut())
    {
        *p = std::path::absolute(&*p).unwrap_or_else(|_| p.clone());
    }
    let diag = OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.dir.join(SHIM_LOG_FILE));
    let report = match (diag, sys::dup_report_fd()) {
        (Ok(diag), Ok(report)) => {
            init_tracing(diag);
            report
        }
        (Err(e), _) => {
            return early_failure(&format!(
                "opening {SHIM_LOG_FILE} in {}: {e}",
                args.dir.display()
            ));
        }
        (_, Err(e)) => return early_failure(&format!("duplicating stdout: {e}")),
    };
    if let Err(e) = sys::detach() {
        return early_failure(&format!("detaching: {e}"));
    }
    let _ = std::env::set_current_dir("/");
    if let Err(e) = sys::null_stdio() {
        tracing::warn!("pointing stdio at /dev/null failed: {e}");
    }
    run::run(&args, report)
}

/// Before detaching, stdout is still the report pipe.
fn early_failure(msg: &str) -> i32 {
    println!("failed {}", msg.replace('\n', " "));
    1
}

fn init_tracing(diag: std::fs::File) {
    let filter = tracing_subscriber::EnvFilter::new("info,libcontainer=warn,libcgroups=error");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(diag))
        .try_init();
}

fn delete_main(args: &DeleteArgs) -> i32 {
    let Some(dir) = state_folder(&args.root, &args.id) else {
        return 0;
    };
    match delete(&dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("deleting container {} failed: {e}", args.id);
            1
        }
    }
}

/// The libcontainer state folder of container `id` under `root`, if there is one. A
/// container adopted from an older agent has a symlink there to that agent's state root
/// (`state_dir/runtime/{id}`): the link is removed and its target returned, so that
/// deleting the target leaves nothing behind and a new container of the same id can be
/// created (a dangling link, left when the old shim deleted its container, is just removed).
fn state_folder(root: &Path, id: &str) -> Option<PathBuf> {
    let path = root.join(id);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.file_type().is_symlink() {
        return Some(path);
    }
    let target = std::fs::canonicalize(&path).ok().filter(|t| t.is_dir());
    let _ = std::fs::remove_file(&path);
    target
}

fn delete(dir: &Path) -> Result<(), ShimError> {
    match libcontainer::container::Container::load(dir.to_path_buf()) {
        Ok(mut c) => Ok(c.delete(true)?),
        // No readable state: nothing libcontainer can kill; drop the folder.
        Err(_) => std::fs::remove_dir_all(dir).map_err(ShimError::io("removing the state folder")),
    }
}
