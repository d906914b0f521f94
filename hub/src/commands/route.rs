//! Routing answers to the request waiting for them: one bounded channel per command id,
//! and the waiting side ([`Pending`]), which puts chunks back in order, renews a
//! `follow` while it is read, and cancels the command on the device when dropped early.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use drover_protocol::Name;
use drover_protocol::command::{CommandKind, CommandResponse, FailureKind};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;

use super::{CHANNEL_CHUNKS, CommandHub};

/// A `follow` is renewed this often while someone reads it (the agent gives up after
/// ten minutes without a renewal).
pub const RENEW_EVERY: Duration = Duration::from_secs(60);

pub(super) struct Route {
    device: Name,
    tx: mpsc::Sender<CommandResponse>,
    /// Why the hub cut the stream, for the reader.
    pub(super) cut: Arc<Mutex<Option<String>>>,
}

impl Route {
    pub(super) fn new(device: Name, tx: mpsc::Sender<CommandResponse>) -> Route {
        Route {
            device,
            tx,
            cut: Arc::default(),
        }
    }
}

#[derive(Default)]
pub(super) struct Routes(Mutex<HashMap<u64, Route>>);

impl Routes {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Route>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(super) fn insert(&self, id: u64, route: Route) {
        self.lock().insert(id, route);
    }

    pub(super) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Hands an answer of `device` to its request; false when none waits for it (or the
    /// id belongs to another device's command). A full channel cuts the stream.
    pub(super) fn deliver(&self, device: &Name, r: CommandResponse) -> bool {
        let mut routes = self.lock();
        let Some(route) = routes.get(&r.id).filter(|rt| &rt.device == device) else {
            return false;
        };
        let id = r.id;
        match route.tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                *route.cut.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                    "the reader fell {CHANNEL_CHUNKS} chunks behind the device: the hub cut the stream rather than buffer without bound"
                ));
                routes.remove(&id);
            }
            Err(TrySendError::Closed(_)) => {
                routes.remove(&id);
            }
        }
        true
    }
}

/// How an answer ended badly.
#[derive(Debug, thiserror::Error)]
pub enum Answer {
    #[error("{device} did not answer within {} s", .after.as_secs())]
    Timeout { device: Name, after: Duration },
    /// The device failed the command, and says what kind of failure it was.
    #[error("{message}")]
    Device { kind: FailureKind, message: String },
    /// The device's presence went offline while the request waited for it.
    #[error("device {device} went offline {} (last seen {last_seen})", while_doing(.follow))]
    Offline {
        device: Name,
        last_seen: String,
        follow: bool,
    },
    #[error("{0}")]
    Cut(String),
    #[error("chunk {got} of the answer came where {expected} was due: a chunk was lost")]
    Lost { expected: u32, got: u32 },
}

fn while_doing(follow: &bool) -> &'static str {
    if *follow {
        "while following"
    } else {
        "before it finished answering"
    }
}

/// A command sent, waiting for its answers.
pub struct Pending {
    hub: Arc<CommandHub>,
    device: Name,
    id: u64,
    rx: mpsc::Receiver<CommandResponse>,
    cut: Arc<Mutex<Option<String>>>,
    next_chunk: u32,
    /// The device sent its last chunk (or the stream failed): nothing to cancel.
    ended: bool,
    renew: Option<Instant>,
}

impl Pending {
    pub(super) fn new(
        hub: Arc<CommandHub>,
        device: Name,
        id: u64,
        rx: mpsc::Receiver<CommandResponse>,
        cut: Arc<Mutex<Option<String>>>,
    ) -> Pending {
        Pending {
            hub,
            device,
            id,
            rx,
            cut,
            next_chunk: 0,
            ended: false,
            renew: None,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Renew the command on the device every [`RENEW_EVERY`] while waiting (`follow`).
    pub fn keep_alive(&mut self) {
        self.renew = Some(Instant::now() + RENEW_EVERY);
    }

    /// The next piece of output: `Ok(None)` once the device sent its last chunk; an error
    /// when the device failed, nothing came for `timeout`, or the stream was cut.
    pub async fn next(&mut self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, Answer> {
        if self.ended {
            return Ok(None);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let wake = [deadline, self.renew].into_iter().flatten().min();
            let got = tokio::select! {
                r = self.rx.recv() => r,
                _ = sleep_until(wake) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let after = timeout.unwrap_or_default();
                        return Err(Answer::Timeout { device: self.device.clone(), after });
                    }
                    self.send_renew();
                    continue;
                }
            };
            let Some(r) = got else {
                self.ended = true;
                let why = self.cut.lock().unwrap_or_else(|e| e.into_inner()).take();
                return Err(Answer::Cut(
                    why.unwrap_or_else(|| "the stream was cut".into()),
                ));
            };
            if r.chunk < self.next_chunk {
                continue; // a QoS 1 duplicate
            }
            if r.chunk > self.next_chunk {
                let expected = self.next_chunk;
                return Err(Answer::Lost {
                    expected,
                    got: r.chunk,
                });
            }
            self.next_chunk += 1;
            if r.end {
                self.ended = true;
                if let Some(message) = r.error {
                    let kind = FailureKind::from_code(&r.data);
                    return Err(Answer::Device { kind, message });
                }
            }
            return Ok(Some(r.data));
        }
    }

    fn send_renew(&mut self) {
        self.renew = Some(Instant::now() + RENEW_EVERY);
        self.spawn_notify(CommandKind::Renew { id: self.id });
    }

    fn spawn_notify(&self, kind: CommandKind) {
        let (hub, device) = (self.hub.clone(), self.device.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = hub.notify(&device, kind).await {
                    tracing::debug!(device = %device, "cannot notify the device: {e}");
                }
            });
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.hub.forget(self.id);
        if !self.ended {
            self.spawn_notify(CommandKind::Cancel { id: self.id });
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
