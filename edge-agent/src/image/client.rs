//! Blocking HTTP client for one repository of an OCI distribution registry: manifests
//! (size-capped, in memory) and blobs (streamed to `<hex>.partial`, resumed with
//! `Range`, renamed to `<hex>` only after the sha256 matched), with Basic / Bearer
//! authentication and retries with back-off for transient failures.
//!
//! It never keeps a blob in memory, never leaves a blob under its final name unless its
//! digest verified, and never puts credentials in an error or a log line. Credentials go
//! only where `sendcreds.rs` allows (not over plain HTTP to another machine, not to a
//! token realm on another host); with a pinned CA (`with_ca`) no other root is trusted.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tracing::warn;
use ureq::Body;
use ureq::http::Response;

use super::ImageError;
use super::auth::{self, Challenge};
use super::digest::Digest;
use super::download::{BlobTarget, hash_file};
use super::sendcreds;

/// Manifests and indexes are small; anything bigger is refused.
const MAX_MANIFEST: u64 = 4 << 20;
const MAX_TOKEN_ANSWER: u64 = 1 << 20;
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// How often and how patiently transient failures (connection errors, 5xx, 429) are retried.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: Duration::from_millis(500),
        }
    }
}

/// Why one attempt failed.
pub(super) enum Failure {
    /// Worth another attempt after a pause.
    Transient(String),
    Fatal(ImageError),
}

/// A registry repository: `base` is `http(s)://host[:port]`.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    repo: String,
    basic: Option<String>,
    auth: Option<String>,
    /// Why the credentials may not be sent to `base` (plain HTTP beyond loopback).
    refused: Option<String>,
    pub retry: Retry,
}

fn agent(tls: Option<ureq::tls::TlsConfig>) -> ureq::Agent {
    let mut b = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_resolve(Some(Duration::from_secs(15)))
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent("drover-agent");
    if let Some(tls) = tls {
        b = b.tls_config(tls);
    }
    b.build().into()
}

impl Client {
    /// `credentials` are used for Basic auth and to fetch Bearer tokens; with
    /// `basic_first` they are sent on the first request (the hub always wants them).
    pub fn new(
        base: &str,
        repo: &str,
        credentials: Option<(&str, &str)>,
        basic_first: bool,
    ) -> Self {
        let basic = credentials.map(|(u, p)| auth::basic(u, p));
        let base = base.trim_end_matches('/').to_string();
        let refused = basic
            .as_ref()
            .and_then(|_| sendcreds::may_send(&base).err());
        Self {
            agent: agent(None),
            repo: repo.to_string(),
            auth: basic.clone().filter(|_| basic_first && refused.is_none()),
            base,
            basic,
            refused,
            retry: Retry::default(),
        }
    }

