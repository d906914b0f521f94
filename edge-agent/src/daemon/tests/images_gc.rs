//! Images: the store is never trimmed while a pull runs nor of an image in use; a
//! failed pull is reported and tried again.

use drover_protocol::Phase;

use super::fixture::*;
use crate::reconcile::images::GC_INTERVAL_MS;
use crate::reconcile::plan::IMAGE_RETRY_MS;
use crate::runtime::fake::RuntimeCall;

#[test]
fn the_store_is_never_trimmed_during_a_pull_and_then_keeps_images_in_use() {
    let mut fx = Fx::new();
    fx.run(vec![wl("web", "a"), wl("old", "b")]);
    let trims = fx.images.gc_calls().len();
    assert_eq!(trims, 1, "the first pass trims");
    fx.images.hold_pulls(true);
    fx.agent
        .set_static_desired(vec![wl("web", "a"), wl("new", "c")]);
    fx.pass();
    let calls = fx.rt.take_calls();
    assert_eq!(
        calls,
        vec![RuntimeCall::RequestStop { id: id("old") }, clear("old")]
    );
    assert!(
        fx.record("old").is_none(),
        "removed: its image may be unused now"
    );
    assert_eq!(fx.images.gc_calls().len(), trims, "not while c is pulled");
    for _ in 0..3 {
        fx.clock.advance(GC_INTERVAL_MS);
        assert_eq!(ms(fx.pass()), Some(1_000), "pull progress");
        assert_eq!(
            fx.images.gc_calls().len(),
            trims,
            "not even when a minute is due"
        );
    }
    fx.images.hold_pulls(false);
    fx.pass();
    assert_eq!(starts(&fx.rt.take_calls()), vec![&start("new")]);
    let gcs = fx.images.gc_calls();
    assert_eq!(gcs.len(), trims + 1, "trimmed once the pull ended");
    let in_use: Vec<&str> = gcs[trims].iter().map(String::as_str).collect();
    assert_eq!(
        in_use,
        vec!["sha256:a", "sha256:c"],
        "running and new, not the removed b"
    );
}

#[test]
fn a_failed_pull_is_reported_and_tried_again_after_thirty_seconds() {
    let mut fx = Fx::new();
    fx.agent.set_static_desired(vec![wl("web", "gone")]);
    assert_eq!(ms(fx.pass()), Some(IMAGE_RETRY_MS));
    assert_eq!(
        fx.rt.take_calls(),
        vec![],
        "nothing created without its image"
    );
    assert!(fx.record("web").is_none());
    let w = fx.workload("web");
    assert_eq!(w.phase, Phase::Error);
    let why = w.last_error.unwrap();
    assert!(
        why.contains(&img("gone")) && why.contains("manifest unknown"),
        "{why}"
    );
    fx.clock.advance(IMAGE_RETRY_MS - 1);
    fx.pass();
    assert_eq!(
        fx.images.pulls_started(),
        vec![img("gone")],
        "not before 30 s"
    );
    fx.images.add(&img("gone"), "sha256:back");
    fx.clock.advance(1);
    assert_eq!(fx.pass(), None);
    assert_eq!(fx.images.pulls_started(), vec![img("gone"), img("gone")]);
    assert_eq!(fx.rt.take_calls(), vec![clear("web"), start("web")]);
    assert_eq!(fx.phase("web"), Phase::Running);
}
