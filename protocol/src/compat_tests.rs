#![allow(clippy::unwrap_used)]

use ed25519_dalek::SigningKey;

use super::*;
use crate::auth::{sign_desired, verify_desired};
use crate::codec::encode;
use crate::types::{EnvVar, Resources};
use crate::{ImageRef, WorkloadSpec};

/// Written by the envelope-version-1 build (commit 34ca3cb): `encode(&desired)` and
/// `sign_desired(&desired, &SigningKey::from_bytes(&[7; 32]))` of [`expected`] without labels.
const V1_DESIRED: &str = "01010470692d3107010377656201046d61696e0e6875623a73656e736f723a312e3001072f62696e2f7368000101410162000001808080200000000000010464617461904e";
/// Written by the envelope-version-2 build (commit b1066af): [`expected`] with label
/// `app=web`, encoded and signed with the same key.
const V2_DESIRED: &str = "02010470692d3107010377656201046d61696e0e6875623a73656e736f723a312e3001072f62696e2f7368000101410162000001808080200000000000010464617461904e010361707003776562";
const V2_SIGNED: &str = "02034e02010470692d3107010377656201046d61696e0e6875623a73656e736f723a312e3001072f62696e2f7368000101410162000001808080200000000000010464617461904e01036170700377656240d6e667db1030e88c1643cbd479520f09e6429a193d464221c5c4ddab0c47221929cd0e628141f8343d9a671ce2b55c37d2b0b22cadb4747f3c336c4a6e5f410c";
const V1_SIGNED: &str = "01034501010470692d3107010377656201046d61696e0e6875623a73656e736f723a312e3001072f62696e2f7368000101410162000001808080200000000000010464617461904e40e2be68b7bc322fa9c1437bdfc12ef09e4b613d5285d191e7fb71a2d08dfe4e9b28a2c265387d130d1e1ccc317ee45d14198d1c4a2edf85885a830d8cdaa54105";

/// Written by the envelope-version-3 build (commit 280a27a): [`expected`] with label
/// `app=web`, `init: true`, revision 2 and a fallback of revision 1, encoded and signed
/// with the same key.
const V3_DESIRED: &str = "03010470692d3107010377656201046d61696e0e6875623a73656e736f723a312e3001072f62696e2f73680001014101620000018080802000000001000000000000010464617461904e01036170700377656200020000010377656201046d61696e0e6875623a73656e736f723a312e3001072f62696e2f73680001014101620000018080802000000001000000000000010464617461904e0103617070037765620001000000";
const V3_SIGNED: &str = "0303a70103010470692d3107010377656201046d61696e0e6875623a73656e736f723a312e3001072f62696e2f73680001014101620000018080802000000001000000000000010464617461904e01036170700377656200020000010377656201046d61696e0e6875623a73656e736f723a312e3001072f62696e2f73680001014101620000018080802000000001000000000000010464617461904e010361707003776562000100000040a5ce1416c4a408eda4dc00ab45053038ad518b57a608ff4ce71a77d32e90224db4e322f22ef9d96c6799ecc42db8d0b6a43d4bec7da47a6e963a84afd0dd1405";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn expected() -> DesiredState {
    DesiredState {
        device: name("pi-1"),
        generation: 7,
        workloads: vec![WorkloadSpec {
            name: name("web"),
            containers: vec![ContainerSpec {
                name: name("main"),
                image: ImageRef::new("hub:sensor:1.0").unwrap(),
                command: vec!["/bin/sh".into()],
                args: vec![],
                env: vec![EnvVar {
                    name: "A".into(),
                    value: "b".into(),
                }],
                working_dir: None,
                mounts: vec![],
                resources: Resources {
                    memory_bytes: Some(64 << 20),
                    cpu_millis: None,
                    pids: None,
                },
                devices: vec![],
                init: false,
                liveness_probe: None,
                readiness_probe: None,
                startup_probe: None,
                depends_on: vec![],
                security: Default::default(),
                env_refs: vec![],
            }],
            restart_policy: RestartPolicy::Always,
            network: NetworkMode::Host,
            volumes: vec![name("data")],
            stop_grace_ms: 10_000,
            labels: Default::default(),
            depends_on: vec![],
            revision: 0,
            health_timeout_ms: 0,
            min_ready_ms: 0,
            fallback: None,
        }],
    }
}

#[test]
fn a_version_1_desired_state_decodes_with_empty_labels() {
    let v1 = unhex(V1_DESIRED);
    assert!(matches!(
        codec::decode::<DesiredState>(&v1),
        Err(CodecError::Version { found: 1 })
    ));
    assert_eq!(decode_any::<DesiredState>(&v1).unwrap(), expected());
}

#[test]
fn a_version_1_signed_state_persisted_by_an_old_agent_still_verifies() {
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let state = verify_desired(&unhex(V1_SIGNED), &key, &name("pi-1"), 0).unwrap();
    assert_eq!(state, expected());
    // The signature still covers the old bytes: tampering is caught before converting.
    let mut tampered = unhex(V1_SIGNED);
    tampered[20] ^= 1;
    assert!(verify_desired(&tampered, &key, &name("pi-1"), 0).is_err());
    let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
    assert!(verify_desired(&unhex(V1_SIGNED), &other, &name("pi-1"), 0).is_err());
}

