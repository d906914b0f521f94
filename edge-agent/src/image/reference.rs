//! Parsing of image references: `oci:/path/to/layout[:tag|@sha256:<hex>]`.
//!
//! Pure string handling: it never touches the filesystem.

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

/// Parses `oci:PATH[:TAG|@sha256:HEX]`. The tag separator is the last `:` after the
/// last `/`, so paths may contain `:` in earlier components.
pub fn parse(reference: &str) -> Result<Reference, String> {
    let rest = reference
        .strip_prefix("oci:")
        .ok_or("expected `oci:/path/to/layout[:tag|@sha256:<hex>]` (only OCI layout folders are supported)")?;
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
