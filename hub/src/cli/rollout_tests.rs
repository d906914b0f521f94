#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn exit_codes_keep_2_for_usage_errors() {
    let codes: Vec<u8> = [
        WaitOutcome::Complete,
        WaitOutcome::TimedOut,
        WaitOutcome::RolledBack,
    ]
    .iter()
    .map(WaitOutcome::exit_code)
    .collect();
    assert_eq!(codes, [0, 3, 4], "1 is any error, 2 clap's usage error");
}

#[test]
fn a_hub_out_of_reach_is_retried_until_the_timeout() {
    // Nothing listens on a port just closed: connection refused, as while the hub restarts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(&format!("http://127.0.0.1:{port}"));
    let r = RolloutRef {
        deployment: "web".into(),
        from: 1,
        to: 2,
    };
    let started = Instant::now();
    let outcome = wait(&client, &[r], Duration::from_millis(1500)).unwrap();
    assert_eq!(outcome, WaitOutcome::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(1500));
}
