//! Image references: the `image` of a container, validated once into an [`ImageRef`].
//!
//! Three forms are understood:
//! - `oci:/path/to/layout[:TAG|@sha256:…]` an OCI image layout folder on the device;
//! - `[HOST[:PORT]/]REPO[:TAG][@sha256:…]` an OCI distribution registry, Docker Hub
//!   (`docker.io`, `library/` for one-component names) when there is no host, as in
//!   Docker's own reference grammar;
//! - `hub:REPO[:TAG|@sha256:…]` the hub's own registry (its address is agent config).
//!
//! Repositories and tags follow the OCI distribution spec: path components
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/` (255 characters at most), tags
//! `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. An `ImageRef` keeps the text as written (it is what
//! hub, agent and status show, and its wire encoding is that string) and its parsed
//! [`ImageSource`]. It cannot be built, decoded or deserialized from an invalid string.
//! This module must never touch the file system or the network.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestError};

mod grammar;
pub use grammar::{is_host, is_path_component, is_repository, is_tag};

/// Longest reference accepted (layout paths included).
pub const MAX_IMAGE_REF_LEN: usize = 1024;
/// `@sha256:<64 hex>`: what [`ImageRef::with_digest`] puts after the name.
const PIN_LEN: usize = 1 + crate::digest::SHA256.len() + 1 + 64;
/// Longest repository path, as most registries and clients allow.
pub const MAX_REPO_LEN: usize = 255;
/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's distribution API is served from.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A validated image reference; see the module docs for the forms.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    text: String,
    source: ImageSource,
    /// Length of the text before `:TAG` / `@DIGEST`.
    name_end: usize,
}

/// Where an image comes from, parsed out of an [`ImageRef`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImageSource {
    Oci(OciRef),
    Registry(RegistryRef),
    Hub(HubRef),
}

/// Which manifest a reference selects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selector {
    /// No tag: `latest` (or, in a layout, its only manifest).
    Default,
    Tag(String),
    /// Pinned: whatever is fetched must hash to exactly this.
    Digest(Digest),
}

/// `oci:PATH…`: an OCI image layout folder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OciRef {
    pub layout: String,
    pub selector: Selector,
}

/// An image in an OCI distribution registry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegistryRef {
    /// `host[:port]` as written; `docker.io` for Docker Hub (and its aliases).
    pub host: String,
    /// Repository path, `library/busybox` for Docker Hub's `busybox`.
    pub repo: String,
    pub selector: Selector,
}

/// `hub:REPO…`: an image in the hub's own registry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HubRef {
    pub repo: String,
    pub selector: Selector,
}

/// Why a string is not a valid [`ImageRef`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("image reference is empty")]
    Empty,
    #[error(
        "image reference is longer than {MAX_IMAGE_REF_LEN} characters (its name part, before any tag or digest, at most {} characters)",
        MAX_IMAGE_REF_LEN - PIN_LEN
    )]
    TooLong,
    #[error("image {0:?} contains whitespace or control characters")]
    BadChar(String),
    #[error(
        "image {0:?} is a URL: expected [HOST[:PORT]/]REPO[:TAG|@sha256:…], hub:REPO[:TAG] or oci:/path/to/layout"
    )]
    Url(String),
    #[error(
        "image {reference:?}: repository {repo:?} is not valid: expected lowercase components like \"tools/busybox\" ([a-z0-9] joined by '.', '_', '__' or '-', separated by '/'), at most {MAX_REPO_LEN} characters"
    )]
    Repository { reference: String, repo: String },
    #[error(
        "image {reference:?}: tag {tag:?} is not valid: expected [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
    )]
    Tag { reference: String, tag: String },
    #[error("image {reference:?}: registry host {host:?} is not valid: expected HOST[:PORT]")]
    Host { reference: String, host: String },
    #[error("image {reference:?}: {source}")]
    Digest {
        reference: String,
        source: DigestError,
    },
    #[error("image {0:?}: the layout path is empty (expected oci:/path/to/layout[:TAG])")]
    EmptyLayout(String),
}

impl ImageRef {
    /// Checks `s` and wraps it.
    pub fn new(s: impl Into<String>) -> Result<ImageRef, ImageRefError> {
        let text = s.into();
        let (source, name_end) = parse(&text)?;
        // The name must leave room for a pin: `with_digest` of a long name with a short
        // tag would otherwise give a reference that no longer parses (found by fuzzing).
        if name_end + PIN_LEN > MAX_IMAGE_REF_LEN {
            return Err(ImageRefError::TooLong);
        }
        Ok(ImageRef {
            text,
            source,
            name_end,
        })
    }

    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn source(&self) -> &ImageSource {
        &self.source
    }

    pub fn selector(&self) -> &Selector {
        match &self.source {
            ImageSource::Oci(r) => &r.selector,
            ImageSource::Registry(r) => &r.selector,
            ImageSource::Hub(r) => &r.selector,
        }
    }

    /// The digest the reference is pinned to, if any.
    pub fn digest(&self) -> Option<&Digest> {
        match self.selector() {
            Selector::Digest(d) => Some(d),
            _ => None,
        }
    }

    /// The same image pinned to `digest`: `NAME@digest`, any tag or digest dropped.
    pub fn with_digest(&self, digest: &Digest) -> ImageRef {
        let name = &self.text[..self.name_end];
        let mut source = self.source.clone();
        let selector = Selector::Digest(digest.clone());
        match &mut source {
            ImageSource::Oci(r) => r.selector = selector,
            ImageSource::Registry(r) => r.selector = selector,
            ImageSource::Hub(r) => r.selector = selector,
        }
        ImageRef {
            text: format!("{name}@{digest}"),
            source,
            name_end: self.name_end,
        }
    }
}

