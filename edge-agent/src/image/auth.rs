//! Registry authentication: parsing `WWW-Authenticate` challenges (Basic, Bearer) and
//! building the URL and `Authorization` values they call for.
//!
//! Pure string handling: the token request itself is made by `client.rs`. Credentials
//! must never appear in an error message or a log line.

use base64::Engine as _;

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm").filter(|r| !r.is_empty())?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `key=value` or `key="quoted, value"` pairs separated by commas.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
}

/// The token endpoint URL for a Bearer challenge; the scope defaults to pulling `repo`.
pub fn token_url(realm: &str, service: Option<&str>, scope: Option<&str>, repo: &str) -> String {
    let default_scope = format!("repository:{repo}:pull");
    let mut url = realm.to_string();
    let mut sep = if realm.contains('?') { '&' } else { '?' };
    if let Some(service) = service {
        url.push_str(&format!("{sep}service={}", encode(service)));
        sep = '&';
    }
    let scope = scope.unwrap_or(&default_scope);
    url.push_str(&format!("{sep}scope={}", encode(scope)));
    url
}

/// `Basic base64(user:password)`.
pub fn basic(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The token out of a token endpoint's JSON answer (`token` or `access_token`).
pub fn token_from_json(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["token", "access_token"]
        .iter()
        .find_map(|k| v.get(k)?.as_str().filter(|t| !t.is_empty()))
        .map(str::to_string)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            }
        );
        let c = parse_challenge("bearer realm=http://h/t, service=reg").unwrap();
        assert!(
            matches!(c, Challenge::Bearer { ref realm, service: Some(ref s), scope: None } if realm == "http://h/t" && s == "reg")
        );
    }

    #[test]
    fn parses_basic_and_rejects_others() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn token_url_and_values() {
        assert_eq!(
            token_url("https://a/token", Some("reg"), None, "library/busybox"),
            "https://a/token?service=reg&scope=repository%3Alibrary%2Fbusybox%3Apull"
        );
        assert_eq!(
            token_url("https://a/token?x=1", None, Some("s"), "r"),
            "https://a/token?x=1&scope=s"
        );
        assert_eq!(basic("dev", "secret"), "Basic ZGV2OnNlY3JldA==");
        assert_eq!(
            token_from_json(br#"{"access_token":"t1"}"#),
            Some("t1".into())
        );
        assert_eq!(
            token_from_json(br#"{"token":"t2","access_token":""}"#),
            Some("t2".into())
        );
        assert_eq!(token_from_json(b"{}"), None);
    }
}
