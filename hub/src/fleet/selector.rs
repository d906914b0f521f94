//! Label selectors (Kubernetes-style `matchLabels` + `matchExpressions`) and label checks.
//!
//! A [`Selector`] is already validated: the manifest parser builds it from located YAML
//! nodes, and the server stores and reloads it as JSON. This module must never do IO and
//! never report locations: callers that know where a label came from add that.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use drover_protocol::labels::{LabelError, MAX_LABEL_NAME, MAX_LABEL_PREFIX};

/// Why a label key, value or `key=value` pair is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(transparent)]
    Label(#[from] LabelError),
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

/// Checks a label key: `name` or `prefix/name` (`example.com/zone`).
pub fn check_label_key(key: &str) -> Result<(), SelectorError> {
    Ok(drover_protocol::labels::check_label_key(key)?)
}

/// Checks a label value; the empty value is allowed.
pub fn check_label_value(value: &str) -> Result<(), SelectorError> {
    Ok(drover_protocol::labels::check_label_value(value)?)
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
