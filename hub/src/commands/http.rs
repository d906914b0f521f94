//! The HTTP routes of device commands (under the loopback-only `/v1`):
//! - `GET /v1/devices/{name}/logs/{workload}?container=&follow=&tail=&since=&limit_bytes=`:
//!   the container's output as a streamed `text/plain` body (chunked). Errors before the
//!   first byte are `{"error", "kind"}` answers (see [`ErrorKind`] for kinds and status
//!   codes); an error later ends the body with a line starting [`FAILURE_MARK`] saying
//!   why and breaks the transfer off, so that no client takes it for a complete log.
//! - `POST /v1/devices/{name}/restart/{workload}` → `{"message"}`.
//!
//! Handlers only parse, check that the device is there and online, and wait. While they
//! wait, they look at the device's presence every [`PRESENCE_EVERY`]: a device that goes
//! offline ends the request (a `follow` too) with an error saying so, never a silent hang.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use drover_protocol::Name;
use drover_protocol::command::{CommandKind, FailureKind};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::query::{LogsQuery, QueryError, rejected};
use super::{Answer, CommandHub, CommandsError, Pending};
use crate::api::ApiState;
use crate::controller::ControllerError;

pub use super::query::DEFAULT_LIMIT_BYTES;

/// How long a device has to answer a command at first (and between chunks of a
/// selection that is not followed).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a request waiting for a device checks that it is still online.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(2);
/// Starts the line that ends a failed log body (after a newline): the rest of the line
/// says why. A client that sees it followed by a broken-off transfer knows the reason.
pub const FAILURE_MARK: &str = "\n--- drover-hub: ";

#[derive(Debug, Serialize, Deserialize)]
pub struct RestartAnswer {
    pub message: String,
}

/// What kind of error an answer is, with its status code: `bad_request` 400,
/// `not_found` 404 (device, workload or container), `busy` 429 (the device or the hub
/// serves as much as it can: try later), `failed` 422 (the device failed the command),
/// `offline` 503, `unavailable` 503 (the hub's broker link), `timeout` 504, `broken`
/// 502 (the answer broke off), `internal` 500.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    BadRequest,
    NotFound,
    Busy,
    Failed,
    Offline,
    Unavailable,
    Timeout,
    Broken,
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Failed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Offline | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Broken => StatusCode::BAD_GATEWAY,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// `{"error", "kind"}`: the API's `{"error"}` body with the kind of error beside it.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommandErrorBody {
    pub error: String,
    pub kind: Option<ErrorKind>,
}

/// An answer that says what went wrong.
pub struct HttpError(ErrorKind, String);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = CommandErrorBody {
            error: self.1,
            kind: Some(self.0),
        };
        (self.0.status(), Json(body)).into_response()
    }
}

impl From<QueryError> for HttpError {
    fn from(e: QueryError) -> HttpError {
        HttpError(ErrorKind::BadRequest, e.to_string())
    }
}

impl From<Answer> for HttpError {
    fn from(e: Answer) -> HttpError {
        let kind = match &e {
            Answer::Timeout { .. } => ErrorKind::Timeout,
            Answer::Offline { .. } => ErrorKind::Offline,
            Answer::Device { kind, .. } => match kind {
                FailureKind::BadRequest => ErrorKind::BadRequest,
                FailureKind::NotFound => ErrorKind::NotFound,
                FailureKind::Busy => ErrorKind::Busy,
                FailureKind::Failed => ErrorKind::Failed,
            },
            Answer::Cut(_) | Answer::Lost { .. } => ErrorKind::Broken,
        };
        HttpError(kind, e.to_string())
    }
}

impl From<CommandsError> for HttpError {
    fn from(e: CommandsError) -> HttpError {
        let kind = match &e {
            CommandsError::Busy => ErrorKind::Busy,
            CommandsError::NoBroker | CommandsError::Publish(_) => ErrorKind::Unavailable,
            CommandsError::Ids(_) | CommandsError::Codec(_) => ErrorKind::Internal,
        };
        HttpError(kind, e.to_string())
    }
}

fn device_name(s: &str) -> Result<Name, HttpError> {
    Name::new(s).map_err(|e| HttpError(ErrorKind::BadRequest, format!("device: {e}")))
}

