//! A full disk (every state write fails): what runs keeps running, new desired state is
//! still applied, and the status still reaches the hub; once space is back, the report
//! and the records that could not be saved are written, so a restart adopts everything.

use drover_protocol::Phase;

use super::fixture::*;

#[test]
fn with_every_write_failing_workloads_keep_running_and_the_status_still_goes_out() {
    let mut fx = Fx::new();
    fx.run(vec![wl("web", "a")]);
    let pid = fx.rt.pid(&id("web")).expect("web runs");

    fx.state.fail_writes(true);
    fx.agent
        .set_static_desired(vec![wl("web", "a"), wl("db", "b")]);
    fx.pass();
    assert_eq!(fx.rt.pid(&id("web")), Some(pid), "web untouched");
    assert!(fx.rt.pid(&id("db")).is_some(), "db started all the same");
    let st = fx
        .published()
        .expect("the status is published without a report");
    let phases: Vec<(String, Phase)> = st
        .workloads
        .iter()
        .map(|w| (w.name.to_string(), w.phase))
        .collect();
    assert_eq!(
        phases,
        vec![
            ("web".into(), Phase::Running),
            ("db".into(), Phase::Running)
        ]
    );
    assert_eq!(fx.record("db"), None, "nothing could be written");
    fx.pass();
    assert_eq!(
        fx.published(),
        None,
        "an unchanged status is not sent again"
    );

    let written = fx.state.reports_written();
    fx.state.fail_writes(false);
    fx.pass();
    assert_eq!(
        fx.state.reports_written(),
        written + 1,
        "the report is written again"
    );
    assert_eq!(fx.phase("db"), Phase::Running);
    let db = fx
        .record("db")
        .expect("db's record is written once space is back");
    assert!(db.containers[&n("app")].started);
    // So a restart now adopts db instead of losing track of it (the new agent reads the
    // manifests folder again, as the daemon does at start).
    fx.rt.take_calls();
    fx.restart();
    fx.agent
        .set_static_desired(vec![wl("web", "a"), wl("db", "b")]);
    fx.pass();
    assert_eq!(fx.rt.take_calls(), vec![], "nothing started twice");
    assert_eq!(fx.rt.pid(&id("web")), Some(pid));
}
