//! Parsing of image references: `oci:/path/to/layout[:tag|@sha256:<hex>]`,
//! `HOST[:PORT]/REPO[:TAG|@sha256:<hex>]` (docker.io when there is no host) and
//! `hub:REPO[:TAG|@sha256:<hex>]`.
//!
//! Pure string handling: it never touches the filesystem or the network.

use std::path::PathBuf;

use super::digest::Digest;

/// Which manifest of a layout an image reference selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// No tag given: `latest`, or the only manifest of the layout.
    Default,
    Tag(String),
    Digest(Digest),
}

/// A parsed `oci:` image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub layout: PathBuf,
    pub selector: Selector,
}

/// Docker Hub's name in references and the host its API is served from.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// An image in an OCI distribution registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]` as written (`docker.io` for Docker Hub).
    pub host: String,
    /// Repository path, e.g. `library/busybox`.
    pub repo: String,
    pub selector: Selector,
}

impl RegistryRef {
    /// Host the distribution API is served from (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.host == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.host
        }
    }

    /// `<tag>` or `sha256:<hex>` for `/v2/<repo>/manifests/<ref>`.
    pub fn manifest_ref(&self) -> String {
        match &self.selector {
            Selector::Default => "latest".into(),
            Selector::Tag(t) => t.clone(),
            Selector::Digest(d) => d.to_string(),
        }
    }
}

/// Any supported image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:PATH…`: a local OCI image layout folder.
    Oci(Reference),
    /// `HOST[:PORT]/REPO…` or a Docker Hub name.
    Registry(RegistryRef),
    /// `hub:REPO…`: the agent's own hub (host left empty: it comes from the config).
    Hub(RegistryRef),
}

/// Parses any image reference form.
pub fn parse_any(reference: &str) -> Result<ImageRef, String> {
    if reference.starts_with("oci:") {
        return parse(reference).map(ImageRef::Oci);
    }
    if let Some(rest) = reference.strip_prefix("hub:") {
        let (repo, selector) = split_selector(rest)?;
        check_repo(repo)?;
        let repo = repo.to_string();
        return Ok(ImageRef::Hub(RegistryRef {
            host: String::new(),
            repo,
            selector,
        }));
    }
    if reference.contains("://") {
        return Err("expected `HOST[:PORT]/REPO[:TAG|@sha256:<hex>]`, `hub:REPO[:TAG]` or `oci:/path` (no URL scheme)".into());
    }
    let (name, selector) = split_selector(reference)?;
    let (host, repo) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            check_host(first)?;
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let host = match host.as_str() {
        "index.docker.io" | DOCKER_HUB_API => DOCKER_HUB.to_string(),
        _ => host,
    };
    let repo = if host == DOCKER_HUB && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo
    };
    check_repo(&repo)?;
    Ok(ImageRef::Registry(RegistryRef {
        host,
        repo,
        selector,
    }))
}

/// Splits `NAME[:TAG|@DIGEST]` (the tag is after the last `:` following the last `/`).
fn split_selector(s: &str) -> Result<(&str, Selector), String> {
    if let Some((name, digest)) = s.split_once('@') {
        return Ok((name, Selector::Digest(Digest::parse(digest)?)));
    }
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..].rfind(':') {
        Some(colon) => {
            let (name, tag) = (&s[..last_slash + colon], &s[last_slash + colon + 1..]);
            check_tag(tag)?;
            Ok((name, Selector::Tag(tag.to_string())))
        }
        None => Ok((s, Selector::Default)),
    }
}

fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if name_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "registry host `{host}` is not valid (expected HOST[:PORT])"
        ))
    }
}

fn check_repo(repo: &str) -> Result<(), String> {
    let component_ok = |c: &str| {
        c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
    };
    if repo.is_empty() || repo.len() > 255 || !repo.split('/').all(component_ok) {
        return Err(format!(
            "repository `{repo}` is not valid (lowercase [a-z0-9._-] components separated by `/`)"
        ));
    }
    Ok(())
}