/// The device's presence now: `Ok(None)` when online, `Ok(Some(last_seen_ms))` when not.
async fn presence(st: &ApiState, dev: &Name) -> Result<Option<u64>, HttpError> {
    let d = dev.to_string();
    match crate::api::read(st, move |r| r.device(&d, crate::now_ms())).await {
        Ok(detail) if detail.device.online => Ok(None),
        Ok(detail) => Ok(Some(detail.device.last_seen_ms)),
        Err(ControllerError::NotFound { .. }) => Err(HttpError(
            ErrorKind::NotFound,
            format!("device {dev} is not registered (see `drover-hub get devices`)"),
        )),
        Err(e) => Err(HttpError(ErrorKind::Internal, e.to_string())),
    }
}

/// The device by name, registered and online; otherwise the answer that says why not.
async fn online_device(st: &ApiState, device: &str) -> Result<Name, HttpError> {
    let dev = device_name(device)?;
    match presence(st, &dev).await? {
        None => Ok(dev),
        Some(seen) => Err(HttpError(
            ErrorKind::Offline,
            format!(
                "device {dev} is offline (last seen {}): logs and restarts need its agent connected to the broker",
                last_seen(seen, crate::now_ms())
            ),
        )),
    }
}

/// `never`, `12 s ago`, `5 min ago`, `3 h ago`, `2 days ago`.
pub fn last_seen(at_ms: u64, now_ms: u64) -> String {
    if at_ms == 0 {
        return "never".into();
    }
    let s = now_ms.saturating_sub(at_ms) / 1000;
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        7200..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// `12:03:04 UTC, 5 s ago` (`never` for 0).
pub fn last_seen_at(at_ms: u64, now_ms: u64) -> String {
    if at_ms == 0 {
        return "never".into();
    }
    let day_s = (at_ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC, {}",
        day_s / 3600,
        day_s / 60 % 60,
        day_s % 60,
        last_seen(at_ms, now_ms)
    )
}

/// A request waiting for one device, which it watches while it waits.
#[derive(Clone)]
struct Watch {
    st: ApiState,
    device: Name,
    follow: bool,
}

impl Watch {
    /// The next chunk of `p`: at most `timeout` after the call (none: as long as it
    /// takes), and ended early when the device's presence goes offline.
    async fn next(
        &self,
        p: &mut Pending,
        timeout: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, Answer> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let check = Instant::now() + PRESENCE_EVERY;
            let wake = deadline.map_or(check, |d| d.min(check));
            tokio::select! {
                // Cancel-safe: `Pending::next` changes nothing before a chunk arrives.
                r = p.next(None) => return r,
                _ = tokio::time::sleep_until(wake) => {}
            }
            if let Ok(Some(seen)) = presence(&self.st, &self.device).await {
                return Err(Answer::Offline {
                    device: self.device.clone(),
                    last_seen: last_seen_at(seen, crate::now_ms()),
                    follow: self.follow,
                });
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let after = timeout.unwrap_or_default();
                let device = self.device.clone();
                return Err(Answer::Timeout { device, after });
            }
        }
    }
}

async fn send(hub: &Arc<CommandHub>, dev: &Name, kind: CommandKind) -> Result<Pending, HttpError> {
    Ok(hub.send(dev, kind).await?)
}

