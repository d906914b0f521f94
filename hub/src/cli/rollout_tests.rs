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
    let outcome = wait(&client, &[r], &[], Duration::from_millis(1500)).unwrap();
    assert_eq!(outcome, WaitOutcome::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

fn web(from: u64, to: u64) -> RolloutRef {
    RolloutRef {
        deployment: "web".into(),
        from,
        to,
    }
}

fn view(to: u64, phase: &str, reason: Option<&str>) -> RolloutView {
    RolloutView {
        from: to - 1,
        to,
        phase: phase.into(),
        reason: reason.map(str::to_owned),
        batch: 0,
        started_ms: 0,
        total: 3,
        updated: 1,
        healthy: 0,
        failed: 1,
        pending: 0,
    }
}

#[test]
fn an_unchanged_deployment_whose_revision_was_rolled_back_fails_the_wait() {
    let rolled_back = view(3, "RolledBack", Some("1 of 1 updated devices failed"));
    let (line, o) = judge(&web(2, 3), Some(&rolled_back), true);
    assert_eq!(o, Some(WaitOutcome::RolledBack));
    assert_eq!(
        line,
        "unchanged, but revision 3 was rolled back: 1 of 1 updated devices failed; apply a fixed spec or `drover-hub rollout restart web`"
    );
    // One in progress is waited for; a complete one is done.
    let (_, o) = judge(&web(2, 3), Some(&view(3, "Progressing", None)), true);
    assert_eq!(o, None);
    let (_, o) = judge(&web(2, 3), Some(&view(3, "Complete", None)), true);
    assert_eq!(o, Some(WaitOutcome::Complete));
}

#[test]
fn status_and_history_say_what_devices_run() {
    let mut v = RolloutStatusView {
        deployment: "web".into(),
        revision: 1,
        strategy: "RollingUpdate (canary 1, batchSize 2)".into(),
        rolling_update: true,
        rollout: None,
        devices: vec![],
    };
    let text = status_text(&v, 0);
    assert!(
        text.contains("Rollout:     none yet (the first revision goes to every device at once; later ones roll out)"),
        "{text}"
    );
    v.rolling_update = false;
    assert!(status_text(&v, 0).contains("none (every device gets each revision at once)"));
    let rev = |revision, mark: Option<&str>| RevisionView {
        revision,
        created_ms: 0,
        images: vec!["oci:/x".into()],
        cause: "app.yaml".into(),
        current: revision == 3,
        mark: mark.map(str::to_owned),
    };
    let table = history_table(
        &[
            rev(1, None),
            rev(2, Some("running")),
            rev(3, Some("rolled back")),
        ],
        0,
    );
    assert!(
        table.contains("2 (running)") && table.contains("3 (rolled back)"),
        "{table}"
    );
    assert!(!table.contains("current"), "{table}");
}

#[test]
fn a_paused_rollout_says_how_to_go_on() {
    let (line, o) = judge(&web(1, 2), Some(&view(2, "Paused", None)), false);
    assert_eq!(o, None);
    assert!(
        line.ends_with("· Paused — run `drover-hub rollout resume web` to go on"),
        "{line}"
    );
}

#[test]
fn one_device_is_one_device() {
    let answer = |n| RolloutAnswer {
        message: "deployment/web paused".into(),
        changed_devices: n,
        rollout: None,
    };
    assert_eq!(
        action_text(&answer(1)),
        "deployment/web paused (1 device gets a new desired state)\n"
    );
    assert!(action_text(&answer(2)).contains("(2 devices get "));
}
