//! The OCI distribution spec's grammar for repositories and tags, and `host[:port]`:
//! pure predicates on strings, shared by [`ImageRef`](super::ImageRef) parsing and the
//! hub's registry (which checks the names and tags of requests and imports with them).

use super::MAX_REPO_LEN;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
pub fn is_path_component(c: &str) -> bool {
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let b = c.as_bytes();
    let separator =
        |sep: &[u8]| matches!(sep, b"" | b"." | b"_" | b"__") || sep.iter().all(|&x| x == b'-');
    b.first().is_some_and(alnum) && b.last().is_some_and(alnum) && b.split(alnum).all(separator)
}

/// Checks a repository path (`tools/busybox`) against the distribution spec.
pub fn is_repository(repo: &str) -> bool {
    repo.len() <= MAX_REPO_LEN && repo.split('/').all(is_path_component)
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`
pub fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    b.first()
        .is_some_and(|&x| x.is_ascii_alphanumeric() || x == b'_')
        && b.len() <= 128
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || b"._-".contains(&x))
}

/// `name[:port]`: DNS-style labels or a bracketed IPv6 address; port 1-65535.
pub fn is_host(host: &str) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let (name_ok, port) = match host.strip_prefix('[') {
        Some(v6) => {
            let Some((addr, after)) = v6.split_once(']') else {
                return false;
            };
            let addr_ok =
                !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
            match after.strip_prefix(':') {
                _ if after.is_empty() => (addr_ok, None),
                Some(port) => (addr_ok, Some(port)),
                None => return false,
            }
        }
        None => match host.rsplit_once(':') {
            Some((n, p)) => (n.split('.').all(label), Some(p)),
            None => (host.split('.').all(label), None),
        },
    };
    let port_ok = port.is_none_or(|p| {
        p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
    });
    name_ok && port_ok
}
