//! The `apply` command of `drover-loadgen fleet`: runs `drover-hub apply -f MANIFEST` and
//! times it until every device (or the one named by `wait`) has acknowledged a newer
//! generation (PUBACK of its status, timed in the device task), and until the hub has
//! recorded those statuses (`status_accepted` in `GET /v1/stats`, polled every 10 ms by a
//! task of its own). Meanwhile it samples the hub's (and an external broker's) RSS and
//! CPU time, and optionally probes the API ([`crate::probe`]). It never judges a figure.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Fleet;
use crate::probe::Probe;
use crate::{Http, Res, cpu_ticks, round3, rss_kib, stat, ticks_s};

pub struct ApplyCmd {
    manifest: PathBuf,
    hub_pid: u32,
    broker_pid: Option<u32>,
    /// Only this device must acknowledge (the others must not change).
    wait: Option<usize>,
    timeout: Duration,
    probe: Option<(Vec<String>, Duration)>,
}

/// RSS peaks and CPU time of the hub and, when external, the broker.
struct Usage {
    hub_pid: u32,
    broker_pid: Option<u32>,
    hub_cpu0: u64,
    broker_cpu0: u64,
    hub_peak: u64,
    broker_peak: u64,
}

impl Usage {
    fn start(hub_pid: u32, broker_pid: Option<u32>) -> Res<Usage> {
        Ok(Usage {
            hub_pid,
            broker_pid,
            hub_cpu0: cpu_ticks(hub_pid)?,
            broker_cpu0: broker_pid.map(cpu_ticks).transpose()?.unwrap_or(0),
            hub_peak: rss_kib(hub_pid)?,
            broker_peak: broker_pid.map(rss_kib).transpose()?.unwrap_or(0),
        })
    }

    fn sample(&mut self) {
        self.hub_peak = self.hub_peak.max(rss_kib(self.hub_pid).unwrap_or(0));
        if let Some(p) = self.broker_pid {
            self.broker_peak = self.broker_peak.max(rss_kib(p).unwrap_or(0));
        }
    }

    fn finish(mut self) -> Res<Value> {
        self.sample();
        let broker = match self.broker_pid {
            Some(p) => json!({"rss_peak_kib": self.broker_peak,
                              "cpu_s": round3(ticks_s(cpu_ticks(p)? - self.broker_cpu0))}),
            None => Value::Null,
        };
        Ok(json!({
            "hub_rss_peak_kib": self.hub_peak,
            "hub_cpu_s": round3(ticks_s(cpu_ticks(self.hub_pid)? - self.hub_cpu0)),
            "broker": broker,
        }))
    }
}

impl ApplyCmd {
    pub fn parse(v: &Value, fleet: &Fleet) -> Res<ApplyCmd> {
        let wait = match v["wait"].as_str() {
            None => None,
            Some(name) => Some(
                *fleet
                    .index
                    .get(name)
                    .ok_or_else(|| format!("apply: wait: no simulated device {name:?}"))?,
            ),
        };
        let probe = v["probe"].as_object().map(|p| {
            let paths = p["paths"].as_array().into_iter().flatten();
            let paths = paths
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect();
            (
                paths,
                Duration::from_millis(p["interval_ms"].as_u64().unwrap_or(10)),
            )
        });
        Ok(ApplyCmd {
            manifest: v["manifest"].as_str().ok_or("apply needs manifest")?.into(),
            hub_pid: v["hub_pid"].as_u64().ok_or("apply needs hub_pid")? as u32,
            broker_pid: v["broker_pid"].as_u64().map(|p| p as u32),
            wait,
            timeout: Duration::from_secs(v["timeout_s"].as_u64().unwrap_or(120)),
            probe,
        })
    }

