//! Rollouts on the controller: a real store, statuses ingested as sealed messages, the
//! desired states read back from the outbox and verified.

use drover_protocol::auth::seal_status;
use drover_protocol::{ContainerStatus, Health, WorkloadSpec};

use super::*;
use crate::views::RolloutAction;

const T: u64 = 1_000_000;

/// A Deployment `web` on `role: sensor` devices running `image`; `strategy` is the YAML
/// of `spec.strategy` (empty: none).
fn web(image: &str, strategy: &str) -> FileText {
    let strategy = if strategy.is_empty() {
        String::new()
    } else {
        format!("  strategy: {strategy}\n")
    };
    file(
        "web.yaml",
        &format!(
            "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector:\n    matchLabels: {{role: sensor}}\n{strategy}  template:\n    spec:\n      containers:\n        - name: main\n          image: {image}\n"
        ),
    )
}

const ROLLING: &str =
    "{type: RollingUpdate, canary: 1, batchSize: 2, healthTimeout: 60s, failureThreshold: 1}";

struct Fleet {
    dir: tempfile::TempDir,
    c: Controller,
    rx: UnboundedReceiver<Out>,
    creds: BTreeMap<String, String>,
}

/// Five registered `role: sensor` devices pi-1..pi-5, online (each reported once).
fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = controller(dir.path());
    let mut creds = BTreeMap::new();
    for i in 1..=5 {
        let name = format!("pi-{i}");
        let added = c.add_device(&name, labels("sensor"), 1).unwrap();
        creds.insert(name, added.credential);
    }
    published(&mut rx, &c);
    let mut f = Fleet { dir, c, rx, creds };
    for i in 1..=5 {
        f.report(&format!("pi-{i}"), None, T);
    }
    f
}

impl Fleet {
    /// `device` reports `web` at `revision`: `Some((revision, None))` ready,
    /// `Some((revision, Some(msg)))` running but its readiness probe failing; `None`
    /// reports no workload.
    fn report(&mut self, device: &str, web: Option<(u64, Option<&str>)>, at: u64) {
        let workloads = web
            .map(|(revision, failing)| {
                let container = ContainerStatus {
                    health: if failing.is_some() {
                        Health::Unhealthy
                    } else {
                        Health::Healthy
                    },
                    ready: failing.is_none(),
                    probe_message: failing.map(str::to_owned),
                    started_at_ms: Some(at - 1),
                    ..container_status()
                };
                WorkloadStatus {
                    name: Name::new("web").unwrap(),
                    phase: Phase::Running,
                    restarts: 0,
                    containers: vec![container],
                    last_error: None,
                    reason: None,
                    revision,
                    rolled_back: None,
                }
            })
            .into_iter()
            .collect();
        let st = DeviceStatus {
            device: Name::new(device).unwrap(),
            observed_generation: 1,
            time_ms: at,
            workloads,
            capacity: Default::default(),
        };
        let cred = self.creds[device].clone();
        let topic = format!("drover/v1/dev/{device}/status");
        ingest(
            &mut self.c,
            &topic,
            &seal_status(&st, cred.as_bytes()).unwrap(),
            at,
        );
        self.c.step_rollouts(at);
    }

    /// Device → revision of `web` in the desired states published since the last call.
    fn published(&mut self) -> BTreeMap<String, WorkloadSpec> {
        published(&mut self.rx, &self.c)
            .into_iter()
            .filter_map(|d| {
                let w = d.workloads.into_iter().find(|w| w.name.as_str() == "web")?;
                Some((d.device.to_string(), w))
            })
            .collect()
    }

    fn revisions(&mut self) -> BTreeMap<String, u64> {
        self.published()
            .into_iter()
            .map(|(d, w)| (d, w.revision))
            .collect()
    }
}

fn container_status() -> ContainerStatus {
    ContainerStatus {
        pid: Some(7),
        ..ContainerStatus::new(
            Name::new("main").unwrap(),
            "oci:/x".to_owned(),
            Phase::Running,
        )
    }
}

fn revs(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(d, r)| ((*d).to_owned(), *r)).collect()
}

