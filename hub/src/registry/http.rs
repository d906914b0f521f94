//! The read-only OCI distribution API on the hub's HTTP port, for devices:
//! `GET /v2/`, `GET|HEAD /v2/<name>/manifests/<tag|digest>`, `GET|HEAD /v2/<name>/blobs/<digest>`
//! (with `Range: bytes=N-` / `bytes=N-M` → 206) and `GET /v2/<name>/tags/list` (all tags,
//! no pagination). Every request needs HTTP Basic with a
//! registered device's name and its registry password (derived from its credential,
//! `drover_protocol::keys`; neither the credential nor the MQTT password is accepted);
//! errors are OCI error JSON.
//!
//! Handlers only parse, look up and stream: no push, no deletes, no writes at all.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Digest, Registry, check_name};
use crate::broker::{self, Credentials};

/// What the `/v2` routes need: the store and the device credentials.
#[derive(Clone)]
pub struct RegistryState {
    pub registry: Arc<Registry>,
    pub creds: Credentials,
}

/// The `/v2` routes.
pub fn router(state: RegistryState) -> Router {
    Router::new()
        .route("/v2/", get(base))
        .route("/v2", get(base))
        .route("/v2/{*path}", get(dispatch))
        .with_state(state)
}

const API_VERSION: &str = "Docker-Distribution-API-Version";

/// An OCI error answer: `{"errors":[{"code","message"}]}`.
fn oci_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body =
        serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": null }] });
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"drover-hub\""),
        );
    }
    resp
}

/// `true` when the request carries a registered device's name and registry password.
fn authorized(creds: &Credentials, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(raw) else {
        return false;
    };
    match text.split_once(':') {
        Some((user, pass)) => broker::authenticate_registry(creds, user, pass),
        None => false,
    }
}

fn unauthorized() -> Response {
    oci_error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required: a device name and its registry password",
    )
}

async fn base(State(st): State<RegistryState>, headers: HeaderMap) -> Response {
    if !authorized(&st.creds, &headers) {
        return unauthorized();
    }
    let mut resp = axum::Json(serde_json::json!({})).into_response();
    resp.headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    resp
}

async fn dispatch(
    State(st): State<RegistryState>,
    method: Method,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Response {
    if !authorized(&st.creds, &headers) {
        return unauthorized();
    }
    let head = method == Method::HEAD;
    let segs: Vec<&str> = path.split('/').collect();
    let n = segs.len();
    if n < 3 {
        return oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such route");
    }
    let (kind, reference, name) = (segs[n - 2], segs[n - 1], segs[..n - 2].join("/"));
    let repo = match check_name(&name)
        .ok()
        .and_then(|()| st.registry.repository(&name))
    {
        Some(r) => r,
        None => {
            let msg = format!("repository {name:?} not known");
            return oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", &msg);
        }
    };
    match kind {
        "tags" if reference == "list" => {
            let tags: Vec<&String> = repo.tags.keys().collect();
            let body = serde_json::json!({ "name": name, "tags": tags });
            let mut resp = axum::Json(body).into_response();
            insert(resp.headers_mut(), API_VERSION, "registry/2.0");
            resp
        }
        "manifests" => {
            let Some((digest, entry)) = repo.resolve(reference) else {
                let msg = format!("manifest {reference:?} not known in {name:?}");
                return oci_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", &msg);
            };
            manifest(&st.registry, &digest, &entry.media_type, head).await
        }
        "blobs" => match Digest::parse(reference) {
            Ok(d) if repo.has_blob(d.as_str()) => blob(&st.registry, &d, &headers, head).await,
            _ => {
                let msg = format!("blob {reference:?} not known in {name:?}");
                oci_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", &msg)
            }
        },
        _ => oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such route"),
    }
}

fn store_error(what: &str, e: &std::io::Error) -> Response {
    tracing::error!("registry: cannot read {what}: {e}");
    oci_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "the hub cannot read its image store",
    )
}

async fn manifest(reg: &Registry, digest: &str, media_type: &str, head: bool) -> Response {
    let Ok(d) = Digest::parse(digest) else {
        return oci_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "bad digest");
    };
    let bytes = match tokio::fs::read(reg.blob_path(&d)).await {
        Ok(b) => b,
        Err(e) => return store_error(digest, &e),
    };
    let len = bytes.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    insert(h, header::CONTENT_TYPE, media_type);
    insert(h, header::CONTENT_LENGTH, &len.to_string());
    insert(h, "Docker-Content-Digest", digest);
    insert(h, header::ETAG, &format!("\"{digest}\""));
    insert(h, API_VERSION, "registry/2.0");
    resp
}

fn insert(h: &mut HeaderMap, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

async fn blob(reg: &Registry, d: &Digest, headers: &HeaderMap, head: bool) -> Response {
    let path = reg.blob_path(d);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return store_error(d.as_str(), &e),
    };
    let total = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return store_error(d.as_str(), &e),
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| parse_range(r, total));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, total),
        Some(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Some(None) => {
            let mut resp = oci_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UNKNOWN",
                "range not satisfiable",
            );
            insert(
                resp.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{total}"),
            );
            return resp;
        }
    };
    if start > 0
        && let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await
    {
        return store_error(d.as_str(), &e);
    }
    let len = end - start;
    let body = if head {
        Body::empty()
    } else {
        file_body(file, len)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    insert(h, header::CONTENT_TYPE, "application/octet-stream");
    insert(h, header::CONTENT_LENGTH, &len.to_string());
    insert(h, header::ACCEPT_RANGES, "bytes");
    insert(h, "Docker-Content-Digest", d.as_str());
    insert(h, API_VERSION, "registry/2.0");
    if status == StatusCode::PARTIAL_CONTENT {
        let cr = format!("bytes {start}-{}/{total}", end - 1);
        insert(h, header::CONTENT_RANGE, &cr);
    }
    resp
}

/// `bytes=N-` or `bytes=N-M` against a blob of `total` bytes: `None` = ignore the header
/// (not a single byte range: serve everything), `Some(None)` = not satisfiable,
/// `Some(Some((start, end)))` = serve `start..end`.
pub(crate) fn parse_range(h: &str, total: u64) -> Option<Option<(u64, u64)>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => total,
        m => m.parse::<u64>().ok()?.saturating_add(1).min(total),
    };
    if start >= total || end <= start {
        return Some(None);
    }
    Some(Some((start, end)))
}

/// Streams `len` bytes of `file` from its current position, 64 KiB at a time.
fn file_body(file: tokio::fs::File, len: u64) -> Body {
    let stream = futures_util::stream::unfold((file, len), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(64 * 1024) as usize];
        match f.read(&mut buf).await {
            Ok(0) => {
                let e = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                Some((Err(e), (f, 0)))
            }
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (f, left - n as u64)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    Body::from_stream(stream)
}
