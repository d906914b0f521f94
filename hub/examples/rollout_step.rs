//! Controller overhead per rollout step (issue 11; run by bench/rollout.py): the pure work
//! the hub's controller does for one step of a rollout over N simulated devices, each
//! piece timed with `Instant` over many iterations; JSON on stdout.
//!
//!   cargo run --release --locked -p drover-hub --example rollout_step -- [DEVICES] [ITERATIONS]
//!
//! A Deployment (`canary: 10%`, `batchSize: 10%`, `minReadySeconds: 0`) moves from revision
//! 1 to 2 batch by batch, through the hub's own functions. At every batch it times:
//! - `idle`: `progress::step_all` while the batch has not reported yet (what runs after
//!   every status batch and every second during a rollout, deciding nothing);
//! - `observations`: what every target reports, as the step reads it;
//! - `step`: `rollout::step` alone on those observations, when the batch turns healthy and
//!   the next one starts; `advance`: `progress::step_all` then (observations + step);
//! - `clone`: the candidate snapshot the controller stages a step on;
//! - `plan`: the fleet plan a moving step commits (every device compared);
//! - `sign`: encoding and signing the batch's desired states on one thread (the hub
//!   spreads this over the cores from 64 devices on).
//!
//! The store transaction is not here (bench/rollout.py reads it from the hub's log). This
//! only measures; it never judges a figure.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use drover_hub::fleet::progress::{next_revision, observations, step_all, targets};
use drover_hub::fleet::rollout::{self, DeviceState, Phase};
use drover_hub::fleet::{
    Deployment, DesiredEntry, DeviceEntry, FleetSnapshot, Object, Reported, parse_objects, plan,
};
use drover_protocol::auth::sign_desired;
use drover_protocol::{DesiredState, Name};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const START_MS: u64 = 1_700_000_000_000;
const KINDS: [&str; 7] = [
    "idle",
    "observations",
    "step",
    "advance",
    "clone",
    "plan",
    "sign",
];

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let iterations: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let (mut s, dep) = fleet(n)?;
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut samples: BTreeMap<&str, Vec<f64>> = KINDS.iter().map(|k| (*k, vec![])).collect();
    let mut steps = Vec::new();
    let mut now = START_MS;
    loop {
        now += 1000;
        let r = s.revisions[&dep].rollout.clone().ok_or("no rollout")?;
        if r.phase == Phase::Complete {
            break;
        }
        let updating: Vec<Name> = r
            .updated
            .iter()
            .filter(|(_, u)| u.state == DeviceState::Updating)
            .map(|(d, _)| d.clone())
            .collect();
        let mut medians = serde_json::Map::new();
        let mut note = |kind: &'static str, v: Vec<f64>| {
            medians.insert(kind.to_owned(), json!(round(median(&v))));
            samples.entry(kind).or_default().extend(v);
        };
        if !updating.is_empty() {
            note("idle", time(iterations, || step_all(&s, now)));
        }
        report(&mut s, &dep, &updating, 2, now);
        let strategy = s.deployments[&dep].strategy.clone().ok_or("no strategy")?;
        let t = targets(&s, &dep);
        note(
            "observations",
            time(iterations, || observations(&s, &dep, &t, now)),
        );
        let obs = observations(&s, &dep, &t, now);
        note(
            "step",
            time(iterations, || rollout::step(&r, &strategy, &t, &obs, now)),
        );
        note("advance", time(iterations, || step_all(&s, now)));
        let step = step_all(&s, now)
            .remove(&dep)
            .ok_or("the step decided nothing")?;
        let outcome = match step.rollout.phase {
            Phase::Progressing => format!("batch {} starts", step.rollout.batch),
            ref other => format!("{other:?}"),
        };
        note("clone", time(iterations, || s.clone()));
        let mut next = s.clone();
        if let Some(st) = next.revisions.get_mut(&dep) {
            st.rollout = Some(step.rollout);
        }
        note("plan", time(iterations, || plan(&next, now)));
        let p = plan(&next, now);
        let states: Vec<DesiredState> = p
            .changes
            .iter()
            .map(|(d, c)| DesiredState {
                device: d.clone(),
                generation: c.generation,
                workloads: c.workloads.iter().map(|w| (**w).clone()).collect(),
            })
            .collect();
        if !states.is_empty() {
            let sign = || {
                states
                    .iter()
                    .map(|d| sign_desired(d, &key))
                    .collect::<Vec<_>>()
            };
            note("sign", time(iterations.div_ceil(10), sign));
        }
        fold(&mut next, now);
        s = next;
        steps.push(
            json!({"updated_before": r.updated.len(), "outcome": outcome,
                            "changed_devices": p.changes.len(), "median_us": medians}),
        );
    }
    let summary: serde_json::Map<String, Value> = samples
        .iter()
        .map(|(k, v)| (k.to_string(), summary(v)))
        .collect();
    let out = json!({
        "devices": n,
        "iterations": iterations,
        "strategy": "canary 10%, batchSize 10%, minReadySeconds 0",
        "us": summary,
        "steps": steps,
    });
    println!("{out}");
    Ok(())
}