    pub async fn run(self, fleet: &mut Fleet) -> Res<Value> {
        let api = fleet.args.api.clone();
        let before = fleet.acked.clone();
        let errors0 = fleet.errors.clone();
        let expected = if self.wait.is_some() { 1 } else { fleet.n };
        let accepted0 = stat(&mut Http::new(&api), "status_accepted").await?;
        let mut usage = Usage::start(self.hub_pid, self.broker_pid)?;
        let probe = self
            .probe
            .as_ref()
            .map(|(paths, every)| Probe::start(&api, paths, *every));
        let t0 = Instant::now();
        let deadline = t0 + self.timeout;
        let child = tokio::process::Command::new(&fleet.args.hub_bin)
            .arg("apply")
            .arg("-f")
            .arg(&self.manifest)
            .env("DROVER_HUB_API", format!("http://{api}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {} apply: {e}", fleet.args.hub_bin.display()))?;
        let mut apply = tokio::spawn(child.wait_with_output());
        let mut hub = wait_accepted(api, accepted0 + expected as u64, deadline);
        let (mut apply_out, mut hub_at, mut failure) = (None, None, None);
        let (mut done, mut others, mut first, mut last) = (0usize, 0usize, None, None);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        while failure.is_none() && (done < expected || hub_at.is_none() || apply_out.is_none()) {
            tokio::select! {
                out = &mut apply, if apply_out.is_none() => {
                    let out = out.map_err(|e| format!("apply task: {e}"))?
                        .map_err(|e| format!("apply: {e}"))?;
                    if !out.status.success() {
                        failure = Some(format!("drover-hub apply failed ({}): {}", out.status,
                            String::from_utf8_lossy(&out.stderr).trim()));
                    }
                    apply_out = Some((t0.elapsed().as_secs_f64(), out));
                }
                r = &mut hub, if hub_at.is_none() => match r.map_err(|e| format!("stats task: {e}"))?? {
                    Some(t) => hub_at = Some(t),
                    None => failure = Some("the hub did not record the statuses in time".to_owned()),
                },
                ack = fleet.next_event(deadline) => match ack {
                    Some(Some(a)) if a.from <= before[a.device] && a.to > before[a.device] => {
                        if self.wait.is_none_or(|w| w == a.device) {
                            done += 1;
                            first.get_or_insert(a.at);
                            last = Some(a.at);
                        } else {
                            others += 1;
                        }
                    }
                    Some(_) => {}
                    None => failure = Some(format!(
                        "timed out after {} s: {done}/{expected} devices acknowledged the new generation",
                        self.timeout.as_secs())),
                },
                _ = tick.tick() => usage.sample(),
            }
        }
        if failure.is_some() {
            hub.abort();
        }
        // When the last awaited device received its new desired state.
        let received = (0..fleet.n)
            .filter(|i| self.wait.is_none_or(|w| w == *i) && fleet.received[*i].0 > before[*i])
            .map(|i| fleet.received[i].1)
            .max();
        let since =
            |t: Option<Instant>| t.map(|t| round3(t.saturating_duration_since(t0).as_secs_f64()));
        let stdout = apply_out
            .as_ref()
            .map(|(_, o)| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        Ok(json!({
            "ok": failure.is_none(),
            "failure": failure,
            "expected": expected,
            "acknowledged": done,
            "others_changed": others,
            "apply_cmd_s": apply_out.as_ref().map(|(s, _)| round3(*s)),
            "apply_stdout": stdout,
            "first_ack_s": since(first),
            "received_s": since(received),
            "devices_s": since(last),
            "hub_s": since(hub_at),
            "usage": usage.finish()?,
            "probe": probe.map(Probe::finish),
            "errors": fleet.errors_since(&errors0),
        }))
    }
}

/// A task polling `status_accepted` every 10 ms until it reaches `target` (its instant)
/// or `deadline` passes (`None`).
pub fn wait_accepted(
    api: String,
    target: u64,
    deadline: Instant,
) -> tokio::task::JoinHandle<Res<Option<Instant>>> {
    tokio::spawn(async move {
        let mut http = Http::new(&api);
        loop {
            if stat(&mut http, "status_accepted").await? >= target {
                return Ok(Some(Instant::now()));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}
