use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::{HeaderMap, HeaderValue, Method, header};

use super::*;

const TOKEN: &str = "0123456789abcdef";
const REMOTE: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)));

fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(k.clone(), HeaderValue::from_str(v).expect("header"));
    }
    h
}

fn get(access: &ReadAccess, peer: Option<IpAddr>, h: &HeaderMap, target: &str) -> Verdict {
    decide(access, peer, &Method::GET, h, target)
}

#[test]
fn loopback_peers_may_do_anything_without_a_token() {
    let access = ReadAccess::new("");
    let none = HeaderMap::new();
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        // An IPv4 peer on a dual-stack socket.
        "::ffff:127.0.0.1".parse().expect("ip"),
    ] {
        for m in [Method::GET, Method::POST] {
            assert_eq!(
                decide(&access, Some(ip), &m, &none, "/v1/apply"),
                Verdict::Allow
            );
        }
    }
}

#[test]
fn other_peers_are_refused_without_a_configured_token() {
    let access = ReadAccess::new("");
    let h = headers(&[(header::AUTHORIZATION, "Bearer ")]);
    assert_eq!(
        get(&access, REMOTE, &h, "/"),
        Verdict::Deny(Denied::NoToken)
    );
    // No peer address at all counts as another machine.
    assert_eq!(
        get(&access, None, &HeaderMap::new(), "/"),
        Verdict::Deny(Denied::NoToken)
    );
}

#[test]
fn other_peers_read_with_the_token_in_a_header_or_the_cookie() {
    let access = ReadAccess::new(TOKEN);
    for h in [
        headers(&[(header::AUTHORIZATION, &format!("Bearer {TOKEN}"))]),
        headers(&[(header::AUTHORIZATION, &format!("bearer {TOKEN}"))]),
        headers(&[(header::COOKIE, &format!("a=b; {COOKIE}={TOKEN}; c=d"))]),
    ] {
        assert_eq!(
            get(&access, REMOTE, &h, "/v1/devices"),
            Verdict::Allow,
            "{h:?}"
        );
        let head = decide(&access, REMOTE, &Method::HEAD, &h, "/");
        assert_eq!(head, Verdict::Allow);
    }
}

#[test]
fn a_wrong_or_missing_token_is_refused() {
    let access = ReadAccess::new(TOKEN);
    for h in [
        HeaderMap::new(),
        headers(&[(header::AUTHORIZATION, "Bearer 0123456789abcdeF")]),
        headers(&[(header::AUTHORIZATION, "Bearer 0123456789abcde")]),
        headers(&[(header::AUTHORIZATION, &format!("Basic {TOKEN}"))]),
        headers(&[(header::COOKIE, &format!("other={TOKEN}"))]),
        headers(&[(header::COOKIE, &format!("{COOKIE}={TOKEN}x"))]),
    ] {
        assert_eq!(
            get(&access, REMOTE, &h, "/v1/devices?token=nope"),
            Verdict::Deny(Denied::WrongToken),
            "{h:?}"
        );
    }
    // None given at all, or only other credentials: the token is missing, not wrong.
    for h in [
        HeaderMap::new(),
        headers(&[(header::AUTHORIZATION, &format!("Basic {TOKEN}"))]),
        headers(&[(header::COOKIE, &format!("other={TOKEN}"))]),
    ] {
        assert_eq!(
            get(&access, REMOTE, &h, "/v1/devices"),
            Verdict::Deny(Denied::BadToken),
            "{h:?}"
        );
    }
    let wrong = headers(&[(header::AUTHORIZATION, "Bearer nope")]);
    assert_eq!(
        get(&access, REMOTE, &wrong, "/v1/devices"),
        Verdict::Deny(Denied::WrongToken)
    );
}

#[test]
fn no_token_lets_another_machine_change_anything() {
    let access = ReadAccess::new(TOKEN);
    let h = headers(&[
        (header::AUTHORIZATION, &format!("Bearer {TOKEN}")),
        (header::COOKIE, &format!("{COOKIE}={TOKEN}")),
    ]);
    for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let target = format!("/v1/apply?token={TOKEN}");
        assert_eq!(
            decide(&access, REMOTE, &m, &h, &target),
            Verdict::Deny(Denied::Write),
            "{m}"
        );
    }
}

#[test]
fn the_token_in_the_query_sets_the_cookie_and_leaves_the_address() {
    let access = ReadAccess::new(TOKEN);
    let none = HeaderMap::new();
    let cookie =
        format!("{COOKIE}={TOKEN}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict");
    for (target, location) in [
        (format!("/?token={TOKEN}"), "/"),
        (format!("/?a=1&token={TOKEN}&b=2"), "/?a=1&b=2"),
        (format!("/v1/devices?token={TOKEN}&"), "/v1/devices"),
    ] {
        assert_eq!(
            get(&access, REMOTE, &none, &target),
            Verdict::Login {
                location: location.to_owned(),
                set_cookie: cookie.clone()
            }
        );
    }
    assert_eq!(
        get(&access, REMOTE, &none, "/?token="),
        Verdict::Deny(Denied::BadToken)
    );
}

#[test]
fn the_cookie_outlives_a_browser_restart_for_thirty_days() {
    let access = ReadAccess::new(TOKEN);
    let Verdict::Login { set_cookie, .. } = get(
        &access,
        REMOTE,
        &HeaderMap::new(),
        &format!("/?token={TOKEN}"),
    ) else {
        panic!("no login");
    };
    let attrs: Vec<&str> = set_cookie.split("; ").collect();
    assert_eq!(attrs[0], format!("{COOKIE}={TOKEN}"));
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
fn debug_output_hides_the_token() {
    let shown = format!("{:?}", ReadAccess::new(TOKEN));
    assert!(!shown.contains(TOKEN) && shown.contains("<set>"), "{shown}");
}

#[test]
fn the_refusals_say_how_the_cli_sends_the_token_and_whether_one_came() {
    for d in [Denied::BadToken, Denied::WrongToken] {
        let m = d.message();
        assert!(
            m.contains("--token") && m.contains("DROVER_HUB_TOKEN"),
            "{m}"
        );
    }
    assert!(
        Denied::WrongToken
            .message()
            .starts_with("the token given is not the hub's")
    );
    assert!(!Denied::BadToken.message().contains("not the hub's"));
}