/// Revision 1 everywhere, then revision 2 rolled out: canary pi-1, then pi-2+pi-3, then
/// pi-4+pi-5, each batch only after the previous one reported healthy.
fn roll_out_revision_2(f: &mut Fleet) {
    let r = f.c.apply(&[web("oci:/a", ROLLING)], false, T).unwrap();
    assert!(
        r.rollouts.is_empty(),
        "a new Deployment goes everywhere at once"
    );
    let p = f.published();
    assert_eq!(p.len(), 5);
    assert!(p.values().all(|w| w.revision == 1 && w.fallback.is_none()));
    for i in 1..=5 {
        f.report(&format!("pi-{i}"), Some((1, None)), T + 10);
    }
    let r = f.c.apply(&[web("oci:/b", ROLLING)], false, T + 20).unwrap();
    assert_eq!(
        r.rollouts,
        [crate::views::RolloutRef {
            deployment: "web".into(),
            from: 1,
            to: 2
        }]
    );
    let p = f.published();
    assert_eq!(p.keys().collect::<Vec<_>>(), ["pi-1"], "the canary only");
    let canary = &p["pi-1"];
    assert_eq!(canary.revision, 2);
    assert_eq!(canary.health_timeout_ms, 60_000);
    let fallback = canary.fallback.as_ref().unwrap();
    assert_eq!(fallback.revision, 1);
    assert_eq!(fallback.containers[0].image.to_string(), "oci:/a");
    // Not yet healthy: nothing moves.
    f.report("pi-1", Some((2, Some("starting"))), T + 30);
    assert!(f.published().is_empty());
    f.report("pi-1", Some((2, None)), T + 40);
    assert_eq!(f.revisions(), revs(&[("pi-2", 2), ("pi-3", 2)]));
    f.report("pi-2", Some((2, None)), T + 50);
    assert!(f.published().is_empty(), "pi-3 is not healthy yet");
    f.report("pi-3", Some((2, None)), T + 60);
    assert_eq!(f.revisions(), revs(&[("pi-4", 2), ("pi-5", 2)]));
    f.report("pi-4", Some((2, None)), T + 70);
    f.report("pi-5", Some((2, None)), T + 80);
    assert!(f.published().is_empty(), "completion re-signs nothing");
    let view = reader(f.dir.path(), &f.c)
        .rollout_status("web", T + 80)
        .unwrap();
    let r = view.rollout.unwrap();
    assert_eq!(
        (r.phase.as_str(), r.updated, r.healthy, r.pending),
        ("Complete", 5, 5, 0)
    );
    assert_eq!(
        view.strategy,
        "RollingUpdate (canary 1, batchSize 2, healthTimeout 1m, failureThreshold 1)"
    );
}

#[test]
fn a_healthy_revision_rolls_out_canary_first_then_in_batches() {
    let mut f = fleet();
    roll_out_revision_2(&mut f);
    let events = reader(f.dir.path(), &f.c)
        .deployment("web", T + 90)
        .unwrap()
        .events;
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    for want in [
        "Revision",
        "RolloutStarted",
        "RolloutBatch",
        "DeviceHealthy",
        "RolloutComplete",
    ] {
        assert!(reasons.contains(&want), "{want} in {reasons:?}");
    }
}

