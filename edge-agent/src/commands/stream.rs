//! One log stream: the selected part of a container's log, then (with `follow`) what the
//! container writes next, sent to the hub in chunks at the device's pace.
//!
//! A stream ends when its selection is sent (no `follow`), when the hub cancels it, when
//! no renewal came for [`FOLLOW_IDLE`], when the link goes down, or at the command's
//! `max_bytes`; its last chunk says why. Log files are read with plain blocking reads of
//! at most one chunk from the local disk: microseconds, so the task stays on the
//! daemon's runtime rather than holding a blocking thread for minutes.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use drover_protocol::Name;
use drover_protocol::command::{CommandResponse, FailureKind, LogsRequest, MAX_CHUNK_BYTES};
use tokio::sync::Notify;
use tracing::{debug, info};

use super::log_read::Snapshot;
use super::pace::{Bucket, next_chunk_len};
use super::{Failure, final_chunk};
use crate::hub_link::{RespondError, Responder};

/// A `follow` ends when the hub has not renewed it for this long (the hub renews every
/// minute while someone reads).
pub const FOLLOW_IDLE: Duration = Duration::from_secs(600);
/// How often a `follow` looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How long a chunk may wait for room in the MQTT request channel.
const SEND_PATIENCE: Duration = Duration::from_secs(10);
const SEND_RETRY: Duration = Duration::from_millis(50);

/// What the command handler can do to a running stream.
pub struct StreamCtl {
    cancelled: AtomicBool,
    renewed: Mutex<Instant>,
    wake: Notify,
}

impl StreamCtl {
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    pub fn renew(&self) {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.renewed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

/// The running streams by command id. Cheap to clone.
#[derive(Clone, Default)]
pub struct Streams(Arc<Mutex<BTreeMap<u64, Arc<StreamCtl>>>>);

impl Streams {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<StreamCtl>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn insert(&self, id: u64) -> Arc<StreamCtl> {
        let ctl = Arc::new(StreamCtl {
            cancelled: AtomicBool::new(false),
            renewed: Mutex::new(Instant::now()),
            wake: Notify::new(),
        });
        self.lock().insert(id, ctl.clone());
        ctl
    }

    /// Runs `f` on stream `id` if it still runs (a cancel may arrive after the end).
    pub fn with(&self, id: u64, f: impl FnOnce(&StreamCtl)) {
        if let Some(ctl) = self.lock().get(&id).cloned() {
            f(&ctl);
        }
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

pub struct Stream {
    pub id: u64,
    pub req: LogsRequest,
    pub container: Name,
    pub file: PathBuf,
    pub ctl: Arc<StreamCtl>,
    pub responder: Responder,
    pub bucket: Arc<Mutex<Bucket>>,
    pub streams: Streams,
}

/// Chunks sent so far and their bytes.
#[derive(Default)]
struct Sent {
    chunks: u32,
    bytes: u64,
}

impl Stream {
    pub async fn run(self) {
        let mut sent = Sent::default();
        let result = self.pump(&mut sent).await;
        let error = result.err();
        let (id, wl) = (self.id, &self.req.workload);
        let why = error.as_ref().map_or("", |f| f.message.as_str());
        info!(id, workload = %wl, container = %self.container, chunks = sent.chunks,
            bytes = sent.bytes, error = why, "log stream ended");
        if let Err(e) = self
            .publish(final_chunk(id, sent.chunks, Vec::new(), error))
            .await
        {
            debug!(id, "cannot send the end of a log stream: {e}");
        }
        self.streams.remove(id);
    }

    async fn pump(&self, sent: &mut Sent) -> Result<(), Failure> {
        let snap = Snapshot::open(&self.file).map_err(|e| self.read_error(&e))?;
        let max = u64::from(self.req.max_bytes);
        let total = snap.total();
        let mut pos = match self.req.since_s {
            Some(s) => {
                let since_ms = crate::fsutil::now_ms().saturating_sub(s.saturating_mul(1000));
                snap.since_start(since_ms)
            }
            None => 0,
        };
        if let Some(n) = self.req.tail {
            pos = snap.tail_start(n, pos).map_err(|e| self.read_error(&e))?;
        }
        // More than asked for: the newest part.
        pos = pos.max(total.saturating_sub(max));
        let mut buf = vec![0u8; MAX_CHUNK_BYTES];
        while pos < total {
            let len = next_chunk_len(total - pos, 0, MAX_CHUNK_BYTES as u64);
            let n = snap
                .read_at(pos, &mut buf[..len])
                .map_err(|e| self.read_error(&e))?;
            if n == 0 {
                break;
            }
            self.send(&buf[..n], sent).await?;
            pos += n as u64;
        }
        if self.req.follow {
            self.follow(snap, &mut buf, sent).await
        } else {
            Ok(())
        }
    }

    async fn follow(&self, snap: Snapshot, buf: &mut [u8], sent: &mut Sent) -> Result<(), Failure> {
        let max = u64::from(self.req.max_bytes);
        let mut f = snap.follow();
        loop {
            if self.ctl.cancelled.load(Ordering::SeqCst) {
                return Ok(());
            }
            if self.ctl.idle() >= FOLLOW_IDLE {
                return Err(failed(format!(
                    "follow ended: no renewal from the hub for {} s",
                    FOLLOW_IDLE.as_secs()
                )));
            }
            let len = next_chunk_len(MAX_CHUNK_BYTES as u64, sent.bytes, max);
            if len == 0 {
                return Err(failed(format!(
                    "follow ended after {max} bytes, the limit asked for"
                )));
            }
            let n = f.poll(&mut buf[..len]).map_err(|e| self.read_error(&e))?;
            if n == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                    _ = self.ctl.wake.notified() => {}
                }
                continue;
            }
            self.send(&buf[..n], sent).await?;
        }
    }

    /// Sends one chunk of output once the device's bucket allows it.
    async fn send(&self, data: &[u8], sent: &mut Sent) -> Result<(), Failure> {
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(data.len() as u64, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let r = CommandResponse {
            id: self.id,
            chunk: sent.chunks,
            data: data.to_vec(),
            end: false,
            error: None,
        };
        self.publish(r).await.map_err(|e| failed(e.to_string()))?;
        sent.chunks += 1;
        sent.bytes += data.len() as u64;
        Ok(())
    }

    /// Hands a chunk to the MQTT client, waiting a while for room in its channel.
    async fn publish(&self, r: CommandResponse) -> Result<(), RespondError> {
        let give_up = Instant::now() + SEND_PATIENCE;
        loop {
            match self.responder.try_send(&r) {
                Err(RespondError::Busy) if Instant::now() < give_up => {
                    tokio::time::sleep(SEND_RETRY).await;
                }
                other => return other,
            }
        }
    }

    fn read_error(&self, e: &io::Error) -> Failure {
        let (wl, c) = (&self.req.workload, &self.container);
        if e.kind() == io::ErrorKind::NotFound {
            Failure::new(
                FailureKind::NotFound,
                format!("{wl}/{c} has written no output yet"),
            )
        } else {
            failed(format!("reading the log of {wl}/{c}: {e}"))
        }
    }
}

fn failed(message: String) -> Failure {
    Failure::new(FailureKind::Failed, message)
}
