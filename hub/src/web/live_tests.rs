use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::*;
use crate::events::{Events, FleetEvent};

fn status(d: &str) -> FleetEvent {
    FleetEvent::Status { device: d.into() }
}

fn telemetry(d: &str) -> FleetEvent {
    FleetEvent::Telemetry { device: d.into() }
}

fn changes(flush: Option<Flush>) -> Changes {
    match flush {
        Some(Flush::Changes(c)) => c,
        other => panic!("expected changes, got {other:?}"),
    }
}

#[test]
fn repeated_notifications_of_a_device_become_one_name() {
    let mut co = Coalescer::new(None);
    let now = Instant::now();
    assert_eq!(co.take(now), None, "nothing gathered, nothing sent");
    for _ in 0..50 {
        co.push(status("pi-2"));
        co.push(status("pi-1"));
        co.push(telemetry("pi-1"));
    }
    co.push(FleetEvent::Presence {
        device: "pi-1".into(),
        online: false,
    });
    co.push(FleetEvent::Presence {
        device: "pi-1".into(),
        online: true,
    });
    co.push(FleetEvent::Fleet);
    let c = changes(co.take(now));
    assert_eq!(c.status, ["pi-1", "pi-2"]);
    assert_eq!(c.telemetry, ["pi-1"]);
    assert_eq!(c.presence, BTreeMap::from([("pi-1".to_owned(), true)]));
    assert!(c.fleet);
    assert_eq!(co.take(now), None, "a flush empties the coalescer");
}

#[test]
fn telemetry_goes_out_at_most_once_per_interval() {
    let mut co = Coalescer::new(Some("pi-1".into()));
    let t0 = Instant::now();
    co.push(telemetry("pi-1"));
    assert_eq!(changes(co.take(t0)).telemetry, ["pi-1"]);
    co.push(telemetry("pi-1"));
    co.push(status("pi-1"));
    // The status goes at once; the telemetry waits.
    let c = changes(co.take(t0 + FLUSH));
    assert_eq!((c.status.len(), c.telemetry.len()), (1, 0));
    assert_eq!(co.take(t0 + TELEMETRY_EVERY - FLUSH), None);
    assert_eq!(changes(co.take(t0 + TELEMETRY_EVERY)).telemetry, ["pi-1"]);
}

#[test]
fn a_device_stream_keeps_only_its_device_and_fleet_changes() {
    let mut co = Coalescer::new(Some("pi-1".into()));
    co.push(status("pi-2"));
    co.push(telemetry("pi-2"));
    co.push(FleetEvent::Presence {
        device: "pi-2".into(),
        online: true,
    });
    assert_eq!(co.take(Instant::now()), None);
    co.push(status("pi-1"));
    co.push(FleetEvent::Fleet);
    let c = changes(co.take(Instant::now()));
    assert_eq!((c.status, c.fleet), (vec!["pi-1".to_owned()], true));
}

#[test]
fn too_many_names_or_a_lag_become_one_resync() {
    let mut co = Coalescer::new(None);
    for i in 0..10_000 {
        co.push(telemetry(&format!("pi-{i}")));
        assert!(co.telemetry.len() <= MAX_NAMES, "bounded");
    }
    let now = Instant::now();
    assert_eq!(co.take(now), Some(Flush::Resync));
    assert_eq!(co.take(now), None);
    co.push(status("pi-1"));
    co.lagged();
    co.push(status("pi-2"));
    assert_eq!(co.take(now), Some(Flush::Resync));
}

#[tokio::test(start_paused = true)]
async fn a_fleet_sending_telemetry_every_10s_costs_a_browser_one_event_a_second() {
    let events = Events::default();
    let mut stream = Box::pin(flushes(events.subscribe(), None));
    let sender = events.clone();
    // 10,000 devices every 10 s = 1,000 samples a second, for 20 s, plus one status.
    tokio::spawn(async move {
        for round in 0..200 {
            for i in 0..100 {
                sender.emit(telemetry(&format!("pi-{}", (round * 100 + i) % 10_000)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sender.emit(status("pi-7"));
    });
    let start = Instant::now();
    let mut sent = Vec::new();
    while let Some(f) = stream.next().await {
        let done = matches!(&f, Flush::Changes(c) if c.status == ["pi-7"]);
        sent.push(f);
        if done {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(secs >= 19.0, "{secs}");
    assert!(
        sent.len() as f64 <= secs / FLUSH.as_secs_f64() + 2.0,
        "{} events in {secs} s",
        sent.len()
    );
    assert!(sent.contains(&Flush::Resync), "{sent:?}");
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_falls_behind_the_broadcast_is_told_to_resync() {
    let events = Events::default();
    let mut stream = Box::pin(flushes(events.subscribe(), Some("pi-1".into())));
    // More than the broadcast keeps, before the stream reads any of it.
    for _ in 0..5_000 {
        events.emit(status("pi-1"));
    }
    assert_eq!(stream.next().await, Some(Flush::Resync));
    // The stream may have sent that before reading what the broadcast still held, and the
    // next notification then overruns it once more: another resync, never stale changes.
    events.emit(status("pi-1"));
    let mut next = stream.next().await;
    if next == Some(Flush::Resync) {
        events.emit(status("pi-1"));
        next = stream.next().await;
    }
    assert_eq!(changes(next).status, ["pi-1"]);
}
