use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::{HeaderMap, HeaderValue, Method, header};

use super::*;

const ADMIN: &str = "admin0123456789abcdef";
const READ: &str = "read0123456789abcdef";
/// `[api] token` from the config: one more read token.
const EXTRA: &str = "0123456789abcdef";
const REMOTE: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)));
const LOCAL: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));

fn access() -> ApiAccess {
    let tokens = Tokens {
        admin: ADMIN.to_owned(),
        read: READ.to_owned(),
    };
    ApiAccess::new(&tokens, EXTRA, Path::new("/var/lib/drover-hub"))
}

fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(k.clone(), HeaderValue::from_str(v).expect("header"));
    }
    h
}

fn bearer(t: &str) -> HeaderMap {
    headers(&[(header::AUTHORIZATION, &format!("Bearer {t}"))])
}

fn get(peer: Option<IpAddr>, h: &HeaderMap, target: &str) -> Verdict {
    decide(&access(), peer, &Method::GET, h, target)
}

#[test]
fn loopback_without_a_token_is_refused_with_where_the_tokens_are() {
    let none = HeaderMap::new();
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        // An IPv4 peer on a dual-stack socket.
        "::ffff:127.0.0.1".parse().expect("ip"),
    ] {
        for (m, target) in [
            (Method::GET, "/v1/devices"),
            (Method::POST, "/v1/apply"),
            (Method::GET, "/metrics"),
            (Method::GET, "/"),
        ] {
            assert_eq!(
                decide(&access(), Some(ip), &m, &none, target),
                Verdict::Deny(Denied::NoToken),
                "{m} {target}"
            );
        }
    }
    let m = Denied::NoToken.message("/var/lib/drover-hub");
    assert!(
        m.contains("/var/lib/drover-hub/api.token") && m.contains("/var/lib/drover-hub/read.token"),
        "{m}"
    );
    assert!(
        m.contains("--token-file") && m.contains("DROVER_HUB_TOKEN"),
        "{m}"
    );
    assert_eq!(Denied::NoToken.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn the_admin_token_may_do_anything_from_loopback_and_only_read_from_elsewhere() {
    for m in [Method::GET, Method::HEAD, Method::POST, Method::DELETE] {
        assert_eq!(
            decide(&access(), LOCAL, &m, &bearer(ADMIN), "/v1/apply"),
            Verdict::Allow(Level::Admin),
            "{m}"
        );
    }
    let lower = headers(&[(header::AUTHORIZATION, &format!("bearer {ADMIN}"))]);
    assert_eq!(
        get(REMOTE, &lower, "/v1/devices"),
        Verdict::Allow(Level::Admin)
    );
    for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        assert_eq!(
            decide(&access(), REMOTE, &m, &bearer(ADMIN), "/v1/apply"),
            Verdict::Deny(Denied::RemoteWrite),
            "{m}"
        );
        // No peer address at all counts as another machine.
        assert_eq!(
            decide(&access(), None, &m, &bearer(ADMIN), "/v1/apply"),
            Verdict::Deny(Denied::RemoteWrite),
            "{m}"
        );
    }
    assert_eq!(Denied::RemoteWrite.status(), StatusCode::FORBIDDEN);
}

#[test]
fn read_tokens_read_from_anywhere_and_never_change_anything() {
    for token in [READ, EXTRA] {
        for h in [
            bearer(token),
            headers(&[(header::COOKIE, &format!("a=b; {COOKIE}={token}; c=d"))]),
        ] {
            for peer in [LOCAL, REMOTE] {
                let read = Verdict::Allow(Level::Read);
                assert_eq!(get(peer, &h, "/v1/devices"), read, "{h:?}");
                let head = decide(&access(), peer, &Method::HEAD, &h, "/");
                assert_eq!(head, Verdict::Allow(Level::Read));
                for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
                    assert_eq!(
                        decide(&access(), peer, &m, &h, "/v1/apply"),
                        Verdict::Deny(Denied::ReadOnly),
                        "{m} {h:?}"
                    );
                }
            }
        }
        let target = format!("/v1/apply?token={token}");
        let post = decide(&access(), LOCAL, &Method::POST, &HeaderMap::new(), &target);
        assert_eq!(post, Verdict::Deny(Denied::ReadOnly));
    }
    let m = Denied::ReadOnly.message("/d");
    assert!(m.contains("/d/api.token"), "{m}");
    assert_eq!(Denied::ReadOnly.status(), StatusCode::FORBIDDEN);
}