/// Parses `oci:PATH[:TAG|@sha256:HEX]`. The tag separator is the last `:` after the
/// last `/`, so paths may contain `:` in earlier components.
pub fn parse(reference: &str) -> Result<Reference, String> {
    let rest = reference
        .strip_prefix("oci:")
        .ok_or("expected `oci:/path/to/layout[:tag|@sha256:<hex>]`")?;
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, selector) = if let Some(at) = rest[last_slash..].find('@') {
        let (path, digest) = (&rest[..last_slash + at], &rest[last_slash + at + 1..]);
        (path, Selector::Digest(Digest::parse(digest)?))
    } else if let Some(colon) = rest[last_slash..].rfind(':') {
        let (path, tag) = (&rest[..last_slash + colon], &rest[last_slash + colon + 1..]);
        check_tag(tag)?;
        (path, Selector::Tag(tag.to_string()))
    } else {
        (rest, Selector::Default)
    };
    if path.is_empty() {
        return Err("the layout path is empty".into());
    }
    Ok(Reference {
        layout: PathBuf::from(path),
        selector,
    })
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if tag.is_empty() || tag.len() > 128 || !tag.chars().all(ok_char) {
        return Err(format!(
            "tag `{tag}` is not valid (expected 1-128 of [A-Za-z0-9_.-])"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(r: &str) -> (String, Selector) {
        let p = parse(r).unwrap();
        (p.layout.to_string_lossy().into_owned(), p.selector)
    }

    #[test]
    fn tag_and_default() {
        assert_eq!(
            sel("oci:/img/app:v1"),
            ("/img/app".into(), Selector::Tag("v1".into()))
        );
        assert_eq!(sel("oci:/img/app"), ("/img/app".into(), Selector::Default));
        assert_eq!(
            sel("oci:rel/app:1.2_x-y"),
            ("rel/app".into(), Selector::Tag("1.2_x-y".into()))
        );
    }

    #[test]
    fn colon_in_earlier_components_belongs_to_the_path() {
        assert_eq!(sel("oci:/a:b/app"), ("/a:b/app".into(), Selector::Default));
        assert_eq!(
            sel("oci:/a:b/app:t"),
            ("/a:b/app".into(), Selector::Tag("t".into()))
        );
    }

    #[test]
    fn digest_selector() {
        let hex = "0123456789abcdef".repeat(4);
        let (path, s) = sel(&format!("oci:/img/app@sha256:{hex}"));
        assert_eq!(path, "/img/app");
        assert_eq!(
            s,
            Selector::Digest(Digest::parse(&format!("sha256:{hex}")).unwrap())
        );
    }

    fn registry(r: &str) -> (String, String, Selector) {
        match parse_any(r).unwrap() {
            ImageRef::Registry(r) => (r.host, r.repo, r.selector),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn registry_references() {
        let t = |s: &str| Selector::Tag(s.into());
        assert_eq!(
            registry("127.0.0.1:5000/busybox:latest"),
            ("127.0.0.1:5000".into(), "busybox".into(), t("latest"))
        );
        assert_eq!(
            registry("registry.local/team/app"),
            (
                "registry.local".into(),
                "team/app".into(),
                Selector::Default
            )
        );
        assert_eq!(
            registry("localhost/app:v1"),
            ("localhost".into(), "app".into(), t("v1"))
        );
        let hex = "ab".repeat(32);
        let (h, r, s) = registry(&format!("ghcr.io/o/app@sha256:{hex}"));
        assert_eq!((h.as_str(), r.as_str()), ("ghcr.io", "o/app"));
        assert_eq!(
            s,
            Selector::Digest(Digest::parse(&format!("sha256:{hex}")).unwrap())
        );
    }

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(
            registry("busybox"),
            (
                "docker.io".into(),
                "library/busybox".into(),
                Selector::Default
            )
        );
        assert_eq!(
            registry("library/busybox:1.36"),
            (
                "docker.io".into(),
                "library/busybox".into(),
                Selector::Tag("1.36".into())
            )
        );
        assert_eq!(
            registry("docker.io/nginx"),
            (
                "docker.io".into(),
                "library/nginx".into(),
                Selector::Default
            )
        );
        let ImageRef::Registry(r) = parse_any("user/app").unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.api_host(), r.repo.as_str()),
            ("registry-1.docker.io", "user/app")
        );
        assert_eq!(r.manifest_ref(), "latest");
    }

    #[test]
    fn hub_and_oci_references() {
        let ImageRef::Hub(r) = parse_any("hub:sensor:1.0").unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.repo.as_str(), r.selector),
            ("sensor", Selector::Tag("1.0".into()))
        );
        assert!(matches!(parse_any("oci:/x/y:t"), Ok(ImageRef::Oci(_))));
        assert!(parse_any("hub:").is_err());
    }

    #[test]
    fn rejects_bad_registry_references() {
        assert!(parse_any("docker://busybox").is_err());
        assert!(parse_any("Busybox").is_err());
        assert!(parse_any("reg.local:99999/app").is_err());
        assert!(parse_any("reg.local/app:").is_err());
        assert!(parse_any("reg.local/app@sha256:short").is_err());
        assert!(parse_any("reg.local//app").is_err());
        assert!(parse_any("").is_err());
    }

    #[test]
    fn rejects_bad_references() {
        assert!(parse("docker://busybox").is_err());
        assert!(parse("oci:").is_err());
        assert!(parse("oci::tag").is_err());
        assert!(parse("oci:/img/app:").is_err());
        assert!(parse("oci:/img/app:bad/tag").is_ok_and(|r| r.selector == Selector::Default));
        assert!(parse("oci:/img/app:t@g").is_err());
        assert!(parse("oci:/img/app@sha256:short").is_err());
    }
}
