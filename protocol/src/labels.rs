//! Label keys and values, with Kubernetes' rules: a key is `name` or `prefix/name`
//! (`example.com/zone`), a value is empty or a name. Devices, Deployments and workloads
//! carry them; selectors match on them.
//!
//! Pure checks on strings; callers that know where a label was written add the location.

/// Longest label value, and longest name part of a label key.
pub const MAX_LABEL_NAME: usize = 63;
/// Longest prefix (`example.com` in `example.com/zone`) of a label key.
pub const MAX_LABEL_PREFIX: usize = 253;

/// Why a label key or value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error(
        "label key {0:?} must be [prefix/]name: name 1-63 characters of [A-Za-z0-9._-] starting and ending with a letter or digit, prefix a DNS subdomain"
    )]
    BadKey(String),
    #[error(
        "label value {0:?} must be at most 63 characters of [A-Za-z0-9._-], starting and ending with a letter or digit (or empty)"
    )]
    BadValue(String),
}

/// The name part of a key, or a value: letters, digits, `._-`, alphanumeric at both ends.
fn is_label_name(s: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.len() <= MAX_LABEL_NAME
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && alnum(s.chars().next())
        && alnum(s.chars().last())
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= MAX_LABEL_PREFIX
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= MAX_LABEL_NAME
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Checks a label key: `name` or `prefix/name` (`example.com/zone`).
pub fn check_label_key(key: &str) -> Result<(), LabelError> {
    let ok = match key.split_once('/') {
        None => is_label_name(key),
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
    };
    if ok {
        Ok(())
    } else {
        Err(LabelError::BadKey(key.to_owned()))
    }
}

/// Checks a label value; the empty value is allowed.
pub fn check_label_value(value: &str) -> Result<(), LabelError> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(LabelError::BadValue(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values() {
        for key in ["zone", "a", "Zone_1.x-y", "example.com/zone", "k8s.io/a"] {
            assert_eq!(check_label_key(key), Ok(()), "{key}");
        }
        let long = "x".repeat(64);
        for key in [
            "", "-a", "a-", "a b", "/a", "a/", "Ex.com/a", "a/b/c", &long,
        ] {
            assert_eq!(check_label_key(key), Err(LabelError::BadKey(key.into())));
        }
        for value in ["", "a", "v1.2_3-x", &"x".repeat(63)] {
            assert_eq!(check_label_value(value), Ok(()), "{value}");
        }
        for value in ["-a", "a b", "a/b", &long] {
            assert_eq!(
                check_label_value(value),
                Err(LabelError::BadValue(value.into()))
            );
        }
    }
}
