//! Failed starts: what each kind records, how it is retried (runtime and rootfs with
//! back-off, image after pulling it again, spec never), and that it survives a restart.

use drover_protocol::Phase;

use super::fixture::*;
use crate::reconcile::StartErrorKind;
use crate::runtime::fake::RuntimeCall;
use crate::state::StartFailure;

fn failure(fx: &Fx, name: &str) -> Option<StartFailure> {
    fx.record(name)?.containers[&n("app")].start_error.clone()
}

#[test]
fn a_runtime_failure_is_recorded_and_retried_after_one_then_two_seconds() {
    let mut fx = Fx::new();
    fx.rt.fail_starts(&id("web"), "runtime says no");
    fx.agent.set_static_desired(vec![wl("web", "a")]);
    assert_eq!(ms(fx.pass()), Some(1_000));
    assert_eq!(
        fx.rt.take_calls(),
        vec![clear("web"), start("web")],
        "tried once"
    );
    let f = failure(&fx, "web").expect("the failure is recorded");
    assert_eq!(
        (f.kind, f.at_boot_ms, f.at_ms),
        (StartErrorKind::Runtime, Some(BOOT0), WALL0)
    );
    assert!(f.error.contains("runtime says no"), "{}", f.error);
    let w = fx.workload("web");
    assert_eq!(w.phase, Phase::Error);
    assert!(w.last_error.unwrap().contains("runtime says no"));
    for delay in [1_000, 2_000] {
        fx.clock.advance(delay - 1);
        assert_eq!(ms(fx.pass()), Some(1));
        assert_eq!(fx.rt.take_calls(), vec![], "no start before {delay} ms");
        fx.clock.advance(1);
        assert_eq!(ms(fx.pass()), Some(delay * 2));
        assert_eq!(fx.rt.take_calls(), vec![clear("web"), start("web")]);
    }
    let crec = &fx.record("web").unwrap().containers[&n("app")];
    assert_eq!((crec.restarts, crec.backoff_level), (2, 2));
    fx.rt.heal(&id("web"));
    fx.clock.advance(4_000);
    assert_eq!(fx.pass(), None);
    assert_eq!(fx.phase("web"), Phase::Running);
    assert_eq!(failure(&fx, "web"), None, "a good start clears the failure");
}

#[test]
fn a_rootfs_failure_backs_off_and_its_record_holds_it_back_across_a_restart() {
    let mut fx = Fx::new();
    fx.host.fail_mounts(true);
    fx.agent.set_static_desired(vec![wl("web", "a")]);
    assert_eq!(ms(fx.pass()), Some(1_000));
    assert_eq!(
        fx.rt.take_calls(),
        vec![clear("web")],
        "never reaches the runtime"
    );
    let f = failure(&fx, "web").expect("recorded");
    assert_eq!(
        (f.kind, f.at_boot_ms),
        (StartErrorKind::Rootfs, Some(BOOT0))
    );
    assert_eq!(fx.phase("web"), Phase::Error);
    fx.clock.advance(999);
    assert_eq!(ms(fx.pass()), Some(1));
    assert_eq!(fx.rt.take_calls(), vec![], "no try before 1 s");
    fx.clock.advance(1);
    assert_eq!(ms(fx.pass()), Some(2_000));
    assert_eq!(
        fx.rt.take_calls(),
        vec![clear("web")],
        "tried again after 1 s"
    );
    // A restarted agent knows of the failure only from the record: it still waits.
    fx.restart();
    assert_eq!(ms(fx.pass()), Some(2_000));
    assert_eq!(fx.rt.take_calls(), vec![]);
    fx.host.fail_mounts(false);
    fx.clock.advance(2_000);
    assert_eq!(fx.pass(), None);
    assert_eq!(fx.rt.take_calls(), vec![clear("web"), start("web")]);
    assert_eq!(fx.phase("web"), Phase::Running);
}

