//! Commands from the hub (`drover/v1/dev/{device}/cmd`): container logs and restarts.
//!
//! The hub link hands every payload of the topic to the daemon, which passes it here:
//! [`Commands::handle`] verifies it (signed by the pinned hub key, for this device, an id
//! above the last one accepted — see [`replay`]), counts and logs what it refuses, starts
//! log streams as tasks of their own ([`stream`]), and returns what needs the daemon's
//! workloads (a restart). Answers go back on `…/cmd/resp`, chunked ([`pace`]): at most
//! [`MAX_STREAMS`] streams at once, [`pace::RATE_BYTES_PER_S`] for all of them, never more
//! than a command's `max_bytes`.
//!
//! It must never act on a command that did not verify, never panic on a payload, and never
//! block the daemon (log files are read by the stream tasks, a chunk at a time).

pub mod log_read;
pub mod pace;
pub mod replay;
mod stream;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_protocol::Name;
use drover_protocol::command::{
    CommandError, CommandKind, CommandResponse, FailureKind, LogsRequest, verify_command,
};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::hub_link::decide::RateLimit;
use crate::hub_link::{HubConfig, HubConfigError, Responder};
use crate::state::StatePaths;
use pace::Bucket;
use replay::ReplayGuard;
use stream::{Stream, StreamCtl, Streams};

/// Log streams a device serves at once.
pub const MAX_STREAMS: usize = 4;
/// At most one warning per refusal reason per this period.
const WARN_PERIOD: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CommandsError {
    #[error(transparent)]
    Config(#[from] HubConfigError),
    #[error("reading the last command id from {path}: {source}")]
    Replay {
        path: String,
        source: std::io::Error,
    },
}

/// Counters of hub commands, shown in the agent's report (`ps -o json`, `hub.commands`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CommandStats {
    pub accepted: u64,
    /// Refused payloads in total, and by reason: `bad_signature`, `wrong_device`,
    /// `replayed`, `malformed`.
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Log streams running now.
    pub streams: u64,
    /// Restarts asked for (and accepted by the daemon).
    pub restarts: u64,
}

/// The device's workloads and their containers, as the daemon knows them now.
pub type Workloads = BTreeMap<Name, Vec<Name>>;

/// A verified restart command for the daemon to carry out; answer with
/// [`Commands::answer`].
#[derive(Debug, PartialEq, Eq)]
pub struct RestartRequest {
    pub id: u64,
    pub workload: Name,
}

/// The agent's side of hub commands. Lives in the daemon's event loop.
pub struct Commands {
    key: VerifyingKey,
    device: Name,
    guard: ReplayGuard,
    responder: Responder,
    paths: StatePaths,
    streams: Streams,
    bucket: Arc<Mutex<Bucket>>,
    stats: CommandStats,
    warned: RateLimit,
}

impl Commands {
    /// Loads the replay window from the state folder.
    pub fn new(
        hub: &HubConfig,
        paths: &StatePaths,
        responder: Responder,
    ) -> Result<Commands, CommandsError> {
        let path = paths.root.join("command-id");
        let guard = ReplayGuard::load(path.clone()).map_err(|source| CommandsError::Replay {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Commands {
            key: hub.verifying_key()?,
            device: responder.device().clone(),
            guard,
            responder,
            paths: paths.clone(),
            streams: Streams::default(),
            bucket: Arc::new(Mutex::new(Bucket::new(
                pace::RATE_BYTES_PER_S,
                pace::BURST_BYTES,
                Instant::now(),
            ))),
            stats: CommandStats::default(),
            warned: RateLimit::new(WARN_PERIOD),
        })
    }

    /// Verifies one payload of the `cmd` topic and acts on it; returns a restart for the
    /// daemon to carry out. Refusals are counted and logged (rate-limited), never answered.
    pub fn handle(&mut self, payload: &[u8], workloads: &Workloads) -> Option<RestartRequest> {
        let held = self.guard.held();
        let cmd = match verify_command(payload, &self.key, &self.device, held) {
            Ok(c) => c,
            Err(e) => {
                self.refused(&e, held);
                return None;
            }
        };
        self.guard.accept(cmd.id);
        self.stats.accepted += 1;
        match cmd.kind {
            CommandKind::Logs(req) => self.start_logs(cmd.id, req, workloads),
            CommandKind::Restart { workload } if !workloads.contains_key(&workload) => {
                self.fail(cmd.id, no_workload(&self.device, &workload, workloads));
            }
            CommandKind::Restart { workload } => {
                info!(device = %self.device, id = cmd.id, workload = %workload, "restart asked for by the hub");
                return Some(RestartRequest {
                    id: cmd.id,
                    workload,
                });
            }
            CommandKind::Cancel { id } => self.streams.with(id, StreamCtl::cancel),
            CommandKind::Renew { id } => self.streams.with(id, StreamCtl::renew),
        }
        None
    }

    /// Answers command `id` in one final chunk: `Ok(text)` or `Err(why)`.
    pub fn answer(&mut self, id: u64, result: Result<String, String>) {
        if result.is_ok() {
            self.stats.restarts += 1;
        }
        let r = match result {
            Ok(text) => final_chunk(id, 0, text.into_bytes(), None),
            Err(e) => CommandResponse::failed(id, 0, FailureKind::Failed, &e),
        };
        if let Err(e) = self.responder.try_send(&r) {
            warn!(device = %self.device, id, "cannot answer the hub: {e}");
        }
    }

    /// A copy of the counters.
    pub fn stats(&self) -> CommandStats {
        let mut s = self.stats.clone();
        s.streams = self.streams.len() as u64;
        s
    }

    fn refused(&mut self, e: &CommandError, held: u64) {
        let reason = e.reason();
        self.stats.rejected += 1;
        *self
            .stats
            .rejected_by_reason
            .entry(reason.to_owned())
            .or_default() += 1;
        if let Some(suppressed) = self.warned.allow(reason, Instant::now()) {
            warn!(device = %self.device, reason, held, suppressed, "refused a hub command: {e}");
        }
    }

    fn start_logs(&mut self, id: u64, req: LogsRequest, workloads: &Workloads) {
        let container = match pick_container(&self.device, &req, workloads) {
            Ok(c) => c,
            Err(e) => return self.fail(id, e),
        };
        if self.streams.len() >= MAX_STREAMS {
            let message = format!(
                "{} already sends {MAX_STREAMS} log streams, the most it serves at once: stop one (Ctrl-C) and try again",
                self.device
            );
            return self.fail(id, Failure::new(FailureKind::Busy, message));
        }
        let file = self.paths.log_file(&req.workload, &container);
        info!(device = %self.device, id, workload = %req.workload, container = %container,
            follow = req.follow, tail = ?req.tail, since_s = ?req.since_s, "sending logs to the hub");
        let ctl = self.streams.insert(id);
        let s = Stream {
            id,
            req,
            container,
            file,
            ctl,
            responder: self.responder.clone(),
            bucket: self.bucket.clone(),
            streams: self.streams.clone(),
        };
        tokio::spawn(s.run());
    }

    fn fail(&mut self, id: u64, f: Failure) {
        let r = f.chunk(id, 0);
        if let Err(e) = self.responder.try_send(&r) {
            warn!(device = %self.device, id, "cannot answer the hub: {e}");
        }
    }
}

/// Why a command failed: its kind (for the hub's status code) and what to tell the user.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: String) -> Failure {
        Failure { kind, message }
    }

    /// The final chunk (number `chunk`) of command `id` that says so.
    pub fn chunk(&self, id: u64, chunk: u32) -> CommandResponse {
        CommandResponse::failed(id, chunk, self.kind, &self.message)
    }
}

