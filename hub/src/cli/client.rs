//! A small blocking JSON client for the hub's API (ureq, plain HTTP). An error answer's
//! `{"error": ...}` becomes the error message as is. Every request carries the token it
//! was given as `Authorization: Bearer TOKEN` (the hub needs one on every `/v1` route, from
//! loopback too: its admin token `data_dir/api.token`, which `main` finds, or a read-only
//! one); this module never prints or logs it.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::views::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Api(String),
    #[error("cannot reach the hub at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("unexpected answer from {url}: {message}")]
    BadAnswer { url: String, message: String },
}

/// Largest API answer read (100,000 devices with their config snippets fit).
const MAX_ANSWER_BYTES: u64 = 256 * 1024 * 1024;

pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// `Bearer TOKEN`, sent with every request.
    authorization: Option<String>,
}

impl Client {
    /// `base` is like `http://127.0.0.1:7780`; requests time out after a minute.
    pub fn new(base: &str) -> Client {
        Client::with_timeout(base, Duration::from_secs(60))
    }

    /// Like [`Client::new`] with another time limit per request (image imports).
    pub fn with_timeout(base: &str, timeout: Duration) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            authorization: None,
        }
    }

    /// Sends `token` (the admin or a read token) with every request; `None` or `""`: none.
    pub fn with_token(mut self, token: Option<&str>) -> Client {
        self.authorization = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| format!("Bearer {t}"));
        self
    }

    /// The API's address, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `req` with the token's `Authorization` header, when a token was given (for
    /// requests made with another agent, such as streamed logs).
    pub fn authorize<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.authorize(self.agent.get(&url)).call();
        self.answer(&url, resp)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.authorize(self.agent.post(&url)).send_json(body);
        self.answer(&url, resp)
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.authorize(self.agent.delete(&url)).call();
        self.answer(&url, resp)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut resp = resp.map_err(|e| ClientError::Unreachable {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        let status = resp.status();
        // `get devices` of a large fleet or an import's credentials run to tens of MiB.
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| ClientError::BadAnswer {
                url: url.to_owned(),
                message: e.to_string(),
            })?;
        if !status.is_success() {
            let msg = serde_json::from_str::<ErrorBody>(&text)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("HTTP {status}: {}", text.trim()));
            return Err(ClientError::Api(msg));
        }
        serde_json::from_str(&text).map_err(|e| ClientError::BadAnswer {
            url: url.to_owned(),
            message: e.to_string(),
        })
    }
}

/// Percent-encodes a path segment (names are DNS labels, but the user may type anything).
pub fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
