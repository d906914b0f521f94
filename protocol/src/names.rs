//! Validated identifiers: device, workload, container and volume names.
//!
//! A `Name` is a DNS label (RFC 1123): 1–63 characters, lowercase ASCII letters, digits
//! and `-`, starting and ending with a letter or digit. Names end up in file paths,
//! cgroup paths, container ids and MQTT topics, so nothing else may ever get through.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted name, as for a DNS label.
pub const MAX_NAME_LEN: usize = 63;

/// A validated name; see the module docs for the rules.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name {0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error(
        "name {0:?} may contain only lowercase letters, digits and '-', and must start and end with a letter or digit"
    )]
    BadChar(String),
}

impl Name {
    /// Checks `s` and wraps it.
    pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
        let s = s.into();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(s));
        }
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !s.chars().all(ok_char) || s.starts_with('-') || s.ends_with('-') {
            return Err(NameError::BadChar(s));
        }
        Ok(Name(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Name::new(s)
    }
}

impl TryFrom<&str> for Name {
    type Error = NameError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Name::new(s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "web", "sensor-1", "0abc", &"x".repeat(63)] {
            assert!(Name::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        for bad in ["-a", "a-", "A", "a_b", "a.b", "a/b", "..", "a b", "é"] {
            assert!(
                matches!(Name::new(bad), Err(NameError::BadChar(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Name::new("x".repeat(64)),
            Err(NameError::TooLong(_))
        ));
    }
}