/// The last chunk of an answer that succeeded, or failed for no particular kind.
pub(crate) fn final_chunk(
    id: u64,
    chunk: u32,
    data: Vec<u8>,
    error: Option<Failure>,
) -> CommandResponse {
    match error {
        Some(f) => f.chunk(id, chunk),
        None => CommandResponse {
            id,
            chunk,
            data,
            end: true,
            error: None,
        },
    }
}

fn no_workload(device: &Name, wl: &Name, workloads: &Workloads) -> Failure {
    let known: Vec<&str> = workloads.keys().map(Name::as_str).collect();
    let runs = if known.is_empty() {
        "nothing".to_owned()
    } else {
        known.join(", ")
    };
    Failure::new(
        FailureKind::NotFound,
        format!("no workload named {wl} on {device} (it runs: {runs})"),
    )
}

/// The container whose log a request means, or why there is none.
pub fn pick_container(
    device: &Name,
    req: &LogsRequest,
    workloads: &Workloads,
) -> Result<Name, Failure> {
    let wl = &req.workload;
    let Some(containers) = workloads.get(wl) else {
        return Err(no_workload(device, wl, workloads));
    };
    let names = || {
        containers
            .iter()
            .map(Name::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (&req.container, containers.as_slice()) {
        (Some(c), _) if containers.contains(c) => Ok(c.clone()),
        (Some(c), _) => Err(Failure::new(
            FailureKind::NotFound,
            format!(
                "workload {wl} on {device} has no container {c} (it has: {})",
                names()
            ),
        )),
        (None, [one]) => Ok(one.clone()),
        (None, _) => Err(Failure::new(
            FailureKind::BadRequest,
            format!(
                "workload {wl} has containers {}: pick one with -c/--container",
                names()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn req(wl: &str, c: Option<&str>) -> LogsRequest {
        LogsRequest {
            workload: n(wl),
            container: c.map(n),
            follow: false,
            tail: None,
            since_s: None,
            max_bytes: 1,
        }
    }

    #[test]
    fn the_container_is_the_only_one_or_the_one_named() {
        let wls: Workloads = [
            (n("web"), vec![n("app")]),
            (n("db"), vec![n("pg"), n("backup")]),
        ]
        .into();
        let dev = n("pi-1");
        assert_eq!(pick_container(&dev, &req("web", None), &wls), Ok(n("app")));
        assert_eq!(
            pick_container(&dev, &req("db", Some("pg")), &wls),
            Ok(n("pg"))
        );
        let e = pick_container(&dev, &req("db", None), &wls).unwrap_err();
        assert_eq!(e.kind, FailureKind::BadRequest);
        assert!(
            e.message.contains("pg, backup") && e.message.contains("-c"),
            "{e:?}"
        );
        let e = pick_container(&dev, &req("db", Some("x")), &wls).unwrap_err();
        assert_eq!(e.kind, FailureKind::NotFound);
        assert!(e.message.contains("no container x"), "{e:?}");
        let e = pick_container(&dev, &req("nope", None), &wls).unwrap_err();
        assert_eq!(e.kind, FailureKind::NotFound);
        assert_eq!(
            e.message,
            "no workload named nope on pi-1 (it runs: db, web)"
        );
    }
}
