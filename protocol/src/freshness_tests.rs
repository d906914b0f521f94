use proptest::prelude::*;

use super::*;
use crate::auth::seal_status;
use crate::keys::StatusKey;

fn k(credential: &[u8]) -> StatusKey {
    StatusKey::derive(credential)
}

fn name(n: &str) -> Name {
    Name::new(n).unwrap()
}

fn status(device: &str) -> DeviceStatus {
    DeviceStatus {
        device: name(device),
        observed_generation: 3,
        time_ms: 9,
        workloads: vec![],
        capacity: Default::default(),
    }
}

#[test]
fn presence_opens_only_for_its_device_and_key() {
    let dev = name("pi-1");
    let p = seal_presence(&dev, false, 7 << 32, b"k1").unwrap();
    assert_eq!(
        open_presence(&p, &dev, &k(b"k1")).unwrap(),
        Presence {
            online: false,
            seq: Some(7 << 32)
        }
    );
    assert!(matches!(
        open_presence(&p, &dev, &k(b"k2")),
        Err(AuthError::BadMac)
    ));
    assert!(matches!(
        open_presence(&p, &name("pi-2"), &k(b"k1")),
        Err(AuthError::BadMac)
    ));
    let mut flipped = p.clone();
    // The `online` flag is the byte after version and kind: flip it.
    let at = flipped.iter().position(|b| *b == 0).unwrap();
    flipped[at] = 1;
    assert!(open_presence(&flipped, &dev, &k(b"k1")).is_err());
    assert_eq!(open_presence(b"online", &dev, &k(b"x")).unwrap().seq, None);
    assert!(open_presence(b"maybe", &dev, &k(b"k1")).is_err());
}

#[test]
fn statuses_open_with_their_sequence_and_older_ones_without() {
    let dev = name("pi-1");
    let s = seal_status_seq(&status("pi-1"), 42, b"k1").unwrap();
    let (got, seq) = open_status_seq(&s, &dev, &k(b"k1")).unwrap();
    assert_eq!((got, seq), (status("pi-1"), Some(42)));
    assert!(matches!(
        open_status_seq(&s, &dev, &k(b"k2")),
        Err(AuthError::BadMac)
    ));
    // Another device's status under its own key, sent on pi-1's topic.
    let theirs = seal_status_seq(&status("pi-2"), 43, b"k1").unwrap();
    assert!(open_status_seq(&theirs, &dev, &k(b"k1")).is_err());
    let old = seal_status(&status("pi-1"), b"k1").unwrap();
    assert_eq!(open_status_seq(&old, &dev, &k(b"k1")).unwrap().1, None);
    assert!(open_status_seq(b"garbage", &dev, &k(b"k1")).is_err());
}

#[test]
fn freshness_rises_and_unsequenced_messages_stop_counting_once_sequenced() {
    assert!(is_fresh(Some(1), 0));
    assert!(!is_fresh(Some(5), 5));
    assert!(!is_fresh(Some(4), 5));
    assert!(is_fresh(None, 0));
    assert!(!is_fresh(None, 1));
}

proptest! {
    #[test]
    fn no_payload_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let dev = name("pi-1");
        let _ = open_presence(&bytes, &dev, &k(b"k"));
        let _ = open_status_seq(&bytes, &dev, &k(b"k"));
    }

    #[test]
    fn a_changed_sequence_never_verifies(seq in any::<u64>(), other in any::<u64>()) {
        prop_assume!(seq != other);
        let dev = name("pi-1");
        let s = seal_status_seq(&status("pi-1"), seq, b"k").unwrap();
        let mut sealed: SequencedStatus = crate::codec::decode(&s).unwrap();
        sealed.seq = other;
        let forged = encode(&sealed).unwrap();
        prop_assert!(open_status_seq(&forged, &dev, &k(b"k")).is_err());
    }
}
