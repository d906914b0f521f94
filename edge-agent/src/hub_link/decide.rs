//! What to do with a message on the desired topic — a pure function of the payload, the
//! pinned key, the device's sealing secret, the device name and the generation already
//! held — and the per-reason rate limit for warnings about refused ones. The signature is
//! checked first, then device and generation, then the state is decrypted
//! (`drover_protocol::sealed::open_desired`; a state only signed, from an older hub, is
//! still accepted).
//!
//! Never panics on any payload; never accepts a generation that is not newer than `held`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use drover_protocol::auth::AuthError;
use drover_protocol::keys::SealSecret;
use drover_protocol::sealed::open_desired;
use drover_protocol::{DesiredState, Name};
use ed25519_dalek::VerifyingKey;

/// The verdict on one desired-state payload.
#[derive(Debug)]
pub enum Decision {
    /// Authentic, for this device and newer: hand it to the daemon.
    Accept(DesiredState),
    /// Normal and harmless: an emptied retained topic, or a redelivery of what is held.
    Ignore,
    /// Refused; `reason` is the counter key, `error` the explanation for the log.
    Reject {
        reason: &'static str,
        error: AuthError,
    },
}

/// Decides what an incoming desired-state payload means for `device` holding `held`.
pub fn decide(
    payload: &[u8],
    key: &VerifyingKey,
    seal: &SealSecret,
    device: &Name,
    held: u64,
) -> Decision {
    if payload.is_empty() {
        return Decision::Ignore;
    }
    match open_desired(payload, key, device, held, seal) {
        Ok(state) => Decision::Accept(state),
        Err(AuthError::Stale { got, held: h }) if got == h => Decision::Ignore,
        Err(error) => Decision::Reject {
            reason: reason(&error),
            error,
        },
    }
}

/// The stable counter key of a refusal (shown in `LinkStats::rejected_by_reason`).
pub fn reason(e: &AuthError) -> &'static str {
    match e {
        AuthError::Codec(_) => "malformed",
        AuthError::BadSignature => "bad_signature",
        AuthError::BadMac => "bad_mac",
        AuthError::WrongDevice { .. } => "wrong_device",
        AuthError::Stale { .. } => "stale_generation",
        AuthError::Unseal => "unseal_failed",
        AuthError::SealMismatch => "seal_mismatch",
    }
}

/// At most one log line per key per `period`; counts what it held back meanwhile.
#[derive(Debug)]
pub struct RateLimit {
    period: Duration,
    last: BTreeMap<&'static str, (Instant, u64)>,
}

impl RateLimit {
    pub fn new(period: Duration) -> Self {
        RateLimit {
            period,
            last: BTreeMap::new(),
        }
    }

    /// `Some(suppressed)` when a line for `key` may be logged now (with the number of
    /// lines held back since the previous one), `None` when it must stay quiet.
    pub fn allow(&mut self, key: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(key) {
            Some((at, held_back)) if now.duration_since(*at) < self.period => {
                *held_back += 1;
                None
            }
            Some((at, held_back)) => {
                let n = *held_back;
                *at = now;
                *held_back = 0;
                Some(n)
            }
            None => {
                self.last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use drover_protocol::auth::sign_desired;
    use drover_protocol::sealed::{rand_core, seal_desired};
    use ed25519_dalek::SigningKey;

    use super::*;

    fn signed(device: &str, generation: u64, seed: u8) -> Vec<u8> {
        let state = DesiredState {
            device: Name::new(device).unwrap(),
            generation,
            workloads: vec![],
        };
        sign_desired(&state, &SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn run(payload: &[u8], held: u64) -> Decision {
        let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let seal = SealSecret::derive(b"cred-pi-1");
        decide(payload, &key, &seal, &Name::new("pi-1").unwrap(), held)
    }

    /// Fixed bytes for the ephemeral key: tests only (the hub uses the OS's generator).
    struct Fixed;

    impl rand_core::RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            7
        }
        fn next_u64(&mut self) -> u64 {
            7
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(7);
        }
    }

    impl rand_core::CryptoRng for Fixed {}

    fn sealed(generation: u64, to_credential: &[u8]) -> Vec<u8> {
        let state = DesiredState {
            device: Name::new("pi-1").unwrap(),
            generation,
            workloads: vec![],
        };
        let pk = SealSecret::derive(to_credential).public();
        seal_desired(&state, &pk, &SigningKey::from_bytes(&[1; 32]), &mut Fixed).unwrap()
    }

    #[test]
    fn sealed_states_open_only_with_this_devices_key() {
        match run(&sealed(4, b"cred-pi-1"), 3) {
            Decision::Accept(s) => assert_eq!(s.generation, 4),
            other => panic!("{other:?}"),
        }
        assert!(matches!(run(&sealed(4, b"cred-pi-1"), 4), Decision::Ignore));
        assert_eq!(rejected(run(&sealed(5, b"cred-pi-2"), 4)), "unseal_failed");
    }

    fn rejected(d: Decision) -> &'static str {
        match d {
            Decision::Reject { reason, .. } => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn newer_authentic_states_are_accepted() {
        match run(&signed("pi-1", 4, 1), 3) {
            Decision::Accept(s) => assert_eq!(s.generation, 4),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redeliveries_and_cleared_topics_are_ignored() {
        assert!(matches!(run(&signed("pi-1", 4, 1), 4), Decision::Ignore));
        assert!(matches!(run(&[], 4), Decision::Ignore));
    }

    #[test]
    fn forgeries_replays_and_garbage_are_rejected_by_reason() {
        assert_eq!(rejected(run(&signed("pi-1", 9, 2), 0)), "bad_signature");
        assert_eq!(rejected(run(&signed("pi-2", 9, 1), 0)), "wrong_device");
        assert_eq!(rejected(run(&signed("pi-1", 2, 1), 3)), "stale_generation");
        assert_eq!(rejected(run(b"offline", 0)), "malformed");
    }

    #[test]
    fn warnings_are_limited_per_reason_and_count_what_was_held_back() {
        let mut rl = RateLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(rl.allow("a", t0), Some(0));
        assert_eq!(rl.allow("a", t0 + Duration::from_secs(1)), None);
        assert_eq!(rl.allow("a", t0 + Duration::from_secs(59)), None);
        assert_eq!(rl.allow("b", t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(rl.allow("a", t0 + Duration::from_secs(60)), Some(2));
        assert_eq!(rl.allow("a", t0 + Duration::from_secs(61)), None);
    }
}
