//! The HTTP routes of device commands (under the loopback-only `/v1`):
//! - `GET /v1/devices/{name}/logs/{workload}?container=&follow=&tail=&since=&limit_bytes=`:
//!   the container's output as a streamed `text/plain` body (chunked). Errors before the
//!   first byte are `{"error"}` answers; an error later ends the body with a line saying
//!   why and breaks the transfer off, so that no client takes it for a complete log.
//! - `POST /v1/devices/{name}/restart/{workload}` → `{"message"}`.
//!
//! Handlers only parse, check that the device is there and online, and wait.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use drover_protocol::Name;
use drover_protocol::command::{CommandKind, LogsRequest};
use drover_protocol::quantity::DurationMs;
use serde::{Deserialize, Serialize};

use super::{Answer, CommandHub, Pending};
use crate::api::ApiState;
use crate::controller::ControllerError;
use crate::views::ErrorBody;

/// How long a device has to answer a command at first (and between chunks of a
/// selection that is not followed).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// Output sent for one `logs` request at most, unless `limit_bytes` says otherwise.
pub const DEFAULT_LIMIT_BYTES: u32 = 8 * 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    pub container: Option<String>,
    #[serde(default)]
    pub follow: bool,
    pub tail: Option<u32>,
    /// A duration like `10m`, `90s`, `2h`.
    pub since: Option<String>,
    pub limit_bytes: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RestartAnswer {
    pub message: String,
}

/// An answer that says what went wrong, `{"error"}` with a status code.
pub struct HttpError(StatusCode, String);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

fn error(code: StatusCode, msg: impl Into<String>) -> HttpError {
    HttpError(code, msg.into())
}

fn name(kind: &str, s: &str) -> Result<Name, HttpError> {
    Name::new(s).map_err(|e| error(StatusCode::BAD_REQUEST, format!("{kind}: {e}")))
}

/// The device by name, registered and online; otherwise the answer that says why not.
async fn online_device(st: &ApiState, device: &str) -> Result<Name, HttpError> {
    let dev = name("device", device)?;
    let d = dev.to_string();
    let detail = crate::api::read(st, move |r| r.device(&d, crate::now_ms())).await;
    match detail {
        Ok(detail) if detail.device.online => Ok(dev),
        Ok(detail) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "device {dev} is offline (last seen {}): logs and restarts need its agent connected to the broker",
                last_seen(detail.device.last_seen_ms, crate::now_ms())
            ),
        )),
        Err(ControllerError::NotFound { .. }) => Err(error(
            StatusCode::NOT_FOUND,
            format!("device {dev} is not registered (see `drover-hub get devices`)"),
        )),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
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

fn answer_error(e: Answer) -> HttpError {
    let code = match &e {
        Answer::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        Answer::Device(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Answer::Cut(_) | Answer::Lost { .. } => StatusCode::BAD_GATEWAY,
    };
    error(code, e.to_string())
}

async fn send(hub: &Arc<CommandHub>, dev: &Name, kind: CommandKind) -> Result<Pending, HttpError> {
    hub.send(dev, kind)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

pub async fn logs(
    State(st): State<ApiState>,
    Path((device, workload)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> Response {
    match start_logs(&st, &device, &workload, q).await {
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
    let req = LogsRequest {
        workload: name("workload", workload)?,
        container: q
            .container
            .as_deref()
            .map(|c| name("container", c))
            .transpose()?,
        follow: q.follow,
        tail: q.tail,
        since_s: match q.since.as_deref() {
            Some(s) => Some(
                DurationMs::from_str(s)
                    .map_err(|e| {
                        error(
                            StatusCode::BAD_REQUEST,
                            format!("since: {e} (like 90s, 10m, 2h)"),
                        )
                    })?
                    .0
                    .div_ceil(1000),
            ),
            None => None,
        },
        max_bytes: q.limit_bytes.unwrap_or(DEFAULT_LIMIT_BYTES),
    };
    let dev = online_device(st, device).await?;
    let mut pending = send(&st.commands, &dev, CommandKind::Logs(req)).await?;
    if q.follow {
        pending.keep_alive();
    }
    // The device's first answer says whether it can send this log at all.
    let first = pending
        .next(Some(ANSWER_TIMEOUT))
        .await
        .map_err(answer_error)?;
    let timeout = (!q.follow).then_some(ANSWER_TIMEOUT);
    let stream = futures_util::stream::unfold(LogBody::First(pending, first), move |state| {
        state.step(timeout)
    });
    let body = Body::from_stream(stream);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

pub async fn restart(
    State(st): State<ApiState>,
    Path((device, workload)): Path<(String, String)>,
) -> Response {
    let run = async {
        let workload = name("workload", &workload)?;
        let dev = online_device(&st, &device).await?;
        let mut pending = send(&st.commands, &dev, CommandKind::Restart { workload }).await?;
        let data = pending
            .next(Some(ANSWER_TIMEOUT))
            .await
            .map_err(answer_error)?;
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

impl LogBody {
    async fn step(self, timeout: Option<Duration>) -> Option<(Item, LogBody)> {
        match self {
            LogBody::First(p, Some(data)) => Some((Ok(data), LogBody::Streaming(p))),
            LogBody::First(p, None) => LogBody::Streaming(p).next(timeout).await,
            LogBody::Streaming(p) => LogBody::Streaming(p).next(timeout).await,
            LogBody::Failing(why) => Some((Err(std::io::Error::other(why)), LogBody::Done)),
            LogBody::Done => None,
        }
    }

    async fn next(self, timeout: Option<Duration>) -> Option<(Item, LogBody)> {
        let LogBody::Streaming(mut p) = self else {
            return None;
        };
        match p.next(timeout).await {
            Ok(Some(data)) => Some((Ok(data), LogBody::Streaming(p))),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(id = p.id(), "log stream failed: {e}");
                let line = format!("\n--- drover-hub: the log stream failed: {e}\n");
                Some((Ok(line.into_bytes()), LogBody::Failing(e.to_string())))
            }
        }
    }
}
