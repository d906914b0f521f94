//! Label selectors (Kubernetes-style `matchLabels` + `matchExpressions`) and label checks.
//!
//! A [`Selector`] is already validated: the manifest parser builds it from located YAML
//! nodes, and the server stores and reloads it as JSON. This module must never do IO and
//! never report locations: callers that know where a label came from add that.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest label value, and longest name part of a label key.
pub const MAX_LABEL_NAME: usize = 63;
/// Longest prefix (`example.com` in `example.com/zone`) of a label key.
pub const MAX_LABEL_PREFIX: usize = 253;

/// Why a label key, value or `key=value` pair is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "label key {0:?} must be [prefix/]name: name 1-63 characters of [A-Za-z0-9._-] starting and ending with a letter or digit, prefix a DNS subdomain"
    )]
    BadKey(String),
    #[error(
        "label value {0:?} must be at most 63 characters of [A-Za-z0-9._-], starting and ending with a letter or digit (or empty)"
    )]
    BadValue(String),
    #[error("label {0:?} must look like key=value")]
    NoEquals(String),
}

/// Matches a device's labels. An empty selector (no labels, no expressions) matches
/// every device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Every pair must be present with exactly this value.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Every requirement must hold.
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Non-empty for `In`/`NotIn`, empty for `Exists`/`DoesNotExist`.
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label is present, whatever its value.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl Selector {
    /// True when `labels` satisfy every `matchLabels` pair and every expression.
    /// An empty selector matches everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
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
pub fn check_label_key(key: &str) -> Result<(), SelectorError> {
    let ok = match key.split_once('/') {
        None => is_label_name(key),
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
    };
    if ok {
        Ok(())
    } else {
        Err(SelectorError::BadKey(key.to_owned()))
    }
}

/// Checks a label value; the empty value is allowed.
pub fn check_label_value(value: &str) -> Result<(), SelectorError> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(SelectorError::BadValue(value.to_owned()))
    }
}

/// Parses and checks a `key=value` label, as given to `--label`.
pub fn parse_label(s: &str) -> Result<(String, String), SelectorError> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| SelectorError::NoEquals(s.to_owned()))?;
    check_label_key(key)?;
    check_label_value(value)?;
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = Selector::default();
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn operators() {
        let dev = labels(&[("role", "sensor"), ("zone", "a")]);
        let with = |r| Selector {
            match_labels: labels(&[("role", "sensor")]),
            match_expressions: vec![r],
        };
        assert!(with(req("zone", Operator::In, &["a", "b"])).matches(&dev));
        assert!(!with(req("zone", Operator::In, &["c"])).matches(&dev));
        assert!(!with(req("rack", Operator::In, &["a"])).matches(&dev));
        assert!(with(req("zone", Operator::NotIn, &["c"])).matches(&dev));
        assert!(with(req("rack", Operator::NotIn, &["c"])).matches(&dev));
        assert!(!with(req("zone", Operator::NotIn, &["a"])).matches(&dev));
        assert!(with(req("zone", Operator::Exists, &[])).matches(&dev));
        assert!(!with(req("rack", Operator::Exists, &[])).matches(&dev));
        assert!(with(req("rack", Operator::DoesNotExist, &[])).matches(&dev));
        assert!(!with(req("zone", Operator::DoesNotExist, &[])).matches(&dev));
        let other = labels(&[("role", "gateway"), ("zone", "a")]);
        assert!(!with(req("zone", Operator::Exists, &[])).matches(&other));
    }

    #[test]
    fn json_round_trip() {
        let s = Selector {
            match_labels: labels(&[("role", "sensor")]),
            match_expressions: vec![req("zone", Operator::NotIn, &["b"])],
        };
        let json = serde_json::to_string(&s).expect("serializes");
        assert_eq!(
            json,
            r#"{"matchLabels":{"role":"sensor"},"matchExpressions":[{"key":"zone","operator":"NotIn","values":["b"]}]}"#
        );
        assert_eq!(serde_json::from_str::<Selector>(&json).ok(), Some(s));
    }

    #[test]
    fn label_checks() {
        for key in ["zone", "a", "Zone_1.x-y", "example.com/zone", "k8s.io/a"] {
            assert_eq!(check_label_key(key), Ok(()), "{key}");
        }
        let long = "x".repeat(64);
        for key in [
            "", "-a", "a-", "a b", "/a", "a/", "Ex.com/a", "a/b/c", &long,
        ] {
            assert!(check_label_key(key).is_err(), "{key}");
        }
        for value in ["", "a", "v1.2_3-x", &"x".repeat(63)] {
            assert_eq!(check_label_value(value), Ok(()), "{value}");
        }
        for value in ["-a", "a b", "a/b", &long] {
            assert!(check_label_value(value).is_err(), "{value}");
        }
        assert_eq!(parse_label("zone=a"), Ok(("zone".into(), "a".into())));
        assert_eq!(parse_label("zone="), Ok(("zone".into(), String::new())));
        assert_eq!(
            parse_label("zone"),
            Err(SelectorError::NoEquals("zone".into()))
        );
        assert!(parse_label("zone=a=b").is_err());
    }
}
