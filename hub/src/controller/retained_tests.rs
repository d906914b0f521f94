//! The retained-state guard (`retained.rs`): the hub's own echo is ignored; a forged
//! or deleted retained state is counted and the genuine one published again, at most
//! once a second per device.

use super::*;

fn raw(rx: &mut UnboundedReceiver<Out>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Ok(Out::Publish(p)) = rx.try_recv() {
        out.push((p.topic, p.payload));
    }
    out
}

#[test]
fn a_forged_or_deleted_retained_state_is_published_again_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    c.add_device("pi-1", labels("sensor"), 1).unwrap();
    c.add_device("pi-2", labels("x"), 1).unwrap();
    c.apply(&[deployment("web", "sensor", "oci:/a")], false, 2)
        .unwrap();
    let sent = raw(&mut rx);
    let topic = "drover/v1/dev/pi-1/desired";
    let genuine = sent.iter().rfind(|(t, _)| t == topic).unwrap().1.clone();

    // The hub's own publish coming back: nothing happens.
    ingest(&mut c, topic, &genuine, 1_000);
    assert!(raw(&mut rx).is_empty());
    // pi-2's genuine state published under pi-1's topic, then a deletion.
    let other = sent.iter().find(|(t, _)| t.contains("pi-2")).unwrap();
    ingest(&mut c, topic, &other.1, 2_000);
    assert_eq!(raw(&mut rx), vec![(topic.to_owned(), genuine.clone())]);
    ingest(&mut c, topic, b"", 3_000);
    assert_eq!(raw(&mut rx), vec![(topic.to_owned(), genuine.clone())]);
    // In a loop: counted each time, published again at most once a second.
    ingest(&mut c, topic, b"junk", 3_500);
    assert!(raw(&mut rx).is_empty());
    ingest(&mut c, topic, b"junk", 4_000);
    assert_eq!(raw(&mut rx).len(), 1);
    // Not a registered device, or an empty message where the hub holds nothing: ignored.
    ingest(&mut c, "drover/v1/dev/pi-9/desired", b"junk", 5_000);
    ingest(&mut c, "drover/v1/dev/hub/desired", b"junk", 5_000);
    assert!(raw(&mut rx).is_empty());

    let stats = reader(dir.path(), &c).stats().unwrap();
    assert_eq!(stats["desired_overwritten"], 4);
    let detail = reader(dir.path(), &c).device("pi-1", 5_000).unwrap();
    let noted = detail
        .events
        .iter()
        .filter(|e| e.message.contains("overwritten"))
        .count();
    assert_eq!(noted, 1, "one event a minute per device");
}
