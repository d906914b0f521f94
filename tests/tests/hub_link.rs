//! End-to-end: the hub's MQTT link to an external broker (real Mosquitto) that comes up
//! after the hub. Desired states queued while the broker was away must not overtake the
//! hub's subscription, or the statuses the devices send back at once are lost to the hub.

use std::time::Duration;

use drover_tests::hub::{Mosquitto, TestHub, free_port};
use drover_tests::wait_for;

/// Mosquitto's log lines about packets it received from the hub's client (`drover-hub`),
/// in order: "SUBSCRIBE" or "PUBLISH".
fn hub_packets(log: &str) -> Vec<&'static str> {
    log.lines()
        .filter_map(|l| {
            if l.contains("Received SUBSCRIBE from drover-hub") {
                Some("SUBSCRIBE")
            } else if l.contains("Received PUBLISH from drover-hub") {
                Some("PUBLISH")
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn the_hub_subscribes_before_it_publishes_what_waited_for_the_broker() {
    let port = free_port();
    let mut hub = TestHub::with_external_broker(port);
    hub.start();
    // Registered while the broker is down: the device's first desired state waits in the
    // hub's client.
    hub.device_add("pi-1", &["role=sensor"]);
    let log = hub.dir.path().join("mosquitto.log");
    let _mosquitto = Mosquitto::start_on(port, Some(&log));
    let packets = wait_for(
        "the hub to publish pi-1's desired state to Mosquitto",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let p = hub_packets(&text);
            p.contains(&"PUBLISH").then_some(p)
        },
    );
    assert_eq!(
        packets.first(),
        Some(&"SUBSCRIBE"),
        "the hub's first packet after CONNECT must be its SUBSCRIBE, got {packets:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        hub.logs().contains("connected to the MQTT broker"),
        "{}",
        hub.logs()
    );
}
