use ed25519_dalek::SigningKey;

use super::*;
use crate::auth::sign_desired;
use crate::codec::decode;
use crate::keys::DeviceSecrets;
use crate::types::{ContainerSpec, EnvVar, WorkloadSpec};
use crate::{ImageRef, Name};

/// A deterministic generator for tests only (the hub uses the OS's).
struct TestRng(u64);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = (self.next_u64() >> 56) as u8;
        }
    }
}

impl CryptoRng for TestRng {}

const SECRET: &str = "s3cret-env-value-4711";

fn hub() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fn state(device: &str, generation: u64) -> DesiredState {
    let mut c = ContainerSpec::new(
        Name::new("app").unwrap(),
        ImageRef::new(
            "hub:app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        )
        .unwrap(),
    );
    c.env = vec![EnvVar {
        name: "TOKEN".into(),
        value: SECRET.into(),
    }];
    DesiredState {
        device: Name::new(device).unwrap(),
        generation,
        workloads: vec![WorkloadSpec::new(Name::new("web").unwrap(), vec![c])],
    }
}

fn sealed_for(device: &str, credential: &[u8], generation: u64) -> Vec<u8> {
    let pk = DeviceSecrets::derive(credential).seal.public();
    seal_desired(&state(device, generation), &pk, &hub(), &mut TestRng(1)).unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_sealed_state_opens_only_with_its_device_key() {
    let dev = Name::new("pi-1").unwrap();
    let payload = sealed_for("pi-1", b"cred-1", 5);
    assert!(is_sealed(&payload));
    assert!(
        !contains(&payload, SECRET.as_bytes()),
        "the env value is in clear"
    );
    let mine = DeviceSecrets::derive(b"cred-1").seal;
    let got = open_desired(&payload, &hub().verifying_key(), &dev, 4, &mine).unwrap();
    assert_eq!(got, state("pi-1", 5));
    // Another device's key: the signature is fine, the content stays closed.
    let theirs = DeviceSecrets::derive(b"cred-2").seal;
    assert!(matches!(
        open_desired(&payload, &hub().verifying_key(), &dev, 4, &theirs),
        Err(AuthError::Unseal)
    ));
    // Generation rules come before decrypting, as for signed states.
    assert!(matches!(
        open_desired(&payload, &hub().verifying_key(), &dev, 5, &mine),
        Err(AuthError::Stale { got: 5, held: 5 })
    ));
    let other = Name::new("pi-2").unwrap();
    assert!(matches!(
        open_desired(&payload, &hub().verifying_key(), &other, 0, &mine),
        Err(AuthError::WrongDevice { .. })
    ));
    let stranger = SigningKey::from_bytes(&[8; 32]).verifying_key();
    assert!(matches!(
        open_desired(&payload, &stranger, &dev, 0, &mine),
        Err(AuthError::BadSignature)
    ));
}

#[test]
fn tampering_with_any_signed_field_breaks_the_signature() {
    let dev = Name::new("pi-1").unwrap();
    let mine = DeviceSecrets::derive(b"cred-1").seal;
    let payload = sealed_for("pi-1", b"cred-1", 5);
    let edits: [fn(&mut SealedDesired); 4] = [
        |s| *s.ciphertext.last_mut().unwrap() ^= 1,
        |s| s.enc[0] ^= 1,
        |s| s.generation += 1,
        |s| s.device = Name::new("pi-9").unwrap(),
    ];
    for edit in edits {
        let mut s: SealedDesired = decode(&payload).unwrap();
        edit(&mut s);
        let tampered = encode(&s).unwrap();
        let dev = if s.device.as_str() == "pi-9" {
            s.device.clone()
        } else {
            dev.clone()
        };
        assert!(matches!(
            open_desired(&tampered, &hub().verifying_key(), &dev, 0, &mine),
            Err(AuthError::BadSignature)
        ));
    }
}

#[test]
fn a_state_that_is_only_signed_still_opens() {
    // What an older hub published, and what an agent stored before the upgrade.
    let dev = Name::new("pi-1").unwrap();
    let mine = DeviceSecrets::derive(b"cred-1").seal;
    let old = sign_desired(&state("pi-1", 3), &hub()).unwrap();
    assert!(!is_sealed(&old));
    let got = open_desired(&old, &hub().verifying_key(), &dev, 0, &mine).unwrap();
    assert_eq!(got.generation, 3);
    let stranger = SigningKey::from_bytes(&[8; 32]).verifying_key();
    assert!(open_desired(&old, &stranger, &dev, 0, &mine).is_err());
}

#[test]
fn sealing_is_randomized_per_message() {
    let pk = DeviceSecrets::derive(b"cred-1").seal.public();
    let a = seal_desired(&state("pi-1", 1), &pk, &hub(), &mut TestRng(1)).unwrap();
    let b = seal_desired(&state("pi-1", 1), &pk, &hub(), &mut TestRng(2)).unwrap();
    assert_ne!(a, b);
}

#[test]
fn garbage_is_refused_without_panicking() {
    let dev = Name::new("pi-1").unwrap();
    let mine = DeviceSecrets::derive(b"cred-1").seal;
    let payload = sealed_for("pi-1", b"cred-1", 5);
    for cut in 0..payload.len() {
        assert!(open_desired(&payload[..cut], &hub().verifying_key(), &dev, 0, &mine).is_err());
    }
}