impl Selector {
    /// `TAG` or `sha256:…` for `/v2/REPO/manifests/…` (`latest` by default).
    pub fn manifest_ref(&self) -> String {
        match self {
            Selector::Default => "latest".into(),
            Selector::Tag(t) => t.clone(),
            Selector::Digest(d) => d.to_string(),
        }
    }
}

impl RegistryRef {
    /// The host serving the distribution API (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.host == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.host
        }
    }
}

/// Parses any form; returns the source and where the name part ends.
fn parse(s: &str) -> Result<(ImageSource, usize), ImageRefError> {
    if s.is_empty() {
        return Err(ImageRefError::Empty);
    }
    if s.len() > MAX_IMAGE_REF_LEN {
        return Err(ImageRefError::TooLong);
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ImageRefError::BadChar(s.to_owned()));
    }
    if let Some(rest) = s.strip_prefix("oci:") {
        let (layout, selector) = split_oci(s, rest)?;
        let end = "oci:".len() + layout.len();
        let layout = layout.to_owned();
        return Ok((ImageSource::Oci(OciRef { layout, selector }), end));
    }
    if let Some(rest) = s.strip_prefix("hub:") {
        let (repo, selector) = split_selector(s, rest)?;
        check_repo(s, repo, repo)?;
        let end = "hub:".len() + repo.len();
        let repo = repo.to_owned();
        return Ok((ImageSource::Hub(HubRef { repo, selector }), end));
    }
    if s.contains("://") {
        return Err(ImageRefError::Url(s.to_owned()));
    }
    let (name, selector) = split_selector(s, s)?;
    let (host, repo) = split_host(s, name)?;
    Ok((
        ImageSource::Registry(RegistryRef {
            host,
            repo,
            selector,
        }),
        name.len(),
    ))
}

/// Splits `NAME[:TAG][@DIGEST]`: a tag is after the last `:` that follows the last `/`.
fn split_selector<'a>(reference: &str, s: &'a str) -> Result<(&'a str, Selector), ImageRefError> {
    let (named, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    let last_slash = named.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match named[last_slash..].rfind(':') {
        Some(colon) => (
            &named[..last_slash + colon],
            Some(&named[last_slash + colon + 1..]),
        ),
        None => (named, None),
    };
    if let Some(tag) = tag {
        check_tag(reference, tag)?;
    }
    let selector = match (digest, tag) {
        (Some(d), _) => Selector::Digest(parse_digest(reference, d)?),
        (None, Some(t)) => Selector::Tag(t.to_owned()),
        (None, None) => Selector::Default,
    };
    Ok((name, selector))
}

/// `PATH[:TAG|@DIGEST]`; only the last path component can hold the selector, so paths
/// may contain `:` in earlier components.
fn split_oci<'a>(reference: &str, s: &'a str) -> Result<(&'a str, Selector), ImageRefError> {
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    let last = &s[last_slash..];
    let (path, selector) = if let Some(at) = last.find('@') {
        let digest = parse_digest(reference, &last[at + 1..])?;
        (&s[..last_slash + at], Selector::Digest(digest))
    } else if let Some(colon) = last.rfind(':') {
        let tag = &last[colon + 1..];
        check_tag(reference, tag)?;
        (&s[..last_slash + colon], Selector::Tag(tag.to_owned()))
    } else {
        (s, Selector::Default)
    };
    if path.is_empty() {
        return Err(ImageRefError::EmptyLayout(reference.to_owned()));
    }
    Ok((path, selector))
}

/// Docker's rule: the first component is a host when it has a `.` or `:`, is
/// `localhost`, or has uppercase letters (repositories cannot); else it is Docker Hub.
fn split_host(reference: &str, name: &str) -> Result<(String, String), ImageRefError> {
    let (host, repo) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            check_host(reference, first)?;
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    };
    let host = match host {
        "index.docker.io" | DOCKER_HUB_API => DOCKER_HUB,
        h => h,
    };
    let full = if host == DOCKER_HUB && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo.to_owned()
    };
    check_repo(reference, repo, &full)?;
    Ok((host.to_owned(), full))
}

fn parse_digest(reference: &str, d: &str) -> Result<Digest, ImageRefError> {
    Digest::parse(d).map_err(|source| ImageRefError::Digest {
        reference: reference.to_owned(),
        source,
    })
}

/// Checks the repository `written` (named in errors) and its full form (length).
fn check_repo(reference: &str, written: &str, full: &str) -> Result<(), ImageRefError> {
    if full.len() <= MAX_REPO_LEN && is_repository(written) {
        return Ok(());
    }
    Err(ImageRefError::Repository {
        reference: reference.to_owned(),
        repo: written.to_owned(),
    })
}

fn check_tag(reference: &str, tag: &str) -> Result<(), ImageRefError> {
    if is_tag(tag) {
        return Ok(());
    }
    Err(ImageRefError::Tag {
        reference: reference.to_owned(),
        tag: tag.to_owned(),
    })
}

fn check_host(reference: &str, host: &str) -> Result<(), ImageRefError> {
    if is_host(host) {
        return Ok(());
    }
    Err(ImageRefError::Host {
        reference: reference.to_owned(),
        host: host.to_owned(),
    })
}

impl FromStr for ImageRef {
    type Err = ImageRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::new(s)
    }
}

impl TryFrom<String> for ImageRef {
    type Error = ImageRefError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ImageRef::new(s)
    }
}

impl TryFrom<&str> for ImageRef {
    type Error = ImageRefError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        ImageRef::new(s)
    }
}

impl From<ImageRef> for String {
    fn from(r: ImageRef) -> String {
        r.text
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for ImageRef {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
#[path = "image_ref_tests.rs"]
mod tests;
