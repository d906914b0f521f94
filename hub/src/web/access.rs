//! Who may use the hub's HTTP routes other than the registry (`/v1`, `/metrics`, the
//! dashboard's page and assets). Every request needs one of the hub's tokens, from
//! loopback too (any local user or `network: host` container reaches loopback):
//! - the **admin** token (`D/api.token`, `api::token`), as `Authorization: Bearer TOKEN`:
//!   every route; changes (anything but GET/HEAD) only from loopback;
//! - a **read** token (`D/read.token`, and `[api] token` when set): GET/HEAD only, from
//!   any peer, as `Authorization: Bearer TOKEN`, as the `drover_token` cookie, or once as
//!   `?token=` on a page, which answers with that cookie (HttpOnly, SameSite=Strict, kept
//!   for [`COOKIE_MAX_AGE_S`] = 30 days, so that it outlives a browser restart) and a
//!   redirect to the same address without the token. Changing the token logs every
//!   browser out. The admin token is never accepted in a cookie or an address: a browser
//!   never holds a token that can change anything.
//!
//! No token: 401 saying where the tokens are; a read token on a change, or a change
//! from another machine: 403. The rule is the pure function [`decide`]; [`api_access`]
//! is the axum middleware around it. This module must never let a non-loopback peer or
//! a read token change anything, and never logs or echoes a token.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::token::{ADMIN_FILE, READ_FILE, Tokens};
use crate::views::ErrorBody;

/// The cookie a browser keeps the read token in.
pub const COOKIE: &str = "drover_token";

/// How long a browser keeps [`COOKIE`] (`Max-Age`, seconds): 30 days. Without it the
/// cookie would last only until the browser's next start.
pub const COOKIE_MAX_AGE_S: u32 = 30 * 24 * 60 * 60;

/// The hub's tokens, as their SHA-256 (compared in constant time), and the data folder
/// they are in (named in refusals, so that a user knows where to look).
#[derive(Clone)]
pub struct ApiAccess {
    admin: Arc<[u8; 32]>,
    read: Arc<[[u8; 32]]>,
    data_dir: Arc<str>,
}

impl std::fmt::Debug for ApiAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAccess")
            .field("admin", &"<set>")
            .field("read", &format!("<{} set>", self.read.len()))
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Read,
    Admin,
}

impl ApiAccess {
    /// From the tokens in `data_dir` and the `[api] token` setting (`""`: none), which
    /// is one more read token (kept for dashboards and scrapers set up with it).
    pub fn new(tokens: &Tokens, extra_read: &str, data_dir: &Path) -> ApiAccess {
        let mut read = vec![digest(&tokens.read)];
        if !extra_read.is_empty() {
            read.push(digest(extra_read));
        }
        ApiAccess {
            admin: Arc::new(digest(&tokens.admin)),
            read: read.into(),
            data_dir: data_dir.display().to_string().into(),
        }
    }

    /// What `presented` grants, if it is one of the hub's tokens. Both sides are hashed
    /// first, so neither the comparison nor its length gives away how much of a guess
    /// was right; every token is compared, whichever matches.
    fn level(&self, presented: &str) -> Option<Level> {
        let p = digest(presented);
        let admin = bool::from(self.admin.ct_eq(&p));
        let read = self
            .read
            .iter()
            .fold(false, |any, t| any | bool::from(t.ct_eq(&p)));
        match (admin, read) {
            (true, _) => Some(Level::Admin),
            (false, true) => Some(Level::Read),
            _ => None,
        }
    }

    fn is_read(&self, presented: &str) -> bool {
        self.level(presented) == Some(Level::Read)
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Marks requests that came over HTTPS (an extension the TLS server adds): the read
/// token's cookie is then `Secure`, so a browser never sends it over plain HTTP.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through; a `Read` bearer gets env values hidden (`web::redact`).
    Allow(Level),
    /// The right `?token=`: set the cookie (`set_cookie`, a `Set-Cookie` value) and send
    /// the browser to `location`, the same address without the token.
    Login {
        location: String,
        set_cookie: String,
    },
    Deny(Denied),
}

/// Why a request was refused (each says what would have been accepted).
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No token at all (401).
    NoToken,
    /// A token that is none of the hub's (401).
    WrongToken,
    /// The admin token in a cookie or an address (401).
    AdminInBrowser,
    /// A change with a read token (403).
    ReadOnly,
    /// A change from another machine, whatever token (403).
    RemoteWrite,
}

impl Denied {
    /// 401 when the right token would have been let in, 403 when no token would.
    pub fn status(&self) -> StatusCode {
        match self {
            Denied::NoToken | Denied::WrongToken | Denied::AdminInBrowser => {
                StatusCode::UNAUTHORIZED
            }
            Denied::ReadOnly | Denied::RemoteWrite => StatusCode::FORBIDDEN,
        }
    }

    /// What was wrong and where the tokens are; `dir` is the hub's data folder.
    pub fn message(&self, dir: &str) -> String {
        let tokens = format!(
            "the admin token is in {dir}/{ADMIN_FILE} on the hub's machine (mode 0600: the \
             CLI reads it itself when run as root; else pass --token-file PATH or set \
             DROVER_HUB_TOKEN), the read-only one in {dir}/{READ_FILE} (for the \
             dashboard: `drover-hub dashboard-url` prints its address); over HTTP send \
             `Authorization: Bearer TOKEN`"
        );
        match self {
            Denied::NoToken => format!("the hub's API needs a token, from loopback too: {tokens}"),
            Denied::WrongToken => format!(
                "the token given is none of the hub's (a changed token logs every browser \
                 out): {tokens}"
            ),
            Denied::AdminInBrowser => format!(
                "the admin token is accepted only in an `Authorization: Bearer` header, \
                 never in a cookie or an address: open the dashboard with the read-only \
                 token in {dir}/{READ_FILE} (`drover-hub dashboard-url`)"
            ),
            Denied::ReadOnly => format!(
                "the read-only token cannot change anything: changes need the admin token \
                 in {dir}/{ADMIN_FILE}, from the hub's machine"
            ),
            Denied::RemoteWrite => {
                "changes are accepted only from loopback; use the CLI on the hub's machine"
                    .to_owned()
            }
        }
    }
}

