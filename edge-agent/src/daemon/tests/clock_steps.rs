//! Wall-clock steps (NTP on a board without an RTC): back-off and restarts follow the
//! boot clock; a step either way never delays a restart, adds one, or touches a healthy
//! container.

use super::fixture::*;
use crate::runtime::fake::RuntimeCall;

const HOUR_MS: u64 = 3_600_000;
const YEAR_MS: u64 = 365 * 24 * HOUR_MS;

/// `web` crash-loops to back-off level 3 (its next restart is due 8 s after its exit,
/// which just happened) while `db` runs healthy.
fn crash_web_to_level_3(fx: &mut Fx) {
    fx.run(vec![wl("web", "a"), wl("db", "b")]);
    for delay in [1_000, 2_000, 4_000] {
        fx.rt.exit(&id("web"), 1);
        assert_eq!(ms(fx.pass()), Some(delay));
        fx.clock.advance(delay);
        fx.pass();
        assert_eq!(fx.rt.take_calls(), vec![clear("web"), start("web")]);
    }
    fx.rt.exit(&id("web"), 1);
    let crec = &fx.record("web").unwrap().containers[&n("app")];
    assert_eq!((crec.restarts, crec.backoff_level), (3, 3));
}

/// The 8 s back-off ends after 8 s of boot clock, and only `web` is started.
fn restarts_after_eight_seconds(fx: &mut Fx) {
    assert_eq!(ms(fx.pass()), Some(8_000));
    fx.clock.advance(7_999);
    assert_eq!(ms(fx.pass()), Some(1));
    assert_eq!(fx.rt.take_calls(), vec![], "no restart before 8 s");
    fx.clock.advance(1);
    fx.pass();
    assert_eq!(
        fx.rt.take_calls(),
        vec![clear("web"), start("web")],
        "db untouched"
    );
    assert!(fx.rt.running().contains(&id("db")));
}

#[test]
fn after_the_wall_clock_steps_back_an_hour_a_back_off_still_ends_after_eight_seconds() {
    let mut fx = Fx::new();
    crash_web_to_level_3(&mut fx);
    let db_pid = fx.rt.pid(&id("db"));
    fx.clock.set_wall(WALL0 - HOUR_MS);
    restarts_after_eight_seconds(&mut fx);
    assert_eq!(fx.rt.pid(&id("db")), db_pid);
    assert_eq!(fx.workload("db").restarts, 0);
}

#[test]
fn after_the_wall_clock_steps_forward_years_nothing_restarts_early_or_resets_its_back_off() {
    let mut fx = Fx::new();
    crash_web_to_level_3(&mut fx);
    let db_pid = fx.rt.pid(&id("db"));
    fx.clock.set_wall(WALL0 + 30 * YEAR_MS);
    restarts_after_eight_seconds(&mut fx);
    // It ran 100 ms by the boot clock, though "years" by the wall: the back-off goes on.
    fx.clock.advance(100);
    fx.rt.exit(&id("web"), 1);
    assert_eq!(ms(fx.pass()), Some(16_000));
    assert_eq!(fx.rt.take_calls(), vec![]);
    // A step back by years while everything waits or runs changes nothing either.
    fx.clock.set_wall(WALL0);
    assert_eq!(ms(fx.pass()), Some(16_000));
    assert_eq!(fx.rt.take_calls(), Vec::<RuntimeCall>::new());
    assert_eq!(fx.rt.pid(&id("db")), db_pid);
    assert_eq!(fx.workload("db").restarts, 0);
}
