//! What a read-only token (dashboards, Prometheus, browsers on other machines) must not
//! see: the values of containers' environment variables. The answers of the routes that
//! show workload templates or desired states (`/v1/devices/{name}`,
//! `/v1/deployments/{name}`) go through [`redact_env`] for such a bearer:
//! every `env` list of `{name, value}` objects keeps its names and gets
//! [`REDACTED`] for each string value. The admin token (on the hub's machine) sees them
//! as applied. Pure; never fails: a body that is not JSON is left as it is.

use serde_json::Value;

/// What replaces a hidden value.
pub const REDACTED: &str = "<redacted>";

/// Bodies larger than this are not rewritten but refused (the routes above answer far
/// less; a device with hundreds of workloads is a few hundred KiB).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Whether the answer to a GET of `path` can hold env values.
pub fn shows_env(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["", "v1", "devices", name] if *name != "import"
    ) || matches!(parts.as_slice(), ["", "v1", "deployments", _])
}

/// Replaces every env value in `v` (any depth) with [`REDACTED`]; returns how many.
pub fn redact_env(v: &mut Value) -> usize {
    match v {
        Value::Object(map) => {
            let mut n = 0;
            for (key, child) in map.iter_mut() {
                if key == "env" {
                    n += redact_list(child);
                }
                n += redact_env(child);
            }
            n
        }
        Value::Array(items) => items.iter_mut().map(redact_env).sum(),
        _ => 0,
    }
}

/// `[{name, value}, …]`: each string `value` becomes [`REDACTED`].
fn redact_list(list: &mut Value) -> usize {
    let Value::Array(items) = list else {
        return 0;
    };
    let mut n = 0;
    for item in items {
        if let Some(value) = item.get_mut("value").filter(|v| v.is_string()) {
            *value = Value::String(REDACTED.to_owned());
            n += 1;
        }
    }
    n
}

/// The body with env values hidden, or `None` when it is not JSON (left as it is).
pub fn redact_body(body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    redact_env(&mut v);
    serde_json::to_vec(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_values_are_hidden_at_any_depth_and_names_kept() {
        let mut v = json!({
            "device": {"name": "pi-1"},
            "desired": [{"containers": [{"name": "main", "env": [
                {"name": "TOKEN", "value": "s3cret"},
                {"name": "FROM", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}
            ]}], "fallback": {"containers": [{"env": [{"name": "OLD", "value": "x"}]}]}}],
            "spec": {"template": {"spec": {"containers": [{"env": [{"name": "A", "value": "1"}]}]}}},
            "value": "not an env value"
        });
        assert_eq!(redact_env(&mut v), 3);
        let text = v.to_string();
        for hidden in ["s3cret", "\"x\"", "\"1\""] {
            assert!(!text.contains(hidden), "{hidden} in {text}");
        }
        assert!(
            text.contains("TOKEN") && text.contains("secretKeyRef"),
            "{text}"
        );
        assert_eq!(v["value"], "not an env value");
        assert_eq!(
            v["desired"][0]["containers"][0]["env"][0]["value"],
            REDACTED
        );
    }

    #[test]
    fn only_routes_with_templates_or_desired_states_are_rewritten() {
        for p in [
            "/v1/devices/pi-1",
            "/v1/deployments/web",
            "/v1/deployments/web/",
        ] {
            assert!(shows_env(p), "{p}");
        }
        for p in [
            "/v1/devices",
            "/v1/deployments",
            "/v1/devices/import",
            "/v1/events",
            "/v1/stats",
            "/v1/deployments/web/rollout",
            "/v1/deployments/web/revisions",
            "/metrics",
            "/",
        ] {
            assert!(!shows_env(p), "{p}");
        }
    }

    #[test]
    fn a_body_that_is_not_json_is_left_alone() {
        assert_eq!(redact_body(b"plain text"), None);
        let out = redact_body(br#"{"env":[{"name":"A","value":"b"}]}"#).unwrap();
        assert_eq!(out, br#"{"env":[{"name":"A","value":"<redacted>"}]}"#);
    }
}