#[test]
fn a_failing_canary_is_rolled_back_and_no_other_device_gets_the_revision() {
    let mut f = fleet();
    roll_out_revision_2(&mut f);
    let r =
        f.c.apply(&[web("oci:/bad", ROLLING)], false, T + 100)
            .unwrap();
    assert_eq!((r.rollouts[0].from, r.rollouts[0].to), (2, 3));
    assert_eq!(f.revisions(), revs(&[("pi-1", 3)]));
    f.report(
        "pi-1",
        Some((3, Some("exit status 1: /ok missing"))),
        T + 110,
    );
    // Within the health timeout: still waiting (the timer steps too).
    f.c.step_rollouts(T + 100 + 59_000);
    assert!(f.published().is_empty());
    f.report(
        "pi-1",
        Some((3, Some("exit status 1: /ok missing"))),
        T + 100 + 60_000,
    );
    let back = f.published();
    assert_eq!(
        back.keys().collect::<Vec<_>>(),
        ["pi-1"],
        "only the canary had it"
    );
    assert_eq!(back["pi-1"].revision, 2);
    assert_eq!(back["pi-1"].containers[0].image.to_string(), "oci:/b");
    // Later steps and statuses change nothing: the others never get revision 3.
    for i in 2..=5 {
        f.report(&format!("pi-{i}"), Some((2, None)), T + 100 + 61_000);
    }
    f.c.step_rollouts(T + 200_000);
    assert!(f.published().is_empty());
    let read = reader(f.dir.path(), &f.c);
    let d = read.deployment("web", T + 200_000).unwrap();
    let r = d.rollout.unwrap();
    assert_eq!(
        (r.phase.as_str(), r.from, r.to, r.failed),
        ("RolledBack", 2, 3, 1)
    );
    let reason = r.reason.unwrap();
    assert!(
        reason.contains("pi-1") && reason.contains("/ok missing"),
        "{reason}"
    );
    let status = read.rollout_status("web", T + 200_000).unwrap();
    let states: Vec<(&str, &str, u64)> = status
        .devices
        .iter()
        .map(|d| (d.device.as_str(), d.state.as_str(), d.revision))
        .collect();
    assert_eq!(states[0], ("pi-1", "Failed", 2));
    assert!(
        states[1..].iter().all(|s| s.1 == "Stable" && s.2 == 2),
        "{states:?}"
    );
    // Undo after a rollback says so; restart tries revision 3's spec again as revision 4
    // (on devices still online: a rollout finds none online completes at once).
    for i in 1..=5 {
        f.report(&format!("pi-{i}"), Some((2, None)), T + 199_000);
    }
    assert!(
        f.c.rollout_action("web", RolloutAction::Undo, T + 200_001)
            .is_err()
    );
    let a =
        f.c.rollout_action("web", RolloutAction::Restart, T + 200_002)
            .unwrap();
    let started = a.rollout.unwrap();
    assert_eq!((started.from, started.to), (2, 4));
    assert_eq!(f.revisions(), revs(&[("pi-1", 4)]));
}

#[test]
fn revisions_are_listed_and_an_unchanged_apply_makes_none() {
    let mut f = fleet();
    roll_out_revision_2(&mut f);
    let r =
        f.c.apply(&[web("oci:/b", ROLLING)], false, T + 100)
            .unwrap();
    assert_eq!(r.results, ["deployment/web unchanged"]);
    assert!(r.rollouts.is_empty());
    // A strategy change alone is no new revision either.
    let other = "{type: RollingUpdate, canary: 2, batchSize: 2, healthTimeout: 60s}";
    let r = f.c.apply(&[web("oci:/b", other)], false, T + 110).unwrap();
    assert_eq!(r.results, ["deployment/web configured"]);
    assert!(r.rollouts.is_empty() && f.published().is_empty());
    let h = reader(f.dir.path(), &f.c).history("web").unwrap();
    let listed: Vec<(u64, &str, bool, Option<&str>)> = h
        .iter()
        .map(|r| {
            let mark = r.mark.as_deref();
            (r.revision, r.images[0].as_str(), r.current, mark)
        })
        .collect();
    assert_eq!(
        listed,
        [
            (1, "oci:/a", false, None),
            (2, "oci:/b", true, Some("running"))
        ]
    );
    assert_eq!(h[1].cause, "web.yaml");
    // Undo with no rollout in progress: revision 1's spec again, as revision 3, rolled out.
    let a =
        f.c.rollout_action("web", RolloutAction::Undo, T + 120)
            .unwrap();
    let r = a.rollout.unwrap();
    assert_eq!((r.from, r.to), (2, 3));
    let p = f.published();
    assert_eq!(p.keys().collect::<Vec<_>>(), ["pi-1", "pi-2"], "canary: 2");
    assert_eq!(p["pi-1"].containers[0].image.to_string(), "oci:/a");
}

