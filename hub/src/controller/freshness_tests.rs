//! Replay protection of statuses and presence (`freshness.rs`), across a hub restart.

use drover_protocol::freshness::{seal_presence, seal_status_seq};

use super::*;

#[test]
fn replayed_statuses_and_presence_are_dropped_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    let cred = c.add_device("pi-1", labels("x"), 1).unwrap().credential;
    let other = c.add_device("pi-2", labels("x"), 1).unwrap().credential;
    published(&mut rx, &c);
    let dev = Name::new("pi-1").unwrap();
    let (st, on) = ("drover/v1/dev/pi-1/status", "drover/v1/dev/pi-1/online");
    let old = seal_status_seq(&status("pi-1", 1), 5 << 32, cred.as_bytes()).unwrap();
    ingest(&mut c, st, &old, 10);
    ingest(
        &mut c,
        on,
        &seal_presence(&dev, true, 5 << 32, cred.as_bytes()).unwrap(),
        10,
    );
    let offline_old = seal_presence(&dev, false, (5 << 32) + 1, cred.as_bytes()).unwrap();
    ingest(
        &mut c,
        st,
        &seal_status_seq(&status("pi-1", 1), (6 << 32) + 9, cred.as_bytes()).unwrap(),
        20,
    );
    ingest(
        &mut c,
        on,
        &seal_presence(&dev, true, 6 << 32, cred.as_bytes()).unwrap(),
        20,
    );

    // Replays of what was accepted before, an older agent's plain forms, and an
    // `offline` sealed with another device's key.
    ingest(&mut c, st, &old, 30);
    ingest(&mut c, on, &offline_old, 30);
    ingest(&mut c, on, b"offline", 30);
    let legacy = drover_protocol::auth::seal_status(&status("pi-1", 1), cred.as_bytes()).unwrap();
    ingest(&mut c, st, &legacy, 30);
    let forged = seal_presence(&dev, false, 7 << 32, other.as_bytes()).unwrap();
    ingest(&mut c, on, &forged, 30);
    let r = reader(dir.path(), &c);
    let stats = r.stats().unwrap();
    assert_eq!(stats["status_rejected_replayed"], 2, "{stats:?}");
    assert_eq!(stats["presence_rejected_replayed"], 2, "{stats:?}");
    assert_eq!(stats["presence_rejected_bad_mac"], 1, "{stats:?}");
    assert!(r.devices(40).unwrap()[0].online, "still online");

    // After a restart the floors come back from the store.
    drop(c);
    let (mut c, _rx) = controller(dir.path());
    ingest(&mut c, on, &offline_old, 50);
    let r = reader(dir.path(), &c);
    assert_eq!(r.stats().unwrap()["presence_rejected_replayed"], 3);
    assert!(r.devices(60).unwrap()[0].online);
    // The genuine last will, above the floor, is taken.
    let will = seal_presence(&dev, false, (6 << 32) + 1, cred.as_bytes()).unwrap();
    ingest(&mut c, on, &will, 70);
    assert!(!r.devices(80).unwrap()[0].online);
}
