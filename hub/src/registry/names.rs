//! Validated repository names, tags and digests: the only strings from a request or a
//! layout that may become part of a file path or an index key.

use std::fmt;

use super::RegistryError;

/// A `sha256:<64 lowercase hex>` digest (the only algorithm the hub stores).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, RegistryError> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            RegistryError::Invalid(format!(
                "unsupported digest {s:?}: expected sha256:<64 hex digits>"
            ))
        })?;
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(RegistryError::Invalid(format!(
                "bad digest {s:?}: expected sha256:<64 lowercase hex digits>"
            )));
        }
        Ok(Digest(s.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::{Digest as _, Sha256};
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A repository name as the OCI distribution spec allows it: `/`-separated components of
/// `[a-z0-9]+` joined by `.`, `_`, `__` or dashes; 255 characters at most.
pub fn check_name(name: &str) -> Result<(), RegistryError> {
    let bad = || {
        RegistryError::Invalid(format!(
            "bad image name {name:?}: expected lowercase components like \"tools/busybox\" \
             ([a-z0-9] joined by '.', '_', '__' or '-', separated by '/')"
        ))
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad());
    }
    if name.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), RegistryError> {
    let b = tag.as_bytes();
    let first = b
        .first()
        .is_some_and(|&x| x.is_ascii_alphanumeric() || x == b'_');
    let rest = b
        .iter()
        .all(|&x| x.is_ascii_alphanumeric() || b"._-".contains(&x));
    if first && rest && b.len() <= 128 {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "bad tag {tag:?}: expected [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
        )))
    }
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
        check_tag("1.36_x-y").unwrap();
        assert!(check_tag(".x").is_err() && check_tag("").is_err() && check_tag("a:b").is_err());
        let d = Digest::of(b"x");
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Digest::parse(&d.as_str().to_uppercase()).is_err());
        assert!(Digest::parse("sha512:00").is_err());
    }
}
