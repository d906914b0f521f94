//! `rollout status|history|pause|resume|undo|restart DEPLOYMENT` and the waiting part of
//! `apply --wait`: API calls and their printing. No rollout logic: the hub decides, this
//! only asks and shows.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::client::{Client, ClientError, escape};
use super::output::{ago, print};
use super::{CliError, Format};
use crate::views::{
    RevisionView, RolloutAction, RolloutAnswer, RolloutRef, RolloutStatusView, RolloutView,
};

/// How `apply --wait` ended; [`WaitOutcome::exit_code`] is the process's exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Every rollout completed (or none was started).
    Complete,
    /// A rollout was rolled back, undone or superseded by a newer revision.
    RolledBack,
    TimedOut,
}

impl WaitOutcome {
    /// 0 complete, 3 timed out, 4 rolled back (1 is any other error, as for every
    /// command; 2 stays clap's usage error).
    pub fn exit_code(&self) -> u8 {
        match self {
            WaitOutcome::Complete => 0,
            WaitOutcome::TimedOut => 3,
            WaitOutcome::RolledBack => 4,
        }
    }
}

/// How often `apply --wait` asks the hub.
const POLL: Duration = Duration::from_millis(500);

fn status_of(client: &Client, deployment: &str) -> Result<RolloutStatusView, CliError> {
    Ok(client.get(&format!("/v1/deployments/{}/rollout", escape(deployment)))?)
}

pub fn status(client: &Client, name: &str, format: Format) -> Result<(), CliError> {
    let v = status_of(client, name)?;
    print(&v, format, |v| status_text(v, crate::now_ms()))
}

pub fn history(client: &Client, name: &str, format: Format) -> Result<(), CliError> {
    let v: Vec<RevisionView> =
        client.get(&format!("/v1/deployments/{}/revisions", escape(name)))?;
    print(&v, format, |v| history_table(v, crate::now_ms()))
}

pub fn action(
    client: &Client,
    name: &str,
    action: RolloutAction,
    format: Format,
) -> Result<RolloutAnswer, CliError> {
    let word = serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let path = format!("/v1/deployments/{}/rollout/{word}", escape(name));
    let a: RolloutAnswer = client.post(&path, &())?;
    print(&a, format, action_text)?;
    Ok(a)
}

/// `deployment/web paused (1 device gets a new desired state)`.
fn action_text(a: &RolloutAnswer) -> String {
    let n = a.changed_devices;
    let (noun, verb) = if n == 1 {
        ("device", "gets")
    } else {
        ("devices", "get")
    };
    format!("{} ({n} {noun} {verb} a new desired state)\n", a.message)
}

/// Follows each rollout until it is over or `timeout` passes, with a progress bar per
/// Deployment on a terminal (one line per change otherwise): those the apply `started`, and
/// the `unchanged` Deployments' last rollouts (one in progress is waited for; one rolled
/// back fails: the applied spec runs nowhere). A hub out of reach (a restart) is asked
/// again until `timeout`; any other error ends the wait.
pub fn wait(
    client: &Client,
    started: &[RolloutRef],
    unchanged: &[RolloutRef],
    timeout: Duration,
) -> Result<WaitOutcome, CliError> {
    let tty = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style =
        ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} healthy · {msg}")
            .map_err(|e| CliError::Usage(e.to_string()))?
            .progress_chars("=> ");
    let both = started.iter().map(|r| (r, false));
    let mut followed: Vec<Followed> = both
        .chain(unchanged.iter().map(|r| (r, true)))
        .map(|(r, unchanged)| {
            let bar = multi.add(ProgressBar::new(0).with_style(style.clone()));
            bar.set_prefix(format!("{} {}→{}", r.deployment, r.from, r.to));
            Followed {
                r: r.clone(),
                unchanged,
                bar,
                last: String::new(),
                unreachable: false,
                done: None,
            }
        })
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        for f in followed.iter_mut().filter(|f| f.done.is_none()) {
            f.poll(client, tty)?;
        }
        if followed.iter().all(|f| f.done.is_some()) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    let _ = multi.clear();
    let mut outcome = WaitOutcome::Complete;
    for f in &followed {
        let o = f.done.clone().unwrap_or(WaitOutcome::TimedOut);
        println!("{}", f.summary(&o));
        if o != WaitOutcome::Complete && outcome != WaitOutcome::RolledBack {
            outcome = o;
        }
    }
    Ok(outcome)
}

/// One rollout `apply --wait` follows.
struct Followed {
    r: RolloutRef,
    /// Of a Deployment the apply did not change (its current revision's last rollout).
    unchanged: bool,
    bar: ProgressBar,
    /// The last progress line.
    last: String,
    /// The last poll found no hub.
    unreachable: bool,
    done: Option<WaitOutcome>,
}