#[test]
fn pause_holds_the_next_batch_and_undo_reverts_at_once() {
    let mut f = fleet();
    f.c.apply(&[web("oci:/a", ROLLING)], false, T).unwrap();
    f.c.apply(&[web("oci:/b", ROLLING)], false, T + 1).unwrap();
    assert_eq!(f.revisions().len(), 5);
    f.report("pi-1", Some((2, None)), T + 2);
    assert_eq!(f.revisions(), revs(&[("pi-2", 2), ("pi-3", 2)]));
    f.c.rollout_action("web", RolloutAction::Pause, T + 3)
        .unwrap();
    f.report("pi-2", Some((2, None)), T + 4);
    f.report("pi-3", Some((2, None)), T + 5);
    assert!(f.published().is_empty(), "paused");
    f.c.rollout_action("web", RolloutAction::Undo, T + 6)
        .unwrap();
    assert_eq!(
        f.revisions(),
        revs(&[("pi-1", 1), ("pi-2", 1), ("pi-3", 1)])
    );
    // What the devices are now, not what they were while it rolled out.
    let read = reader(f.dir.path(), &f.c);
    let status = read.rollout_status("web", T + 7).unwrap();
    let states: Vec<(&str, u64)> = status
        .devices
        .iter()
        .map(|d| (d.state.as_str(), d.revision))
        .collect();
    assert_eq!(
        states,
        [
            ("RolledBack", 1),
            ("RolledBack", 1),
            ("RolledBack", 1),
            ("Stable", 1),
            ("Stable", 1)
        ]
    );
    let marks: Vec<(u64, Option<String>, bool)> = read
        .history("web")
        .unwrap()
        .into_iter()
        .map(|r| (r.revision, r.mark, r.current))
        .collect();
    assert_eq!(
        marks,
        [
            (1, Some("running".into()), false),
            (2, Some("rolled back".into()), true)
        ]
    );
}

#[test]
fn an_all_at_once_deployment_changes_every_device_at_once_without_revisions_on_the_wire() {
    let mut f = fleet();
    let r = f.c.apply(&[web("oci:/a", "")], false, T).unwrap();
    assert!(r.rollouts.is_empty());
    let p = f.published();
    assert_eq!(p.len(), 5);
    assert!(
        p.values()
            .all(|w| w.revision == 0 && w.fallback.is_none() && w.health_timeout_ms == 0)
    );
    let r = f.c.apply(&[web("oci:/b", "")], false, T + 1).unwrap();
    assert!(r.rollouts.is_empty());
    let p = f.published();
    assert_eq!(p.len(), 5, "every device at once");
    assert!(
        p.values()
            .all(|w| w.containers[0].image.to_string() == "oci:/b")
    );
    assert_eq!(reader(f.dir.path(), &f.c).history("web").unwrap().len(), 2);
    // A reopened hub republishes nothing new.
    drop(f.c);
    let (mut c, mut rx) = controller(f.dir.path());
    c.resync(T + 2).unwrap();
    assert!(published(&mut rx, &c).is_empty());
}

#[test]
fn a_rollout_survives_a_hub_restart() {
    let mut f = fleet();
    f.c.apply(&[web("oci:/a", ROLLING)], false, T).unwrap();
    f.c.apply(&[web("oci:/b", ROLLING)], false, T + 1).unwrap();
    f.published();
    let (c, rx) = controller(f.dir.path());
    f.c = c;
    f.rx = rx;
    f.c.resync(T + 2).unwrap();
    assert!(f.published().is_empty(), "the same states after a restart");
    f.report("pi-1", Some((2, None)), T + 3);
    assert_eq!(f.revisions(), revs(&[("pi-2", 2), ("pi-3", 2)]));
}