/// The access rule. `peer` is None when the server was not given peer addresses, which
/// counts as another machine.
pub fn decide(
    access: &ApiAccess,
    peer: Option<IpAddr>,
    method: &Method,
    headers: &HeaderMap,
    path_and_query: &str,
) -> Verdict {
    let write = method != Method::GET && method != Method::HEAD;
    let loopback = is_loopback(peer);
    if let Some(token) = bearer(headers).filter(|t| !t.is_empty()) {
        return match access.level(token) {
            Some(Level::Admin) if write && !loopback => Verdict::Deny(Denied::RemoteWrite),
            Some(Level::Admin) => Verdict::Allow(Level::Admin),
            Some(Level::Read) if write => Verdict::Deny(Denied::ReadOnly),
            Some(Level::Read) => Verdict::Allow(Level::Read),
            None => Verdict::Deny(Denied::WrongToken),
        };
    }
    let cookie = cookie(headers, COOKIE);
    if cookie.is_some_and(|t| access.is_read(t)) {
        return match write {
            true => Verdict::Deny(Denied::ReadOnly),
            false => Verdict::Allow(Level::Read),
        };
    }
    let query = split_token(path_and_query).filter(|(t, _)| !t.is_empty());
    let admin_in_browser = [cookie, query.as_ref().map(|q| q.0)]
        .into_iter()
        .flatten()
        .any(|t| access.level(t) == Some(Level::Admin));
    match query {
        _ if admin_in_browser => Verdict::Deny(Denied::AdminInBrowser),
        Some((token, location)) if !write && access.is_read(token) => Verdict::Login {
            location,
            // `Secure` is added by `api_access` for requests over HTTPS (`OverTls`); plain
            // HTTP on loopback must still be able to log in.
            set_cookie: format!(
                "{COOKIE}={token}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict"
            ),
        },
        Some((token, _)) if access.is_read(token) => Verdict::Deny(Denied::ReadOnly),
        Some(_) => Verdict::Deny(Denied::WrongToken),
        None if cookie.is_some() => Verdict::Deny(Denied::WrongToken),
        None => Verdict::Deny(Denied::NoToken),
    }
}

/// A loopback peer (IPv4-mapped addresses included); `None` counts as another machine.
fn is_loopback(peer: Option<IpAddr>) -> bool {
    peer.is_some_and(|ip| ip.to_canonical().is_loopback())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The value of the `token` query parameter and the address without it.
fn split_token(path_and_query: &str) -> Option<(&str, String)> {
    let (path, query) = path_and_query.split_once('?')?;
    let mut token = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| match p.strip_prefix("token=") {
            Some(t) => {
                token = Some(t);
                false
            }
            None => !p.is_empty(),
        })
        .collect();
    let location = match rest.is_empty() {
        true => path.to_owned(),
        false => format!("{path}?{}", rest.join("&")),
    };
    Some((token?, location))
}

/// The middleware: the rule of [`decide`] around any route. Needs the server to be run
/// with `into_make_service_with_connect_info::<SocketAddr>()`, else every request counts
/// as another machine's.
pub async fn api_access(State(access): State<ApiAccess>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    match decide(&access, peer, req.method(), req.headers(), &target) {
        Verdict::Allow(Level::Read) if super::redact::shows_env(req.uri().path()) => {
            redacted(next.run(req).await).await
        }
        Verdict::Allow(_) => next.run(req).await,
        Verdict::Login {
            location,
            mut set_cookie,
        } => {
            if req.extensions().get::<OverTls>().is_some() {
                set_cookie.push_str("; Secure");
            }
            login(&location, &set_cookie)
        }
        Verdict::Deny(why) => {
            tracing::debug!(peer = ?peer, path = req.uri().path(), "refused: {why:?}");
            // Another machine learns nothing of the hub's layout: `<data_dir>`.
            let dir = if is_loopback(peer) {
                &*access.data_dir
            } else {
                "<data_dir>"
            };
            let body = ErrorBody {
                error: why.message(dir),
            };
            let mut res = (why.status(), Json(body)).into_response();
            if why.status() == StatusCode::UNAUTHORIZED {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"drover-hub\""),
                );
            }
            res
        }
    }
}

/// `res` with every env value hidden (a read-only bearer); a body too large to rewrite
/// is refused rather than passed on.
async fn redacted(res: Response) -> Response {
    let (parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, super::redact::MAX_BODY_BYTES).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let out = super::redact::redact_body(&bytes).unwrap_or_else(|| bytes.to_vec());
    let mut res = Response::from_parts(parts, axum::body::Body::from(out));
    res.headers_mut().remove(header::CONTENT_LENGTH);
    res
}

/// The answer to the right `?token=`: the cookie, and the address without the token.
fn login(location: &str, set_cookie: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    let headers = res.headers_mut();
    match (
        HeaderValue::from_str(location),
        HeaderValue::from_str(set_cookie),
    ) {
        (Ok(location), Ok(cookie)) => {
            headers.insert(header::LOCATION, location);
            headers.insert(header::SET_COOKIE, cookie);
            res
        }
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