#[test]
fn a_spec_that_cannot_run_is_never_retried_until_it_changes() {
    let mut fx = Fx::new();
    let mut bad = wl("web", "a");
    bad.containers[0].working_dir = Some("srv/app".into());
    fx.agent.set_static_desired(vec![bad]);
    assert_eq!(fx.pass(), None, "no timer");
    assert_eq!(starts(&fx.rt.take_calls()), Vec::<&_>::new());
    let f = failure(&fx, "web").expect("recorded");
    assert_eq!(f.kind, StartErrorKind::Spec);
    assert!(f.error.contains("must be an absolute path"), "{}", f.error);
    let w = fx.workload("web");
    assert_eq!(w.phase, Phase::Error);
    let why = w.last_error.unwrap();
    assert!(
        why.contains("\"srv/app\"") && why.contains("not retried"),
        "{why}"
    );
    for _ in 0..3 {
        fx.clock.advance(3 * 3_600_000);
        assert_eq!(fx.pass(), None);
        assert_eq!(fx.rt.take_calls(), vec![], "no retry hours later");
    }
    let mut good = wl("web", "a");
    good.containers[0].working_dir = Some("/srv/app".into());
    fx.agent.set_static_desired(vec![good.clone()]);
    fx.pass();
    let stop = RuntimeCall::RequestStop { id: id("web") };
    let calls = vec![stop, clear("web"), clear("web"), start("web")];
    assert_eq!(
        fx.rt.take_calls(),
        calls,
        "replaced like any changed workload"
    );
    assert_eq!(fx.record("web").unwrap().spec, good);
    assert_eq!(fx.phase("web"), Phase::Running);
}

#[test]
fn an_image_gone_from_the_store_is_pulled_again_then_started() {
    let mut fx = Fx::new();
    fx.run(vec![wl("web", "a")]);
    // Power cut: the shim is gone, and the image store lost the image meanwhile.
    fx.rt.lose(&id("web"));
    fx.images.remove_from_store(&img("a"));
    fx.restart();
    fx.images.hold_pulls(true);
    fx.pass();
    assert_eq!(
        fx.rt.take_calls(),
        vec![clear("web")],
        "one try, no hot loop"
    );
    let f = failure(&fx, "web").expect("recorded");
    assert_eq!(f.kind, StartErrorKind::Image);
    assert!(f.error.contains(&img("a")), "{}", f.error);
    let w = fx.workload("web");
    assert!(
        w.last_error
            .as_deref()
            .unwrap_or("")
            .contains("pulled again"),
        "{w:?}"
    );
    fx.clock.advance(60_000);
    fx.pass();
    assert_eq!(fx.rt.take_calls(), vec![], "nothing while the pull runs");
    fx.images.hold_pulls(false);
    let wake = fx.pass();
    assert_eq!(
        fx.images.pulls_started(),
        vec![img("a"), img("a")],
        "pulled again"
    );
    assert_eq!(
        fx.rt.take_calls(),
        vec![clear("web"), start("web")],
        "started as soon as the image is back (no extra back-off)"
    );
    assert_eq!(wake, None);
    assert_eq!(
        failure(&fx, "web"),
        None,
        "the good start cleared the failure"
    );
    assert_eq!(fx.phase("web"), Phase::Running);
    let crec = &fx.record("web").unwrap().containers[&n("app")];
    assert_eq!(
        (crec.restarts, crec.image_digest.as_deref()),
        (2, Some("sha256:a"))
    );
}

#[test]
fn a_start_that_hangs_is_ended_reported_and_retried_with_back_off() {
    let mut fx = Fx::new();
    fx.rt.hang_starts(&id("web"));
    fx.agent.set_static_desired(vec![wl("web", "a")]);
    assert_eq!(
        ms(fx.pass()),
        Some(1_000),
        "backs off like any runtime failure"
    );
    assert_eq!(
        fx.rt.take_calls(),
        vec![
            clear("web"),
            start("web"),
            RuntimeCall::ForceStop { id: id("web") },
            clear("web"),
        ],
        "the stuck shim is ended"
    );
    let f = failure(&fx, "web").expect("recorded");
    assert_eq!(f.kind, StartErrorKind::Runtime);
    assert!(f.error.contains("did not report"), "{}", f.error);
    let w = fx.workload("web");
    assert_eq!(w.phase, Phase::Error, "not Pending forever: {w:?}");
    fx.rt.heal(&id("web"));
    fx.clock.advance(1_000);
    fx.pass();
    assert_eq!(fx.phase("web"), Phase::Running);
}