fn deployment(round: &str) -> Res<Deployment> {
    let text = format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: rollbench}}\nspec:\n  selector: {{matchLabels: {{fleet: bench}}}}\n  minReadySeconds: 0\n  strategy: {{type: RollingUpdate, canary: 10%, batchSize: 10%, healthTimeout: 15s}}\n  template:\n    spec:\n      containers:\n        - name: main\n          image: oci:/var/lib/images/sensor:1.0\n          env: [{{name: ROUND, value: \"{round}\"}}]\n          resources: {{memory: 16Mi}}\n"
    );
    match parse_objects("rollbench.yaml", &text)?.remove(0) {
        Object::Deployment(d) => Ok(d),
        Object::Device(_) | Object::Config(_) => Err("not a Deployment".into()),
    }
}

/// `n` online devices running revision 1 ready, and revision 2 applied: its rollout has
/// not started a batch yet.
fn fleet(n: usize) -> Res<(FleetSnapshot, Name)> {
    let mut s = FleetSnapshot {
        offline_after_ms: 90_000,
        ..FleetSnapshot::default()
    };
    for i in 0..n {
        let labels = BTreeMap::from([("fleet".to_owned(), "bench".to_owned())]);
        let entry = DeviceEntry {
            labels: Arc::new(labels),
            last_seen_ms: START_MS,
            presence: Some(true),
            ..DeviceEntry::default()
        };
        s.devices.insert(Name::new(format!("sim-{i}"))?, entry);
    }
    let v1 = deployment("v1")?;
    let dep = v1.name.clone();
    let first = next_revision(None, None, v1.strategy.as_ref(), 1, START_MS);
    s.revisions.insert(dep.clone(), first);
    s.deployments.insert(dep.clone(), v1);
    fold(&mut s, START_MS);
    let all: Vec<Name> = s.devices.keys().cloned().collect();
    report(&mut s, &dep, &all, 1, START_MS);
    let mut old = s.deployments[&dep].template.clone();
    old.name = dep.clone();
    let v2 = deployment("v2")?;
    let state = next_revision(
        s.revisions.get(&dep),
        Some(&old),
        v2.strategy.as_ref(),
        2,
        START_MS,
    );
    s.revisions.insert(dep.clone(), state);
    s.deployments.insert(dep.clone(), v2);
    Ok((s, dep))
}

/// Plans and folds the plan in, as the controller does after committing it.
fn fold(s: &mut FleetSnapshot, now: u64) {
    let p = plan(s, now);
    s.placement = p.placement;
    for (device, change) in p.changes {
        let entry = DesiredEntry {
            generation: change.generation,
            workloads: change.workloads,
        };
        s.desired.insert(device, entry);
    }
}

/// These devices report the Deployment's `revision` running and ready since `at`.
fn report(s: &mut FleetSnapshot, dep: &Name, devices: &[Name], revision: u64, at: u64) {
    for d in devices {
        if let Some(e) = s.devices.get_mut(d) {
            let r = Reported {
                revision,
                ready_since_ms: Some(at),
                ..Reported::default()
            };
            e.reported = Arc::new(BTreeMap::from([(dep.clone(), r)]));
            e.last_seen_ms = at;
        }
    }
}

/// Microseconds of each of `iterations` calls (the result dropped inside, as the
/// controller drops it).
fn time<T>(iterations: usize, f: impl Fn() -> T) -> Vec<f64> {
    (0..iterations.max(1))
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn summary(v: &[f64]) -> Value {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    json!({"median": round(median(v)), "min": round(min), "max": round(max), "samples": v.len()})
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
