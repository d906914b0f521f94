//! Who may use the hub's HTTP routes other than the registry: loopback peers always;
//! other peers only to read (GET/HEAD), and only with the `[api] token` — as
//! `Authorization: Bearer TOKEN`, as the `drover_token` cookie, or once as `?token=` on a
//! page, which answers with that cookie (HttpOnly, SameSite=Strict, kept for
//! [`COOKIE_MAX_AGE_S`] = 30 days, so that it outlives a browser restart) and a redirect to
//! the same address without the token. Changing the token logs every browser out.
//!
//! The rule is the pure function [`decide`]; [`read_access`] is the axum middleware around
//! it, for `/`, the dashboard's assets, `/v1` and `/metrics`. This module must never let
//! a non-loopback peer change anything, whatever it presents, and never logs a token.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::views::ErrorBody;

/// The cookie a browser keeps the token in.
pub const COOKIE: &str = "drover_token";

/// How long a browser keeps [`COOKIE`] (`Max-Age`, seconds): 30 days. Without it the
/// cookie would last only until the browser's next start.
pub const COOKIE_MAX_AGE_S: u32 = 30 * 24 * 60 * 60;

/// The configured token, as its SHA-256 (compared in constant time); none = off.
#[derive(Clone, Default)]
pub struct ReadAccess {
    token: Option<Arc<[u8; 32]>>,
}

impl std::fmt::Debug for ReadAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAccess")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl ReadAccess {
    /// From the `[api] token` setting: `""` = no token, loopback peers only.
    pub fn new(token: &str) -> ReadAccess {
        ReadAccess {
            token: (!token.is_empty()).then(|| Arc::new(digest(token))),
        }
    }

    /// True when `presented` is the configured token. Both sides are hashed first, so
    /// neither the comparison nor its length gives away how much of a guess was right.
    fn accepts(&self, presented: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| bool::from(t.ct_eq(&digest(presented))))
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
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
    /// A change from another machine.
    Write,
    /// A read from another machine, and no token is configured.
    NoToken,
    /// A read from another machine without a token.
    BadToken,
    /// A read from another machine with a token that is not the hub's.
    WrongToken,
}

impl Denied {
    fn message(&self) -> &'static str {
        match self {
            Denied::Write => {
                "changes are accepted only from loopback; use the CLI on the hub's machine"
            }
            Denied::NoToken => {
                "this hub answers only on loopback; set [api] token to let other machines read"
            }
            Denied::BadToken => {
                "a read from another machine needs the hub's token: with the CLI pass --token \
                 or set DROVER_HUB_TOKEN; over HTTP send `Authorization: Bearer TOKEN`; \
                 or open the dashboard once with ?token=TOKEN"
            }
            Denied::WrongToken => {
                "the token given is not the hub's (its [api] token; a changed token logs \
                 every browser out): with the CLI pass --token or set DROVER_HUB_TOKEN; \
                 or open the dashboard once with ?token=TOKEN"
            }
        }
    }
}

/// The access rule. `peer` is None when the server was not given peer addresses, which
/// counts as another machine.
pub fn decide(
    access: &ReadAccess,
    peer: Option<IpAddr>,
    method: &Method,
    headers: &HeaderMap,
    path_and_query: &str,
) -> Verdict {
    if peer.is_some_and(|ip| ip.to_canonical().is_loopback()) {
        return Verdict::Allow;
    }
    if method != Method::GET && method != Method::HEAD {
        return Verdict::Deny(Denied::Write);
    }
    if access.token.is_none() {
        return Verdict::Deny(Denied::NoToken);
    }
    if bearer(headers).is_some_and(|t| access.accepts(t))
        || cookie(headers, COOKIE).is_some_and(|t| access.accepts(t))
    {
        return Verdict::Allow;
    }
    let query = split_token(path_and_query);
    let given = bearer(headers).is_some_and(|t| !t.is_empty())
        || cookie(headers, COOKIE).is_some()
        || query.as_ref().is_some_and(|(t, _)| !t.is_empty());
    match query {
        Some((token, location)) if access.accepts(token) => Verdict::Login {
            location,
            // Not `Secure`: the hub speaks plain HTTP (a TLS proxy in front may add it).
            set_cookie: format!(
                "{COOKIE}={token}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict"
            ),
        },
        _ if given => Verdict::Deny(Denied::WrongToken),
        _ => Verdict::Deny(Denied::BadToken),
    }
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
pub async fn read_access(State(access): State<ReadAccess>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    match decide(&access, peer, req.method(), req.headers(), &target) {
        Verdict::Allow => next.run(req).await,
        Verdict::Login {
            location,
            set_cookie,
        } => login(&location, &set_cookie),
        Verdict::Deny(why) => {
            tracing::debug!(peer = ?peer, path = req.uri().path(), "refused: {why:?}");
            let body = ErrorBody {
                error: why.message().to_owned(),
            };
            (StatusCode::FORBIDDEN, Json(body)).into_response()
        }
    }
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
