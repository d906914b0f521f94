//! Where registry credentials may go: never over plain HTTP to a host beyond this
//! machine, and never to a Bearer token realm on another host than the registry (a
//! registry could otherwise name any server as its realm and collect the device's
//! password).
//!
//! Pure checks on URLs, except that a host name counts as loopback when it resolves
//! only to loopback addresses. This module must never log or return a credential.

use std::net::{IpAddr, ToSocketAddrs};

/// The scheme (`http` / `https`), lower-case host (IPv6 brackets off) and port of a URL.
pub fn url_parts(url: &str) -> Option<(String, String, Option<u16>)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (h, after) = inner.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    (!host.is_empty()).then(|| (scheme, host.to_ascii_lowercase(), port))
}

/// A loopback IP literal or `localhost`.
pub fn is_loopback_literal(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Loopback: a literal, or a name that resolves only to loopback addresses.
fn is_loopback(host: &str, port: u16) -> bool {
    if is_loopback_literal(host) {
        return true;
    }
    if host.parse::<IpAddr>().is_ok() {
        return false;
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// May credentials be sent to `url`? `https://` anywhere; `http://` only to this machine.
pub fn may_send(url: &str) -> Result<(), String> {
    let Some((scheme, host, port)) = url_parts(url) else {
        return Err(format!(
            "credentials not sent: {url:?} is not an http(s) URL"
        ));
    };
    if scheme == "https" || is_loopback(&host, port.unwrap_or(80)) {
        return Ok(());
    }
    Err(format!(
        "credentials are never sent over plain HTTP to another machine ({host}): use an \
         https:// registry URL (the hub serves one, see [api] tls_listen)"
    ))
}

/// May the registry at `base` have its credentials sent to the token `realm`? Only on
/// the same host, and by [`may_send`]'s rule.
pub fn realm_allowed(base: &str, realm: &str) -> Result<(), String> {
    let host = |u: &str| url_parts(u).map(|(_, h, _)| h);
    match (host(base), host(realm)) {
        (Some(b), Some(r)) if b == r => may_send(realm),
        (Some(b), Some(r)) => Err(format!(
            "the registry {b} names a token realm on another host ({r}): its credentials \
             are only sent to {b} itself"
        )),
        _ => Err(format!(
            "credentials not sent: the token realm {realm:?} is not an http(s) URL"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_host_and_port() {
        let p = |u: &str| url_parts(u).map(|(s, h, p)| format!("{s} {h} {p:?}"));
        assert_eq!(
            p("https://Hub.Lan:7443/v2/").as_deref(),
            Some("https hub.lan Some(7443)")
        );
        assert_eq!(p("http://[::1]:80").as_deref(), Some("http ::1 Some(80)"));
        assert_eq!(
            p("http://u:p@evil.example/x").as_deref(),
            Some("http evil.example None")
        );
        assert_eq!(p("ftp://x"), None);
        assert_eq!(p("http://"), None);
        assert_eq!(p("http://h:notaport"), None);
    }

    #[test]
    fn plain_http_carries_credentials_only_to_this_machine() {
        assert!(may_send("https://hub.lan:7443").is_ok());
        assert!(may_send("http://127.0.0.1:7780").is_ok());
        assert!(may_send("http://localhost:7780").is_ok());
        assert!(may_send("http://[::1]:7780").is_ok());
        let e = may_send("http://10.1.2.3:7780").unwrap_err();
        assert!(e.contains("plain HTTP") && e.contains("10.1.2.3"), "{e}");
        // A name that does not resolve is not taken for loopback.
        assert!(may_send("http://no-such-host.invalid:7780").is_err());
    }

    #[test]
    fn a_token_realm_on_another_host_never_gets_the_credentials() {
        assert!(realm_allowed("https://reg.example", "https://reg.example/token").is_ok());
        assert!(realm_allowed("https://reg.example:5000", "https://REG.example/t").is_ok());
        let e = realm_allowed("https://reg.example", "https://evil.example/token").unwrap_err();
        assert!(e.contains("another host (evil.example)"), "{e}");
        let e = realm_allowed("http://10.0.0.5:5000", "http://10.0.0.5:5000/t").unwrap_err();
        assert!(e.contains("plain HTTP"), "{e}");
        assert!(realm_allowed("https://reg.example", "token").is_err());
    }
}