    /// Trusts only the certificates in `ca_pem` (the fleet CA) for `https://`.
    pub fn with_ca(mut self, ca_pem: &str) -> Result<Self, ImageError> {
        let bad = |reason: String| ImageError::Registry {
            registry: self.base.clone(),
            reason: format!("the pinned CA (hub.ca / hub.ca_file): {reason}"),
        };
        let mut roots = Vec::new();
        for item in ureq::tls::parse_pem(ca_pem.as_bytes()) {
            if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| bad(e.to_string()))? {
                roots.push(c);
            }
        }
        if roots.is_empty() {
            return Err(bad("no certificate".into()));
        }
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
            .build();
        self.agent = agent(Some(tls));
        Ok(self)
    }

    /// `http(s)://host` of this registry (for messages).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The repository this client reads.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// Fetches a manifest or index by tag or digest; returns its bytes and media type.
    pub fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String), ImageError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repo);
        let what = format!("manifest {}:{reference}", self.repo);
        self.retrying(&what, |c| {
            let mut resp = c.send(&url, &[("Accept", ACCEPT_MANIFESTS.to_string())])?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(c.status_failure(status, &what));
            }
            let media_type = header(&resp, "content-type")
                .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
                .unwrap_or_default();
            let bytes = resp
                .body_mut()
                .with_config()
                .limit(MAX_MANIFEST)
                .read_to_vec()
                .map_err(|e| c.body_failure(e, &what))?;
            Ok((bytes, media_type))
        })
    }

    /// Downloads blob `digest` into `dir/<hex>` (verified), resuming `dir/<hex>.partial`.
    /// `on_disk` is told how many bytes of the blob are on disk as they arrive.
    pub fn blob_to_file(
        &mut self,
        digest: &Digest,
        size: Option<u64>,
        dir: &Path,
        on_disk: &mut dyn FnMut(u64),
    ) -> Result<PathBuf, ImageError> {
        let dest = dir.join(digest.hex());
        if dest.is_file() {
            return Ok(dest);
        }
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repo);
        let what = format!("blob {digest}");
        let blob = BlobTarget {
            digest,
            size,
            dest: &dest,
            partial: dir.join(format!("{}.partial", digest.hex())),
        };

        self.retrying(&what, |c| c.blob_attempt(&url, &blob, on_disk))?;
        Ok(dest)
    }

    fn blob_attempt(
        &mut self,
        url: &str,
        blob: &BlobTarget<'_>,
        on_disk: &mut dyn FnMut(u64),
    ) -> Result<(), Failure> {
        let io_fail =
            |context: String| move |source| Failure::Fatal(ImageError::Io { context, source });
        let mut have = fs::metadata(&blob.partial).map_or(0, |m| m.len());
        if blob.size.is_some_and(|s| have > s) {
            have = 0;
        }
        if have > 0 && blob.size == Some(have) {
            return blob.finish(have);
        }
        let headers: Vec<(&str, String)> = if have > 0 {
            vec![("Range", format!("bytes={have}-"))]
        } else {
            vec![]
        };
        let resp = self.send(url, &headers)?;
        let status = resp.status().as_u16();
        let resumed = have > 0 && status == 206 && content_range_starts_at(&resp, have);
        match status {
            200 => {}
            206 if resumed => {}
            206 => {
                let _ = fs::remove_file(&blob.partial);
                return Err(Failure::Transient(
                    "the registry answered a different byte range than asked".into(),
                ));
            }
            416 if have > 0 => {
                let _ = fs::remove_file(&blob.partial);
                return Err(Failure::Transient(
                    "the registry refused to resume the download (HTTP 416)".into(),
                ));
            }
            s => return Err(self.status_failure(s, &format!("blob {}", blob.digest))),
        }
        let start = if resumed { have } else { 0 };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(!resumed)
            .append(resumed)
            .open(&blob.partial)
            .map_err(io_fail(format!("opening {}", blob.partial.display())))?;
        let mut hasher = Sha256::new();
        if resumed {
            hash_file(&blob.partial, &mut hasher)
                .map_err(io_fail(format!("reading {}", blob.partial.display())))?;
        }
        on_disk(start);
        let body = resp.into_body().into_reader();
        let total = blob.stream(body, &mut file, &mut hasher, start, on_disk)?;
        file.sync_all()
            .map_err(io_fail(format!("syncing {}", blob.partial.display())))?;
        blob.check_and_rename(hasher, total)
    }

    /// Runs `op` until it succeeds, fails for good, or attempts run out.
    fn retrying<T>(
        &mut self,
        what: &str,
        mut op: impl FnMut(&mut Self) -> Result<T, Failure>,
    ) -> Result<T, ImageError> {
        let mut delay = self.retry.first_delay;
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            match op(self) {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(reason)) => last = reason,
            }
            if attempt < self.retry.attempts {
                warn!(registry = %self.base, %what, attempt, "transient failure, retrying in {delay:?}: {last}");
                std::thread::sleep(delay);
                delay = delay.saturating_mul(2);
            }
        }
        Err(ImageError::Unreachable {
            registry: self.base.clone(),
            reason: format!(
                "{what}: {last} (gave up after {} attempts)",
                self.retry.attempts
            ),
        })
    }

    /// One GET, answering one authentication challenge if the registry sends one.
    fn send(&mut self, url: &str, headers: &[(&str, String)]) -> Result<Response<Body>, Failure> {
        for round in 0..2 {
            let mut req = self.agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(a) = &self.auth {
                req = req.header("Authorization", a);
            }
            let resp = req.call().map_err(|e| self.transport_failure(e))?;
            if resp.status().as_u16() != 401 || round == 1 {
                return Ok(resp);
            }
            let challenge = header(&resp, "www-authenticate").and_then(auth::parse_challenge);
            self.authenticate(challenge)?;
        }
        Err(Failure::Transient("authentication loop".into()))
    }

    fn authenticate(&mut self, challenge: Option<Challenge>) -> Result<(), Failure> {
        match challenge {
            Some(Challenge::Basic) if self.refused.is_some() => {
                let reason = self.refused.clone().unwrap_or_default();
                Err(self.auth_failure(&reason))
            }
            Some(Challenge::Basic) => match &self.basic {
                Some(b) if self.auth.as_ref() != Some(b) => {
                    self.auth = Some(b.clone());
                    Ok(())
                }
                Some(_) => Err(self.auth_failure("the registry refused the configured credentials")),
                None => Err(self.auth_failure(
                    "the registry requires credentials (set username and password in [[images.registries]])",
                )),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let url = auth::token_url(&realm, service.as_deref(), scope.as_deref(), &self.repo);
                let token = self.fetch_token(&url)?;
                self.auth = Some(format!("Bearer {token}"));
                Ok(())
            }
            None => Err(self.auth_failure(
                "HTTP 401 without a Basic or Bearer WWW-Authenticate challenge",
            )),
        }
    }

    fn fetch_token(&mut self, url: &str) -> Result<String, Failure> {
        let mut req = self.agent.get(url);
        if let Some(b) = &self.basic {
            if let Err(reason) = sendcreds::realm_allowed(&self.base, url) {
                return Err(self.auth_failure(&reason));
            }
            req = req.header("Authorization", b);
        }
        let mut resp = req.call().map_err(|e| self.transport_failure(e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(self.status_failure(status, "token request"));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_TOKEN_ANSWER)
            .read_to_vec()
            .map_err(|e| self.body_failure(e, "token request"))?;
        auth::token_from_json(&body)
            .ok_or_else(|| self.auth_failure("the token endpoint answered without a token"))
    }

    fn auth_failure(&self, reason: &str) -> Failure {
        Failure::Fatal(ImageError::Auth {
            registry: self.base.clone(),
            reason: reason.to_string(),
        })
    }

    fn status_failure(&self, status: u16, what: &str) -> Failure {
        let fatal = |reason: String| {
            Failure::Fatal(ImageError::Registry {
                registry: self.base.clone(),
                reason,
            })
        };
        match status {
            401 | 403 => Failure::Fatal(ImageError::Auth {
                registry: self.base.clone(),
                reason: format!("{what}: HTTP {status} (check the credentials for this registry)"),
            }),
            404 => fatal(format!("{what}: not found (HTTP 404)")),
            408 | 429 | 500..=599 => Failure::Transient(format!("{what}: HTTP {status}")),
            s => fatal(format!("{what}: unexpected HTTP {s}")),
        }
    }

    fn transport_failure(&self, e: ureq::Error) -> Failure {
        match e {
            ureq::Error::Timeout(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Io(_)
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled => Failure::Transient(e.to_string()),
            e => Failure::Fatal(ImageError::Registry {
                registry: self.base.clone(),
                reason: e.to_string(),
            }),
        }
    }

    fn body_failure(&self, e: ureq::Error, what: &str) -> Failure {
        match e {
            ureq::Error::BodyExceedsLimit(n) => Failure::Fatal(ImageError::Registry {
                registry: self.base.clone(),
                reason: format!("{what}: answer larger than {n} bytes"),
            }),
            e => match self.transport_failure(e) {
                Failure::Transient(r) => Failure::Transient(format!("{what}: {r}")),
                fatal => fatal,
            },
        }
    }
}

fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// True when a 206 answer's `Content-Range` starts where the partial file ends.
fn content_range_starts_at(resp: &Response<Body>, offset: u64) -> bool {
    header(resp, "content-range")
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_none_or(|start| start == offset)
}