pub async fn logs(
    State(st): State<ApiState>,
    Path((device, workload)): Path<(String, String)>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let Query(q) = q.map_err(|r| HttpError::from(rejected(&r)))?;
        start_logs(&st, &device, &workload, q).await
    };
    match run.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn start_logs(
    st: &ApiState,
    device: &str,
    workload: &str,
    q: LogsQuery,
) -> Result<Response, HttpError> {
    let req = q.request(workload)?;
    let follow = req.follow;
    let dev = online_device(st, device).await?;
    let mut pending = send(&st.commands, &dev, CommandKind::Logs(req)).await?;
    if follow {
        pending.keep_alive();
    }
    let watch = Watch {
        st: st.clone(),
        device: dev,
        follow,
    };
    // The device's first answer says whether it can send this log at all.
    let first = watch.next(&mut pending, Some(ANSWER_TIMEOUT)).await?;
    let timeout = (!follow).then_some(ANSWER_TIMEOUT);
    let stream = futures_util::stream::unfold(LogBody::First(pending, first), move |state| {
        state.step(watch.clone(), timeout)
    });
    let body = Body::from_stream(stream);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

pub async fn restart(
    State(st): State<ApiState>,
    Path((device, workload)): Path<(String, String)>,
) -> Response {
    let run = async {
        let workload = Name::new(&workload)
            .map_err(|e| HttpError(ErrorKind::BadRequest, format!("workload: {e}")))?;
        let dev = online_device(&st, &device).await?;
        let mut pending = send(&st.commands, &dev, CommandKind::Restart { workload }).await?;
        let watch = Watch {
            st: st.clone(),
            device: dev,
            follow: false,
        };
        let data = watch.next(&mut pending, Some(ANSWER_TIMEOUT)).await?;
        let message = String::from_utf8_lossy(&data.unwrap_or_default()).into_owned();
        Ok::<_, HttpError>(Json(RestartAnswer { message }).into_response())
    };
    match run.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Where the streamed body of a `logs` answer is.
enum LogBody {
    /// The device's first answer, not sent yet.
    First(Pending, Option<Vec<u8>>),
    Streaming(Pending),
    /// The line saying why was sent; the transfer breaks off next.
    Failing(String),
    Done,
}

type Item = Result<Vec<u8>, std::io::Error>;

/// The failure line is flushed in this pause before the transfer breaks off.
const FLUSH_PAUSE: Duration = Duration::from_millis(50);

impl LogBody {
    async fn step(self, watch: Watch, timeout: Option<Duration>) -> Option<(Item, LogBody)> {
        match self {
            LogBody::First(p, Some(data)) => Some((Ok(data), LogBody::Streaming(p))),
            LogBody::First(p, None) => LogBody::Streaming(p).next(watch, timeout).await,
            LogBody::Streaming(p) => LogBody::Streaming(p).next(watch, timeout).await,
            LogBody::Failing(why) => {
                // Pending once before the error: hyper writes out the line saying why
                // while it waits, instead of dropping it with the broken connection.
                tokio::time::sleep(FLUSH_PAUSE).await;
                Some((Err(std::io::Error::other(why)), LogBody::Done))
            }
            LogBody::Done => None,
        }
    }

    async fn next(self, watch: Watch, timeout: Option<Duration>) -> Option<(Item, LogBody)> {
        let LogBody::Streaming(mut p) = self else {
            return None;
        };
        match watch.next(&mut p, timeout).await {
            Ok(Some(data)) => Some((Ok(data), LogBody::Streaming(p))),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(id = p.id(), device = %watch.device, "log stream failed: {e}");
                let why = match e {
                    Answer::Offline { .. } => e.to_string(),
                    e => format!("the log stream failed: {e}"),
                };
                let line = format!("{FAILURE_MARK}{why}\n");
                Some((Ok(line.into_bytes()), LogBody::Failing(why)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_at_shows_the_clock_time_and_the_age() {
        let at = 1_700_000_000_000 + 43_384_000; // 12:03:04 UTC on 2023-11-15
        let at = at - (1_700_000_000_000 % 86_400_000);
        assert_eq!(last_seen_at(at, at + 5_000), "12:03:04 UTC, 5 s ago");
        assert_eq!(last_seen_at(0, at), "never");
    }

    #[test]
    fn every_kind_has_its_status_and_its_name_on_the_wire() {
        assert_eq!(ErrorKind::NotFound.status(), StatusCode::NOT_FOUND);
        assert_eq!(ErrorKind::Busy.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(ErrorKind::BadRequest.status(), StatusCode::BAD_REQUEST);
        let body = CommandErrorBody {
            error: "x".into(),
            kind: Some(ErrorKind::NotFound),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"x","kind":"not_found"}"#
        );
        let device = HttpError::from(Answer::Device {
            kind: FailureKind::Busy,
            message: "busy".into(),
        });
        assert_eq!(device.0, ErrorKind::Busy);
        let old_agent = HttpError::from(Answer::Device {
            kind: FailureKind::from_code(b""),
            message: "x".into(),
        });
        assert_eq!(old_agent.0.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
