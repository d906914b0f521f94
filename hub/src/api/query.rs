//! [`ApiQuery`]: axum's `Query` whose rejection is the API's JSON error body
//! (`{"error": "..."}`, 400) instead of axum's plain text, naming the parameter that did
//! not parse and what the route expects. Every `/v1` route with a query string takes its
//! parameters through it.
//!
//! This module must never decide anything about the parameters beyond parsing them.

use axum::Json;
use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::views::{DryRunQuery, ErrorBody};

/// What a route's query string may hold, said in its error when it does not parse.
pub trait QueryHelp {
    /// Every parameter and what it takes, e.g. `minutes=N (whole minutes, 1 to 10080)`.
    const EXPECTED: &'static str;
}

impl QueryHelp for DryRunQuery {
    const EXPECTED: &'static str = "dry_run=true|false (optional)";
}

/// The query string parsed into `T` (a `#[serde(deny_unknown_fields)]` struct), or a 400
/// with `{"error": "bad query string \"minutes=abc\": minutes: invalid digit found in
/// string; expected minutes=N (…)"}`.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + QueryHelp,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(q)) => Ok(ApiQuery(q)),
            Err(e) => {
                let query = parts.uri.query().unwrap_or_default();
                let error = message(query, &e.body_text(), T::EXPECTED);
                Err((StatusCode::BAD_REQUEST, Json(ErrorBody { error })).into_response())
            }
        }
    }
}

/// The error text from axum's rejection text (`Failed to deserialize query string:
/// minutes: invalid digit found in string`).
fn message(query: &str, rejection: &str, expected: &str) -> String {
    let detail = rejection_detail(rejection);
    let shown: String = query.chars().take(200).collect();
    format!("bad query string {shown:?}: {detail}; expected {expected}")
}

/// axum's rejection text without its `Failed to deserialize query string: ` prefix.
pub(crate) fn rejection_detail(rejection: &str) -> &str {
    rejection
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(rejection)
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use axum::routing::get;
    use serde::Deserialize;
    use tower::ServiceExt;

    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        minutes: Option<u64>,
    }

    impl QueryHelp for Q {
        const EXPECTED: &'static str = "minutes=N (whole minutes)";
    }

    async fn call(uri: &str) -> (StatusCode, serde_json::Value) {
        let app: Router = Router::new().route(
            "/q",
            get(|ApiQuery(q): ApiQuery<Q>| async move { Json(q.minutes) }),
        );
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        let body = to_bytes(res.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn bad_parameters_get_the_json_error_naming_the_parameter() {
        assert_eq!(call("/q?minutes=5").await, (StatusCode::OK, 5.into()));
        assert_eq!(call("/q").await, (StatusCode::OK, serde_json::Value::Null));
        let (code, body) = call("/q?minutes=abc").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["error"],
            "bad query string \"minutes=abc\": minutes: invalid digit found in string; \
             expected minutes=N (whole minutes)"
        );
        let (code, body) = call("/q?minute=5").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let e = body["error"].as_str().unwrap();
        assert!(
            e.contains("unknown field `minute`, expected `minutes`"),
            "{e}"
        );
    }
}