#[test]
fn a_wrong_token_is_refused_and_a_missing_one_is_told_apart() {
    for h in [
        bearer("0123456789abcdeF"),
        bearer("0123456789abcde"),
        bearer(&format!("{ADMIN}x")),
        headers(&[(header::COOKIE, &format!("{COOKIE}={READ}x"))]),
        HeaderMap::new(),
    ] {
        assert_eq!(
            get(LOCAL, &h, "/v1/devices?token=nope"),
            Verdict::Deny(Denied::WrongToken),
            "{h:?}"
        );
    }
    // None given at all, or only other credentials: the token is missing, not wrong.
    for h in [
        HeaderMap::new(),
        headers(&[(header::AUTHORIZATION, "Bearer ")]),
        headers(&[(header::AUTHORIZATION, &format!("Basic {READ}"))]),
        headers(&[(header::COOKIE, &format!("other={READ}"))]),
    ] {
        assert_eq!(
            get(REMOTE, &h, "/v1/devices"),
            Verdict::Deny(Denied::NoToken),
            "{h:?}"
        );
    }
    let m = Denied::WrongToken.message("/d");
    assert!(m.starts_with("the token given is none of the hub's"), "{m}");
    assert!(!Denied::NoToken.message("/d").contains("none of the hub's"));
}

#[test]
fn the_admin_token_never_goes_into_a_browser() {
    let none = HeaderMap::new();
    let target = format!("/?token={ADMIN}");
    assert_eq!(
        get(LOCAL, &none, &target),
        Verdict::Deny(Denied::AdminInBrowser)
    );
    let cookie = headers(&[(header::COOKIE, &format!("{COOKIE}={ADMIN}"))]);
    for m in [Method::GET, Method::POST] {
        assert_eq!(
            decide(&access(), LOCAL, &m, &cookie, "/v1/apply"),
            Verdict::Deny(Denied::AdminInBrowser),
            "{m}"
        );
    }
    let m = Denied::AdminInBrowser.message("/d");
    assert!(m.contains("/d/read.token") && !m.contains(ADMIN), "{m}");
}

#[test]
fn the_read_token_in_the_query_sets_the_cookie_and_leaves_the_address() {
    let none = HeaderMap::new();
    let cookie =
        format!("{COOKIE}={READ}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict");
    for (target, location) in [
        (format!("/?token={READ}"), "/"),
        (format!("/?a=1&token={READ}&b=2"), "/?a=1&b=2"),
        (format!("/v1/devices?token={READ}&"), "/v1/devices"),
    ] {
        for peer in [LOCAL, REMOTE] {
            assert_eq!(
                get(peer, &none, &target),
                Verdict::Login {
                    location: location.to_owned(),
                    set_cookie: cookie.clone()
                }
            );
        }
    }
    assert_eq!(
        get(REMOTE, &none, "/?token="),
        Verdict::Deny(Denied::NoToken)
    );
}

#[test]
fn the_cookie_outlives_a_browser_restart_for_thirty_days() {
    let Verdict::Login { set_cookie, .. } =
        get(REMOTE, &HeaderMap::new(), &format!("/?token={READ}"))
    else {
        panic!("no login");
    };
    let attrs: Vec<&str> = set_cookie.split("; ").collect();
    assert_eq!(attrs[0], format!("{COOKIE}={READ}"));
    // A cookie without Max-Age or Expires is a session cookie, gone at the next start.
    assert!(attrs.contains(&"Max-Age=2592000"), "{set_cookie}");
    assert!(
        !attrs.iter().any(|a| a.starts_with("Expires")),
        "{set_cookie}"
    );
    for a in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&a), "{a} missing: {set_cookie}");
    }
}

#[test]
fn debug_output_and_refusals_hide_the_tokens() {
    let shown = format!("{:?}", access());
    for t in [ADMIN, READ, EXTRA] {
        assert!(!shown.contains(t), "{shown}");
    }
    for d in [
        Denied::NoToken,
        Denied::WrongToken,
        Denied::AdminInBrowser,
        Denied::ReadOnly,
        Denied::RemoteWrite,
    ] {
        let m = d.message("/d");
        assert!(!m.contains(ADMIN) && !m.contains(READ), "{m}");
    }
}
