//! Validated repository names, tags and digests: the only strings from a request or a
//! layout that may become part of a file path or an index key. The rules are the
//! protocol's (`drover_protocol::image_ref`, `drover_protocol::digest`); this module only
//! turns a refusal into a [`RegistryError`].

pub use drover_protocol::Digest;
use drover_protocol::image_ref::{MAX_REPO_LEN, is_repository, is_tag};

use super::RegistryError;

/// A repository name as the OCI distribution spec allows it: `/`-separated components of
/// `[a-z0-9]+` joined by `.`, `_`, `__` or dashes; 255 characters at most.
pub fn check_name(name: &str) -> Result<(), RegistryError> {
    if is_repository(name) {
        return Ok(());
    }
    Err(RegistryError::Invalid(format!(
        "bad image name {name:?}: expected lowercase components like \"tools/busybox\" \
         ([a-z0-9] joined by '.', '_', '__' or '-', separated by '/'), at most {MAX_REPO_LEN} characters"
    )))
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), RegistryError> {
    if is_tag(tag) {
        return Ok(());
    }
    Err(RegistryError::Invalid(format!(
        "bad tag {tag:?}: expected [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tags_and_digests() {
        for ok in ["busybox", "tools/busy-box", "a.b_c__d--e/f", "x/y/z9"] {
            check_name(ok).unwrap();
        }
        for bad in [
            "", "Busybox", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a/../b", "a b",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&"a".repeat(256)).is_err());
        check_tag("1.36_x-y").unwrap();
        assert!(check_tag(".x").is_err() && check_tag("").is_err() && check_tag("a:b").is_err());
        let d = Digest::of(b"x");
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Digest::parse(&d.as_str().to_uppercase()).is_err());
        assert!(Digest::parse("sha512:00").is_err());
    }
}
