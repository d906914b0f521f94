//! The query of `GET /v1/devices/{name}/logs/{workload}`, parsed into a [`LogsRequest`]
//! with an error that names the parameter and shows what was expected.
//!
//! Every parameter arrives as text and is parsed here, so that a bad value is a JSON
//! `{"error", "kind"}` answer rather than axum's plain-text rejection (the other routes'
//! [`crate::api::ApiQuery`] has no `kind`). This module does no IO.

use std::str::FromStr;

use axum::extract::rejection::QueryRejection;
use drover_protocol::Name;
use drover_protocol::command::LogsRequest;
use drover_protocol::quantity::{ByteSize, DurationMs};
use serde::Deserialize;

/// Output sent for one `logs` request at most, unless `limit_bytes` says otherwise.
pub const DEFAULT_LIMIT_BYTES: u32 = 8 * 1024 * 1024;

/// The query as sent: all text, checked by [`LogsQuery::request`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    pub container: Option<String>,
    /// `true` or `false`.
    pub follow: Option<String>,
    /// A number of lines, 0 or more.
    pub tail: Option<String>,
    /// A duration like `10m`, `90s`, `2h`.
    pub since: Option<String>,
    /// Bytes, with or without a unit: `65536`, `64KiB`, `1Mi`, `500k`.
    pub limit_bytes: Option<String>,
}

/// A query parameter that does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct QueryError {
    pub param: &'static str,
    pub message: String,
}

fn bad(param: &'static str, message: impl Into<String>) -> QueryError {
    QueryError {
        param,
        message: message.into(),
    }
}

/// A query axum could not even split into parameters (an unknown or repeated one).
pub fn rejected(r: &QueryRejection) -> QueryError {
    let text = r.body_text();
    let message = crate::api::rejection_detail(&text);
    bad(
        "query",
        format!("{message} (parameters: container, follow, tail, since, limit_bytes)"),
    )
}

impl LogsQuery {
    /// The request for `workload`; `Ok` only when every parameter parses.
    pub fn request(&self, workload: &str) -> Result<LogsRequest, QueryError> {
        Ok(LogsRequest {
            workload: name("workload", workload)?,
            container: self
                .container
                .as_deref()
                .map(|c| name("container", c))
                .transpose()?,
            follow: self.follow()?,
            tail: self.tail.as_deref().map(tail).transpose()?,
            since_s: self.since.as_deref().map(since_s).transpose()?,
            max_bytes: match self.limit_bytes.as_deref() {
                Some(b) => limit_bytes(b).map_err(|m| bad("limit_bytes", m))?,
                None => DEFAULT_LIMIT_BYTES,
            },
        })
    }

    fn follow(&self) -> Result<bool, QueryError> {
        match self.follow.as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(bad(
                "follow",
                format!("expected true or false, got {other:?}"),
            )),
        }
    }
}

fn name(param: &'static str, s: &str) -> Result<Name, QueryError> {
    Name::new(s).map_err(|e| bad(param, e.to_string()))
}

fn tail(s: &str) -> Result<u32, QueryError> {
    s.parse().map_err(|_| {
        bad(
            "tail",
            format!("expected a number of lines (0 or more), got {s:?}"),
        )
    })
}

fn since_s(s: &str) -> Result<u64, QueryError> {
    // The error shows examples already: no hint of our own.
    let d = DurationMs::from_str(s).map_err(|e| bad("since", e.to_string()))?;
    Ok(d.0.div_ceil(1000))
}

/// `--limit-bytes`: a size with or without a unit (`65536`, `64KiB`, `1Mi`, `500k`) that
/// fits the request's 32 bits.
pub fn limit_bytes(s: &str) -> Result<u32, String> {
    let size = ByteSize::from_str(s).map_err(|e| e.to_string())?;
    u32::try_from(size.0)
        .map_err(|_| format!("{s:?} is more than the 4 GiB - 1 a logs request can ask for"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> LogsQuery {
        let mut q = LogsQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "follow" => q.follow = v,
                "tail" => q.tail = v,
                "since" => q.since = v,
                "limit_bytes" => q.limit_bytes = v,
                "container" => q.container = v,
                _ => unreachable!(),
            }
        }
        q
    }

    #[test]
    fn a_good_query_becomes_a_request() {
        let q = query(&[
            ("follow", "true"),
            ("tail", "3"),
            ("since", "1500ms"),
            ("limit_bytes", "64KiB"),
            ("container", "app"),
        ]);
        let r = q.request("web").unwrap();
        assert!(r.follow);
        assert_eq!(r.tail, Some(3));
        assert_eq!(r.since_s, Some(2), "rounded up: never less than asked");
        assert_eq!(r.max_bytes, 64 * 1024);
        assert_eq!(r.container.unwrap().as_str(), "app");
        let r = LogsQuery::default().request("web").unwrap();
        assert_eq!((r.follow, r.max_bytes), (false, DEFAULT_LIMIT_BYTES));
    }

    #[test]
    fn a_bad_parameter_is_named_and_hinted_once() {
        let e = query(&[("tail", "-1")]).request("web").unwrap_err();
        assert_eq!(e.param, "tail");
        assert!(e.message.contains("\"-1\""), "{e}");
        let e = query(&[("since", "abc")]).request("web").unwrap_err();
        assert_eq!(e.param, "since");
        assert_eq!(e.to_string().matches("like").count(), 1, "{e}");
        let e = query(&[("follow", "yes")]).request("web").unwrap_err();
        assert_eq!(e.param, "follow");
        let e = query(&[("limit_bytes", "8GiB")])
            .request("web")
            .unwrap_err();
        assert_eq!(e.param, "limit_bytes");
        let e = query(&[("container", "Bad_Name")])
            .request("web")
            .unwrap_err();
        assert_eq!(e.param, "container");
        assert_eq!(
            LogsQuery::default().request("-x").unwrap_err().param,
            "workload"
        );
    }

    #[test]
    fn limit_bytes_takes_units() {
        assert_eq!(limit_bytes("1000"), Ok(1000));
        assert_eq!(limit_bytes("500k"), Ok(500_000));
        assert_eq!(limit_bytes("64KiB"), Ok(65_536));
        assert_eq!(limit_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(limit_bytes("1Mi"), Ok(1 << 20));
        assert!(limit_bytes("4GiB").unwrap_err().contains("4 GiB - 1"));
        assert!(limit_bytes("12 parsecs").unwrap_err().contains("64Mi"));
        assert!(limit_bytes("").is_err());
    }
}