#[test]
fn a_version_2_state_decodes_and_verifies_with_init_off() {
    let mut want = expected();
    want.workloads[0].labels.insert("app".into(), "web".into());
    assert_eq!(
        decode_any::<DesiredState>(&unhex(V2_DESIRED)).unwrap(),
        want
    );
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let state = verify_desired(&unhex(V2_SIGNED), &key, &name("pi-1"), 0).unwrap();
    assert_eq!(state, want);
    let mut tampered = unhex(V2_SIGNED);
    tampered[20] ^= 1;
    assert!(verify_desired(&tampered, &key, &name("pi-1"), 0).is_err());
}

#[test]
fn states_stored_only_signed_before_sealing_still_open_on_an_upgraded_agent() {
    // `S/hub-desired.bin` written by an agent before sealed states existed holds these
    // bytes; the upgraded agent loads it through `open_desired` with its sealing key.
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let seal = crate::keys::SealSecret::derive(b"any-credential");
    for (hex, labels) in [(V1_SIGNED, false), (V2_SIGNED, true)] {
        let state =
            crate::sealed::open_desired(&unhex(hex), &key, &name("pi-1"), 0, &seal).unwrap();
        let mut want = expected();
        if labels {
            want.workloads[0].labels.insert("app".into(), "web".into());
        }
        assert_eq!(state, want);
        let mut tampered = unhex(hex);
        tampered[20] ^= 1;
        assert!(crate::sealed::open_desired(&tampered, &key, &name("pi-1"), 0, &seal).is_err());
    }
}

#[test]
fn a_version_3_state_decodes_and_verifies_with_the_default_security_context() {
    let mut want = expected();
    let w = &mut want.workloads[0];
    w.labels.insert("app".into(), "web".into());
    w.containers[0].init = true;
    let mut fallback = w.clone();
    fallback.revision = 1;
    w.revision = 2;
    w.fallback = Some(Box::new(fallback));
    let got = decode_any::<DesiredState>(&unhex(V3_DESIRED)).unwrap();
    assert_eq!(got, want);
    assert_eq!(got.workloads[0].containers[0].security, Default::default());
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let state = verify_desired(&unhex(V3_SIGNED), &key, &name("pi-1"), 0).unwrap();
    assert_eq!(state, want);
}

#[test]
fn the_current_version_carries_labels_and_unknown_versions_are_refused() {
    let mut d = expected();
    d.workloads[0].labels.insert("app".into(), "web".into());
    d.workloads[0].containers[0].init = true;
    d.workloads[0].containers[0].security.run_as_user = Some(1000);
    d.workloads[0].containers[0].security.cap_drop = vec!["ALL".into()];
    let bytes = encode(&d).unwrap();
    assert_eq!(bytes[0], VERSION as u8);
    assert_eq!(decode_any::<DesiredState>(&bytes).unwrap(), d);
    let key = SigningKey::from_bytes(&[7; 32]);
    let signed = sign_desired(&d, &key).unwrap();
    let back = verify_desired(&signed, &key.verifying_key(), &name("pi-1"), 0).unwrap();
    assert_eq!(back, d);
    let mut future = bytes.clone();
    future[0] = (VERSION + 1) as u8;
    assert!(matches!(
        decode_any::<DesiredState>(&future),
        Err(CodecError::Version { .. })
    ));
    let mut v1 = unhex(V1_DESIRED);
    v1.push(0);
    assert!(matches!(
        decode_any::<DesiredState>(&v1),
        Err(CodecError::Trailing(1))
    ));
    assert!(matches!(
        decode_any::<DeviceStatus>(&unhex(V1_DESIRED)),
        Err(CodecError::Kind { found: 1, .. })
    ));
}

proptest::proptest! {
    #[test]
    fn garbage_never_panics(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        if let Some(b) = bytes.first_mut() {
            *b %= 5;
        }
        let _ = decode_any::<DesiredState>(&bytes);
        let _ = decode_any::<DeviceStatus>(&bytes);
        let _ = decode_any::<SignedDesired>(&bytes);
    }
}

/// A version 4 state is today's encoding without each container's trailing `env_refs`
/// (one byte, the empty list's length): cut those bytes and mark the envelope 4.
#[test]
fn a_version_4_state_decodes_without_references() {
    let mut d = expected();
    d.workloads[0].containers[0].security.run_as_user = Some(1000);
    let v5 = encode(&d).unwrap();
    let container = postcard::to_stdvec(&d.workloads[0].containers[0]).unwrap();
    assert_eq!(container.last(), Some(&0), "env_refs: the empty list");
    let at = v5
        .windows(container.len())
        .position(|w| w == container.as_slice())
        .unwrap();
    let mut v4 = v5.clone();
    v4.remove(at + container.len() - 1);
    v4[0] = 4;
    let got = decode_any::<DesiredState>(&v4).unwrap();
    assert_eq!(got, d);
    assert!(got.workloads[0].containers[0].env_refs.is_empty());
    assert!(decode_any::<DesiredState>(&v5[..]).is_ok());
    let mut v5_as_v4 = v5.clone();
    v5_as_v4[0] = 4;
    assert!(
        decode_any::<DesiredState>(&v5_as_v4).is_err(),
        "shapes differ"
    );
}