#[test]
fn an_updated_canary_that_goes_silent_holds_the_rollout_and_status_says_so() {
    let mut f = fleet();
    f.c.apply(&[web("oci:/a", ROLLING)], false, T).unwrap();
    f.published();
    for i in 1..=5 {
        f.report(&format!("pi-{i}"), Some((1, None)), T + 10);
    }
    f.c.apply(&[web("oci:/b", ROLLING)], false, T + 20).unwrap();
    assert_eq!(f.revisions(), revs(&[("pi-1", 2)]));
    // The canary's agent dies right after it got revision 2; the others keep reporting.
    let later = T + 200_000;
    for i in 2..=5 {
        f.report(&format!("pi-{i}"), Some((1, None)), later);
    }
    f.c.step_rollouts(later);
    assert!(f.published().is_empty(), "no batch on an unproven revision");
    let status = reader(f.dir.path(), &f.c)
        .rollout_status("web", later)
        .unwrap();
    let canary = &status.devices[0];
    assert_eq!(
        (canary.device.as_str(), canary.online, canary.state.as_str()),
        ("pi-1", false, "Updating")
    );
    assert_eq!(
        canary.message.as_deref(),
        Some("offline: the rollout waits for it (or `rollout undo`)")
    );
    // It returns with revision 2 ready: the next batch starts.
    f.report("pi-1", Some((2, None)), later + 1);
    assert_eq!(f.revisions(), revs(&[("pi-2", 2), ("pi-3", 2)]));
}

#[test]
fn an_unchanged_apply_names_the_rolled_back_or_active_rollout_of_its_revision() {
    let mut f = fleet();
    roll_out_revision_2(&mut f);
    let r = f.c.apply(&[web("oci:/b", ROLLING)], false, T + 90).unwrap();
    assert!(r.unchanged_rollouts.is_empty(), "revision 2 completed");
    f.c.apply(&[web("oci:/bad", ROLLING)], false, T + 100)
        .unwrap();
    let ref_2_3 = crate::views::RolloutRef {
        deployment: "web".into(),
        from: 2,
        to: 3,
    };
    // In progress: `apply --wait` of the same file waits for it.
    let r =
        f.c.apply(&[web("oci:/bad", ROLLING)], true, T + 101)
            .unwrap();
    assert_eq!(r.results, ["deployment/web unchanged"]);
    assert_eq!(r.unchanged_rollouts, std::slice::from_ref(&ref_2_3));
    f.c.rollout_action("web", RolloutAction::Undo, T + 102)
        .unwrap();
    // Rolled back (here: undone): the same file again runs nowhere, and says so.
    let r =
        f.c.apply(&[web("oci:/bad", ROLLING)], false, T + 103)
            .unwrap();
    assert!(r.rollouts.is_empty());
    assert_eq!(r.unchanged_rollouts, [ref_2_3]);
}

#[test]
fn after_a_reconnect_a_proven_rollout_waits_to_hear_the_devices_before_going_on() {
    // Found by review: after a hub restart every device looks offline until it reports;
    // a rollout proven on its canary then found no online device to update and
    // completed, so the rest of the fleet got the revision at once as it came back.
    let mut f = fleet();
    f.c.apply(&[web("oci:/a", ROLLING)], false, T).unwrap();
    for i in 1..=5 {
        f.report(&format!("pi-{i}"), Some((1, None)), T + 10);
    }
    f.c.apply(&[web("oci:/b", ROLLING)], false, T + 20).unwrap();
    f.published();
    f.report("pi-1", Some((2, None)), T + 40);
    assert_eq!(f.revisions(), revs(&[("pi-2", 2), ("pi-3", 2)]));
    // The hub is away for longer than offline_after, then reconnects.
    let back = T + 500_000;
    f.c.handle(Command::Connected);
    f.c.reconnected_ms = Some(back);
    f.published();
    f.c.step_rollouts(back + 1_000);
    let view = reader(f.dir.path(), &f.c)
        .rollout_status("web", back + 1_000)
        .unwrap();
    assert_eq!(
        view.rollout.unwrap().phase,
        "Progressing",
        "not completed blind"
    );
    assert!(f.published().is_empty(), "no device moved");
    // The devices report again: the batches go on one by one.
    for i in 1..=5 {
        let rev = if i <= 3 { 2 } else { 1 };
        f.report(&format!("pi-{i}"), Some((rev, None)), back + 2_000);
    }
    assert_eq!(f.revisions(), revs(&[("pi-4", 2), ("pi-5", 2)]));
}
