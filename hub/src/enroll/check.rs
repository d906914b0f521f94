//! The pure decisions of enrollment: may this token be used now, and may this address
//! try to join now. No IO, no clock (the caller passes `now_ms`).

use std::collections::HashMap;
use std::net::IpAddr;

use subtle::ConstantTimeEq;

use crate::store::tokens::TokenRow;

/// Why a join token was refused. The client always gets the same 401 (no oracle); the
/// hub logs and counts the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    WrongSecret,
    Expired,
    UsedUp,
    Revoked,
}

impl TokenRefusal {
    pub const ALL: [TokenRefusal; 5] = [
        TokenRefusal::Unknown,
        TokenRefusal::WrongSecret,
        TokenRefusal::Expired,
        TokenRefusal::UsedUp,
        TokenRefusal::Revoked,
    ];

    /// The reason's name in logs and in the `join_refused_<reason>` counter.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRefusal::Unknown => "unknown_token",
            TokenRefusal::WrongSecret => "wrong_secret",
            TokenRefusal::Expired => "expired",
            TokenRefusal::UsedUp => "used_up",
            TokenRefusal::Revoked => "revoked",
        }
    }
}

/// May `row` (None: no token of that id) be used with `secret` at `now_ms`? The secret
/// is compared in constant time, and first: nothing about a token is told to someone who
/// does not hold its secret (they all get the same answer anyway).
pub fn check_token(row: Option<&TokenRow>, secret: &str, now_ms: u64) -> Result<(), TokenRefusal> {
    let Some(row) = row else {
        return Err(TokenRefusal::Unknown);
    };
    let given = drover_protocol::join::secret_sha256(secret);
    if !bool::from(given.ct_eq(&row.secret_sha256)) {
        return Err(TokenRefusal::WrongSecret);
    }
    if row.revoked_ms.is_some() {
        return Err(TokenRefusal::Revoked);
    }
    if now_ms >= row.expires_ms {
        return Err(TokenRefusal::Expired);
    }
    if row.uses_left == 0 {
        return Err(TokenRefusal::UsedUp);
    }
    Ok(())
}

/// Join attempts per address: at most `burst` in any `window_ms` (a fixed window per
/// address, reset when it is over). Bounded: beyond `MAX_ADDRESSES` the table restarts.
#[derive(Debug)]
pub struct JoinLimit {
    burst: u32,
    window_ms: u64,
    seen: HashMap<IpAddr, (u64, u32)>,
}

const MAX_ADDRESSES: usize = 10_000;

impl JoinLimit {
    pub fn new(burst: u32, window_ms: u64) -> JoinLimit {
        JoinLimit {
            burst,
            window_ms,
            seen: HashMap::new(),
        }
    }

    /// True when `addr` may try now (and counts the try).
    pub fn allow(&mut self, addr: IpAddr, now_ms: u64) -> bool {
        if self.seen.len() >= MAX_ADDRESSES && !self.seen.contains_key(&addr) {
            self.seen.clear();
        }
        let (start, n) = self.seen.entry(addr).or_insert((now_ms, 0));
        if now_ms.saturating_sub(*start) >= self.window_ms {
            (*start, *n) = (now_ms, 0);
        }
        if *n >= self.burst {
            return false;
        }
        *n += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> TokenRow {
        TokenRow {
            id: "0123456789ab".into(),
            secret_sha256: drover_protocol::join::secret_sha256("s3cret"),
            labels: Default::default(),
            expires_ms: 1_000,
            uses_left: 1,
            created_ms: 0,
            revoked_ms: None,
        }
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let r = row();
        assert_eq!(check_token(Some(&r), "s3cret", 999), Ok(()));
        assert_eq!(check_token(None, "s3cret", 0), Err(TokenRefusal::Unknown));
        assert_eq!(
            check_token(Some(&r), "s3cres", 0),
            Err(TokenRefusal::WrongSecret)
        );
        assert_eq!(
            check_token(Some(&r), "s3cret", 1_000),
            Err(TokenRefusal::Expired)
        );
        let used = TokenRow {
            uses_left: 0,
            ..row()
        };
        assert_eq!(
            check_token(Some(&used), "s3cret", 0),
            Err(TokenRefusal::UsedUp)
        );
        let revoked = TokenRow {
            revoked_ms: Some(5),
            ..row()
        };
        assert_eq!(
            check_token(Some(&revoked), "s3cret", 0),
            Err(TokenRefusal::Revoked)
        );
        // Without the secret, an expired or revoked token says nothing more.
        assert_eq!(
            check_token(Some(&revoked), "x", 5_000),
            Err(TokenRefusal::WrongSecret)
        );
    }

    #[test]
    fn the_limit_allows_a_burst_per_address_per_window() {
        let mut l = JoinLimit::new(2, 1_000);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.allow(a, 0) && l.allow(a, 10));
        assert!(!l.allow(a, 20));
        assert!(l.allow(b, 20));
        assert!(l.allow(a, 1_000));
    }
}
