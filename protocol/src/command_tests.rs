use proptest::prelude::*;

use super::*;
use crate::keys::StatusKey;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn restart(device: &str, id: u64) -> Command {
    Command {
        device: n(device),
        id,
        kind: CommandKind::Restart { workload: n("web") },
    }
}

#[test]
fn a_signed_command_verifies_only_for_its_device_key_and_newer_ids() {
    let dev = n("pi-1");
    let payload = sign_command(&restart("pi-1", 7), &key(1)).unwrap();
    let vk = key(1).verifying_key();
    assert_eq!(verify_command(&payload, &vk, &dev, 6).unwrap().id, 7);
    let refused = |r: Result<Command, CommandError>| r.unwrap_err().reason();
    assert_eq!(
        refused(verify_command(&payload, &key(2).verifying_key(), &dev, 0)),
        "bad_signature"
    );
    assert_eq!(refused(verify_command(&payload, &vk, &dev, 7)), "replayed");
    assert_eq!(refused(verify_command(&payload, &vk, &dev, 9)), "replayed");
    assert_eq!(
        refused(verify_command(&payload, &vk, &n("pi-2"), 0)),
        "wrong_device"
    );
    let mut signed: SignedCommand = decode(&payload).unwrap();
    *signed.command.last_mut().unwrap() ^= 1;
    let tampered = encode(&signed).unwrap();
    assert_eq!(
        refused(verify_command(&tampered, &vk, &dev, 0)),
        "bad_signature"
    );
    assert_eq!(
        refused(verify_command(
            &vec![0; MAX_COMMAND_BYTES + 1],
            &vk,
            &dev,
            0
        )),
        "malformed"
    );
}

#[test]
fn a_desired_state_signature_is_not_a_command_signature() {
    // Same key, same bytes under another context: refused (domain separation).
    let cmd = encode(&restart("pi-1", 1)).unwrap();
    let sig = key(1)
        .sign(&[b"drover/v1/desired\0".as_slice(), &cmd].concat())
        .to_bytes()
        .to_vec();
    let payload = encode(&SignedCommand {
        command: cmd,
        signature: sig,
    })
    .unwrap();
    assert!(matches!(
        verify_command(&payload, &key(1).verifying_key(), &n("pi-1"), 0),
        Err(CommandError::BadSignature)
    ));
}

#[test]
fn every_kind_round_trips() {
    let kinds = [
        CommandKind::Logs(LogsRequest {
            workload: n("web"),
            container: Some(n("app")),
            follow: true,
            tail: Some(3),
            since_s: Some(600),
            max_bytes: 1 << 20,
        }),
        CommandKind::Restart { workload: n("web") },
        CommandKind::Cancel { id: 4 },
        CommandKind::Renew { id: 4 },
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let c = Command {
            device: n("pi-1"),
            id: 10 + i as u64,
            kind,
        };
        let payload = sign_command(&c, &key(1)).unwrap();
        assert!(payload.len() < 200, "{} bytes", payload.len());
        let got = verify_command(&payload, &key(1).verifying_key(), &n("pi-1"), 0).unwrap();
        assert_eq!(got, c);
    }
}

#[test]
fn a_response_opens_only_with_its_credential_and_topic() {
    let dev = n("pi-1");
    let r = CommandResponse {
        id: 3,
        chunk: 1,
        data: b"hello\n".to_vec(),
        end: true,
        error: None,
    };
    let payload = seal_response(&r, &dev, b"secret").unwrap();
    assert_eq!(
        open_response(&payload, &dev, &StatusKey::derive(b"secret")).unwrap(),
        r
    );
    assert!(matches!(
        open_response(&payload, &dev, &StatusKey::derive(b"other")),
        Err(CommandError::BadMac)
    ));
    assert!(matches!(
        open_response(&payload, &n("pi-2"), &StatusKey::derive(b"secret")),
        Err(CommandError::BadMac)
    ));
    assert!(matches!(
        open_response(&payload[..4], &dev, &StatusKey::derive(b"secret")),
        Err(CommandError::Short(4) | CommandError::BadMac)
    ));
}

#[test]
fn a_full_chunk_fits_but_a_larger_one_is_refused() {
    let dev = n("pi-1");
    let mut r = CommandResponse {
        id: 1,
        data: vec![b'x'; MAX_CHUNK_BYTES],
        ..Default::default()
    };
    let ok = seal_response(&r, &dev, b"k").unwrap();
    assert!(ok.len() < MAX_CHUNK_BYTES + 64);
    assert!(open_response(&ok, &dev, &StatusKey::derive(b"k")).is_ok());
    r.data.push(b'x');
    let big = seal_response(&r, &dev, b"k").unwrap();
    assert!(matches!(
        open_response(&big, &dev, &StatusKey::derive(b"k")),
        Err(CommandError::ChunkTooLarge(_))
    ));
}

#[test]
fn a_failure_kind_travels_as_the_data_of_the_final_chunk() {
    let dev = n("pi-1");
    for kind in [
        FailureKind::BadRequest,
        FailureKind::NotFound,
        FailureKind::Busy,
        FailureKind::Failed,
    ] {
        let r = CommandResponse::failed(9, 2, kind, "why");
        let payload = seal_response(&r, &dev, b"k").unwrap();
        let back = open_response(&payload, &dev, &StatusKey::derive(b"k")).unwrap();
        assert!(back.end);
        assert_eq!(back.error.as_deref(), Some("why"));
        assert_eq!(FailureKind::from_code(&back.data), kind);
    }
    // An agent from before the kinds sends no code: a plain failure.
    assert_eq!(FailureKind::from_code(b""), FailureKind::Failed);
    assert_eq!(FailureKind::from_code(b"whatever"), FailureKind::Failed);
    let long = "x".repeat(MAX_ERROR_CHARS + 10);
    let r = CommandResponse::failed(1, 0, FailureKind::Busy, &long);
    assert_eq!(r.error.unwrap().len(), MAX_ERROR_CHARS);
}

proptest! {
    #[test]
    fn garbage_is_refused_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let dev = n("pi");
        prop_assert!(verify_command(&bytes, &key(1).verifying_key(), &dev, 0).is_err());
        prop_assert!(open_response(&bytes, &dev, &StatusKey::derive(b"k")).is_err());
    }
}
