//! The command loop of `drover-loadgen fleet` and its simple commands (`connect`, `mark`,
//! `wait_resync`, `heartbeat`, `counters`, `revisions`, `quit`); `apply` is in
//! [`super::apply`].
//! Answers are one JSON object per line on stdout; nothing else may be printed there.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::apply::ApplyCmd;
use super::{Args, Fleet};
use crate::{Res, round3};

impl Fleet {
    /// Starts every device; waits until all acknowledged a first desired state and the hub
    /// recorded those statuses.
    async fn connect(&mut self, timeout: Duration) -> Res<Value> {
        if self.started {
            return Err("connect: the devices are already started".to_owned());
        }
        let mut http = crate::Http::new(&self.args.api);
        let accepted0 = crate::stat(&mut http, "status_accepted").await?;
        let errors0 = self.errors.clone();
        let start = Instant::now();
        let deadline = start + timeout;
        self.start_devices()?;
        let mut connected_s = None;
        while self.n_synced < self.n {
            if connected_s.is_none() && self.n_connected == self.n {
                connected_s = Some(start.elapsed().as_secs_f64());
            }
            if self.next_event(deadline).await.is_none() {
                return Ok(json!({"ok": false, "failure": format!(
                    "timed out after {} s: {}/{} connected, {}/{} acknowledged their first desired state",
                    timeout.as_secs(), self.n_connected, self.n, self.n_synced, self.n),
                    "errors": self.errors_since(&errors0), "error_samples": self.error_samples}));
            }
        }
        let synced_s = start.elapsed().as_secs_f64();
        let target = accepted0 + self.n as u64;
        let hub = super::apply::wait_accepted(self.args.api.clone(), target, deadline);
        let hub_s = self.drain_while(hub).await?;
        Ok(json!({
            "ok": hub_s.is_some(),
            "failure": hub_s.is_none().then_some("the hub did not record every first status in time"),
            "n": self.n,
            "connect_all_s": round3(connected_s.unwrap_or(synced_s)),
            "first_sync_devices_s": round3(synced_s),
            "first_sync_hub_s": hub_s.map(|t| round3((t - start).as_secs_f64())),
            "errors": self.errors_since(&errors0),
            "error_samples": self.error_samples,
        }))
    }

    /// From now on, `wait_resync` counts the desired states the devices receive.
    fn mark(&mut self) -> Value {
        let now = Instant::now();
        self.mark = Some(now);
        self.seen.iter_mut().for_each(|s| *s = false);
        self.n_seen = 0;
        self.first_seen = None;
        self.all_seen = None;
        self.connects_since_mark = 0;
        self.last_connect = None;
        json!({"ok": true, "mark_unix": self.unix(now)})
    }

    async fn wait_resync(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        while self.n_seen < self.n {
            if self.next_event(deadline).await.is_none() {
                break;
            }
        }
        let u = |t: Option<Instant>| t.map(|t| round3(self.unix(t)));
        json!({
            "ok": self.n_seen == self.n,
            "failure": (self.n_seen < self.n).then(|| format!(
                "timed out after {} s: {}/{} devices received a desired state ({} connected)",
                timeout.as_secs(), self.n_seen, self.n, self.n_connected)),
            "received": self.n_seen,
            "first_received_unix": u(self.first_seen),
            "all_received_unix": u(self.all_seen),
            "reconnects": self.connects_since_mark,
            "last_connect_unix": u(self.last_connect),
            "connected": self.n_connected,
        })
    }

    fn counters(&self) -> Value {
        let t = self.telemetry_shared.as_ref();
        let load = |f: fn(&crate::telemetry::TelemetryShared) -> u64| t.map_or(0, |t| f(t));
        json!({"ok": true, "connected": self.n_connected, "synced": self.n_synced,
               "telemetry_sent": load(|t| t.sent.load(std::sync::atomic::Ordering::Relaxed)),
               "telemetry_not_queued": load(|t| t.not_queued.load(std::sync::atomic::Ordering::Relaxed)),
               "errors": self.errors_since(&HashMap::new()), "error_samples": self.error_samples})
    }
}

/// Runs the command loop until `quit` or the end of stdin.
pub async fn run(args: Args) -> Res<Value> {
    let mut fleet = Fleet::load(args)?;
    let mut lines = stdin_lines();
    eprintln!(
        "drover-loadgen fleet: {} devices, waiting for commands",
        fleet.n
    );
    loop {
        let line = tokio::select! {
            l = lines.recv() => l,
            ev = fleet.rx.recv() => { ev.map(|ev| fleet.on(ev)); continue; }
        };
        let Some(line) = line else {
            return Ok(json!({"ok": true, "bye": "end of input"}));
        };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match command(&mut fleet, &line).await {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(json!({"ok": true, "bye": "quit"})),
            Err(e) => json!({"ok": false, "failure": e}),
        };
        println!("{answer}");
    }
}

/// Lines of stdin, read on a thread of their own (the channel ends with stdin).
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// One command line; `None` for `quit`.
async fn command(fleet: &mut Fleet, line: &str) -> Res<Option<Value>> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("bad command {line:?}: {e}"))?;
    let secs = |k: &str| Duration::from_secs(v[k].as_u64().unwrap_or(120));
    Ok(Some(match v["cmd"].as_str().unwrap_or_default() {
        "connect" => fleet.connect(secs("timeout_s")).await?,
        "apply" => ApplyCmd::parse(&v, fleet)?.run(fleet).await?,
        "mark" => fleet.mark(),
        "wait_resync" => fleet.wait_resync(secs("timeout_s")).await,
        "heartbeat" => {
            let ms = v["interval_ms"]
                .as_u64()
                .ok_or("heartbeat needs interval_ms")?;
            fleet.heartbeat.send_replace(ms);
            json!({"ok": true, "interval_ms": ms})
        }
        "telemetry" => {
            let ms = v["interval_ms"]
                .as_u64()
                .ok_or("telemetry needs interval_ms")?;
            fleet.telemetry.send_replace(ms);
            json!({"ok": true, "interval_ms": ms})
        }
        "counters" => fleet.counters(),
        "revisions" => {
            let r = v["revision"].as_u64().ok_or("revisions needs revision")?;
            fleet.revision_receipts(r)
        }
        "quit" => return Ok(None),
        other => return Err(format!("unknown command {other:?} in {line:?}")),
    }))
}