impl Followed {
    fn poll(&mut self, client: &Client, tty: bool) -> Result<(), CliError> {
        let r = &self.r;
        let v = match status_of(client, &r.deployment) {
            Ok(v) => v,
            // Rollouts survive a hub restart: wait for it to come back.
            Err(CliError::Client(e @ ClientError::Unreachable { .. })) => {
                self.bar
                    .set_message(format!("hub unreachable, retrying ({e})"));
                if !tty && !self.unreachable {
                    eprintln!(
                        "{} {}→{}: hub unreachable, retrying: {e}",
                        r.deployment, r.from, r.to
                    );
                }
                self.unreachable = true;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.unreachable = false;
        let view = v.rollout.as_ref();
        let (line, outcome) = judge(r, view, self.unchanged);
        self.bar.set_length(view.map_or(0, |v| v.total as u64));
        self.bar.set_position(view.map_or(0, |v| v.healthy as u64));
        self.bar.set_message(line.clone());
        if !tty && line != self.last {
            eprintln!("{} {}→{}: {line}", r.deployment, r.from, r.to);
        }
        self.last = line;
        if let Some(o) = outcome {
            self.bar.finish();
            self.done = Some(o);
        }
        Ok(())
    }

    /// `deployment/web revision 2→3 FAILED: …`, the last line about it.
    fn summary(&self, o: &WaitOutcome) -> String {
        let word = match o {
            WaitOutcome::Complete => "complete",
            WaitOutcome::RolledBack => "FAILED",
            WaitOutcome::TimedOut => "TIMED OUT",
        };
        let line = match (self.unreachable, self.last.as_str()) {
            (true, "") => "hub unreachable".to_owned(),
            (true, l) => format!("{l} (then the hub was unreachable)"),
            (false, l) => l.to_owned(),
        };
        let r = &self.r;
        format!(
            "deployment/{} revision {}→{} {word}: {line}",
            r.deployment, r.from, r.to
        )
    }
}

/// The progress line of one rollout, and its outcome when it is over. `unchanged`: the
/// apply did not change the Deployment, this is its current revision's last rollout.
fn judge(
    r: &RolloutRef,
    v: Option<&RolloutView>,
    unchanged: bool,
) -> (String, Option<WaitOutcome>) {
    let Some(v) = v.filter(|v| v.to == r.to) else {
        let msg = "superseded by a newer revision or undone".to_owned();
        return (msg, Some(WaitOutcome::RolledBack));
    };
    let counts = format!(
        "updated {}/{}, healthy {}, failed {}, pending {}",
        v.updated, v.total, v.healthy, v.failed, v.pending
    );
    match (v.phase.as_str(), &v.reason) {
        ("Complete", _) => (format!("{counts} · Complete"), Some(WaitOutcome::Complete)),
        ("RolledBack", reason) if unchanged => {
            let why = reason.as_deref().unwrap_or("");
            let line = format!(
                "unchanged, but revision {} was rolled back: {why}; apply a fixed spec or `drover-hub rollout restart {}`",
                v.to, r.deployment
            );
            (line, Some(WaitOutcome::RolledBack))
        }
        ("RolledBack", reason) => {
            let why = reason.as_deref().unwrap_or("");
            let line = format!("{counts} · RolledBack to revision {}: {why}", v.from);
            (line, Some(WaitOutcome::RolledBack))
        }
        ("Paused", _) => {
            let line = format!(
                "{counts} · Paused — run `drover-hub rollout resume {}` to go on",
                r.deployment
            );
            (line, None)
        }
        (phase, _) => (format!("{counts} · {phase}"), None),
    }
}

/// `rollout status` as text.
pub fn status_text(v: &RolloutStatusView, now_ms: u64) -> String {
    let mut out = format!(
        "Deployment:  {}\nRevision:    {}\nStrategy:    {}\n",
        v.deployment, v.revision, v.strategy
    );
    match &v.rollout {
        None if v.rolling_update => out.push_str(
            "Rollout:     none yet (the first revision goes to every device at once; later ones roll out)\n",
        ),
        None => out.push_str("Rollout:     none (every device gets each revision at once)\n"),
        Some(r) => {
            out.push_str(&format!(
                "Rollout:     revision {} → {}, {} (batch {}, started {})\n",
                r.from,
                r.to,
                r.phase,
                r.batch,
                ago(r.started_ms, now_ms)
            ));
            if let Some(reason) = &r.reason {
                out.push_str(&format!("Reason:      {reason}\n"));
            }
            out.push_str(&format!(
                "Devices:     {} total, {} updated, {} healthy, {} failed, {} pending\n",
                r.total, r.updated, r.healthy, r.failed, r.pending
            ));
        }
    }
    let rows: Vec<Vec<String>> = v
        .devices
        .iter()
        .map(|d| {
            vec![
                d.device.clone(),
                if d.online { "yes" } else { "no" }.to_owned(),
                d.revision.to_string(),
                d.reported.to_string(),
                d.state.clone(),
                d.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        let header = [
            "DEVICE", "ONLINE", "REVISION", "REPORTED", "STATE", "MESSAGE",
        ];
        out.push_str(&super::output::table(&header, rows));
    }
    out
}

/// `rollout history` as a table, like `kubectl rollout history`.
pub fn history_table(v: &[RevisionView], now_ms: u64) -> String {
    let rows = v
        .iter()
        .map(|r| {
            let rev = match &r.mark {
                Some(mark) => format!("{} ({mark})", r.revision),
                None => r.revision.to_string(),
            };
            vec![
                rev,
                ago(r.created_ms, now_ms),
                r.images.join(","),
                r.cause.clone(),
            ]
        })
        .collect();
    super::output::table(&["REVISION", "CREATED", "IMAGES", "CHANGE-CAUSE"], rows)
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
