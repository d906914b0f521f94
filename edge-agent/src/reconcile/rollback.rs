//! The device's own rollback: a new revision that does not become healthy within its
//! health timeout is replaced by the fallback revision signed with it — also with no hub
//! reachable. Pure: the daemon keeps a [`RevisionTrack`] per workload in its record,
//! calls [`judge`] each pass, and runs [`effective`] instead of the desired spec.
//!
//! A revision is judged once: when it is healthy (ready, and ready without a break for
//! `min_ready_ms` when that is set — counted from when it became ready) it is *proven* and never rolled back by the device afterwards; when its
//! health timeout passes first it is rolled back, and stays so until the hub sends another
//! revision. Nothing the hub did not sign ever runs: the fallback is part of the signed
//! desired state.

use drover_protocol::{Phase, RolledBack, WorkloadSpec, WorkloadStatus};
use serde::{Deserialize, Serialize};

use crate::clock::{self, BootMs};

/// What the device knows about the revision of one workload it was given last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionTrack {
    /// `WorkloadSpec::revision` this track is about.
    pub revision: u64,
    /// When the device first saw this revision (boot clock).
    pub since_boot_ms: BootMs,
    /// It became healthy once: never rolled back by the device.
    pub proven: bool,
    /// The device went back to the fallback.
    pub rolled_back: Option<RolledBack>,
    /// Since when (boot clock) it has been ready without a break, while not yet proven.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since_boot_ms: Option<BootMs>,
}

/// How the workload is doing right now, as the daemon observed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// The revision runs with every container ready (for how long is the judge's affair).
    pub ready: bool,
    /// Why not, when known (probe message, crash loop, start error).
    pub problem: Option<String>,
}

/// The track after this pass, given the desired spec, the last track and the health of
/// what runs. A new revision starts a new track; an old track of the same revision is
/// kept (so a reboot neither forgets a rollback nor restarts the timeout from zero —
/// stamps of an earlier boot count from this boot's start).
pub fn judge(
    desired: &WorkloadSpec,
    track: Option<&RevisionTrack>,
    health: &Health,
    now: BootMs,
) -> RevisionTrack {
    let mut t = match track {
        Some(t) if t.revision == desired.revision => t.clone(),
        _ => RevisionTrack {
            revision: desired.revision,
            since_boot_ms: now,
            proven: false,
            rolled_back: None,
            ready_since_boot_ms: None,
        },
    };
    if t.proven || t.rolled_back.is_some() {
        return t;
    }
    let min_ready = u64::from(desired.min_ready_ms);
    t.ready_since_boot_ms = health.ready.then(|| t.ready_since_boot_ms.unwrap_or(now));
    let ready_for = t.ready_since_boot_ms.map(|at| clock::since(at, now));
    if ready_for.is_some_and(|r| r >= min_ready) {
        t.proven = true;
        t.ready_since_boot_ms = None;
        return t;
    }
    let Some(fallback) = &desired.fallback else {
        return t;
    };
    let timeout = u64::from(desired.health_timeout_ms);
    if timeout == 0 || clock::since(t.since_boot_ms, now) < timeout {
        return t;
    }
    let why = match (ready_for, &health.problem) {
        (Some(r), _) => format!(
            "ready for {}s of the {}s minReadySeconds",
            r / 1000,
            min_ready / 1000
        ),
        (None, Some(p)) => p.clone(),
        (None, None) => "not ready".to_owned(),
    };
    t.rolled_back = Some(RolledBack {
        from: desired.revision,
        to: fallback.revision,
        reason: format!("not healthy within {}s: {why}", timeout / 1000),
    });
    t
}

/// The spec the device runs for `desired` under `track`: the fallback once rolled back,
/// else the desired spec itself.
pub fn effective<'a>(desired: &'a WorkloadSpec, track: Option<&RevisionTrack>) -> &'a WorkloadSpec {
    match (track, &desired.fallback) {
        (Some(t), Some(fallback)) if t.revision == desired.revision && t.rolled_back.is_some() => {
            fallback
        }
        _ => desired,
    }
}

/// The health of `status` (built from the device's snapshot) as the judge of `revision`
/// sees it: ready when that revision runs and every container is ready (running with no
/// probe counts). Otherwise why not: a probe's message, a crash loop, an error. `wall_now_ms`
/// (Unix ms) words a crash loop's next retry.
pub fn health_of(status: &WorkloadStatus, revision: u64, wall_now_ms: u64) -> Health {
    let sick = |problem: String| Health {
        ready: false,
        problem: Some(problem),
    };
    if status.revision != revision {
        return sick(match &status.last_error {
            Some(e) => format!("revision {revision} not running yet: {e}"),
            None => format!("revision {revision} not running yet"),
        });
    }
    if let Some(reason) = &status.reason {
        return sick(reason.describe(wall_now_ms));
    }
    let not_ready = status.containers.iter().find(|c| !c.ready);
    if status.phase != Phase::Running || not_ready.is_some() {
        let detail = not_ready.and_then(|c| {
            let why = c.probe_message.as_ref().or(c.last_error.as_ref())?;
            Some(format!("{}: {why}", c.name))
        });
        return sick(
            detail
                .or_else(|| status.last_error.clone())
                .unwrap_or_else(|| format!("{:?}, not ready", status.phase)),
        );
    }
    Health {
        ready: true,
        problem: None,
    }
}

/// When `track` (about `desired`) must be judged again at the latest (boot clock): its
/// health timeout, or the end of its `minReadySeconds` soak when that comes first. `None`
/// when it is decided or has no timeout.
pub fn deadline(desired: &WorkloadSpec, track: &RevisionTrack, now: BootMs) -> Option<BootMs> {
    let open = track.revision == desired.revision && !track.proven && track.rolled_back.is_none();
    if !(open && desired.fallback.is_some() && desired.health_timeout_ms > 0) {
        return None;
    }
    let timeout = clock::due_at(
        track.since_boot_ms,
        u64::from(desired.health_timeout_ms),
        now,
    );
    let soaked = track
        .ready_since_boot_ms
        .map(|at| clock::due_at(at, u64::from(desired.min_ready_ms), now));
    Some(soaked.map_or(timeout, |s| s.min(timeout)))
}

#[cfg(test)]
mod tests {
    use drover_protocol::{ContainerSpec, ImageRef, Name};

    use super::*;

    fn spec(revision: u64, image: &str) -> WorkloadSpec {
        let c = ContainerSpec::new(Name::new("main").unwrap(), ImageRef::new(image).unwrap());
        WorkloadSpec {
            revision,
            ..WorkloadSpec::new(Name::new("web").unwrap(), vec![c])
        }
    }

    fn gated(revision: u64) -> WorkloadSpec {
        WorkloadSpec {
            health_timeout_ms: 60_000,
            fallback: Some(Box::new(spec(revision - 1, "oci:/old"))),
            ..spec(revision, "oci:/new")
        }
    }

    fn sick() -> Health {
        Health {
            ready: false,
            problem: Some("liveness probe failed 3 times: HTTP 500".into()),
        }
    }

    #[test]
    fn an_unhealthy_revision_is_rolled_back_at_its_timeout_and_stays_so() {
        let d = gated(7);
        let t = judge(&d, None, &sick(), 1_000);
        assert_eq!((t.revision, t.since_boot_ms, t.proven), (7, 1_000, false));
        assert_eq!(effective(&d, Some(&t)).revision, 7);
        let t = judge(&d, Some(&t), &sick(), 60_999);
        assert_eq!(t.rolled_back, None, "not yet");
        let t = judge(&d, Some(&t), &sick(), 61_000);
        assert_eq!(
            t.rolled_back,
            Some(RolledBack {
                from: 7,
                to: 6,
                reason: "not healthy within 60s: liveness probe failed 3 times: HTTP 500".into()
            })
        );
        assert_eq!(
            effective(&d, Some(&t)).containers[0].image.as_str(),
            "oci:/old"
        );
        // The fallback becoming healthy changes nothing: the decision holds.
        let healthy = Health {
            ready: true,
            problem: None,
        };
        let again = judge(&d, Some(&t), &healthy, 90_000);
        assert_eq!(again, t);
        // A new revision from the hub starts over.
        let next = gated(8);
        let t8 = judge(&next, Some(&t), &sick(), 100_000);
        assert_eq!((t8.revision, t8.rolled_back.clone()), (8, None));
        assert_eq!(effective(&next, Some(&t8)).revision, 8);
    }

    #[test]
    fn a_proven_revision_is_never_rolled_back_by_the_device() {
        let d = gated(3);
        let healthy = Health {
            ready: true,
            problem: None,
        };
        let t = judge(&d, None, &healthy, 0);
        assert!(t.proven);
        let t = judge(&d, Some(&t), &sick(), 10_000_000);
        assert_eq!(t.rolled_back, None);
    }

    #[test]
    fn without_a_fallback_or_timeout_nothing_is_rolled_back() {
        let plain = spec(2, "oci:/new");
        let t = judge(&plain, None, &sick(), 0);
        let t = judge(&plain, Some(&t), &sick(), 10_000_000);
        assert_eq!(t.rolled_back, None);
        let no_timeout = WorkloadSpec {
            health_timeout_ms: 0,
            ..gated(2)
        };
        let t = judge(&no_timeout, None, &sick(), 0);
        let t = judge(&no_timeout, Some(&t), &sick(), 10_000_000);
        assert_eq!(t.rolled_back, None);
    }

    #[test]
    fn after_a_reboot_the_timeout_counts_from_boot_not_from_zero() {
        let d = gated(5);
        // Seen at boot-clock 500 s in the previous boot; now 10 s after this boot.
        let before = RevisionTrack {
            revision: 5,
            since_boot_ms: 500_000,
            proven: false,
            rolled_back: None,
            ready_since_boot_ms: None,
        };
        let t = judge(&d, Some(&before), &sick(), 10_000);
        assert_eq!(t.rolled_back, None, "10 s since boot < 60 s");
        let t = judge(&d, Some(&t), &sick(), 60_000);
        assert!(t.rolled_back.is_some());
    }

    fn status(revision: u64, ready: bool, started_at_ms: u64) -> WorkloadStatus {
        use drover_protocol::ContainerStatus;
        let c = ContainerStatus {
            ready,
            started_at_ms: Some(started_at_ms),
            probe_message: (!ready).then(|| "readiness probe: HTTP 503".to_owned()),
            ..ContainerStatus::new(
                Name::new("main").unwrap(),
                "oci:/new".into(),
                Phase::Running,
            )
        };
        WorkloadStatus {
            name: Name::new("web").unwrap(),
            phase: Phase::Running,
            restarts: 0,
            containers: vec![c],
            last_error: None,
            reason: None,
            revision,
            rolled_back: None,
        }
    }

    #[test]
    fn health_needs_the_revision_running_and_every_container_ready() {
        let h = health_of(&status(7, true, 1_000), 7, 11_000);
        assert_eq!((h.ready, h.problem), (true, None));
        let h = health_of(&status(7, false, 1_000), 7, 99_000);
        assert_eq!(
            h.problem.as_deref(),
            Some("main: readiness probe: HTTP 503")
        );
        let h = health_of(&status(6, true, 1_000), 7, 99_000);
        assert_eq!(h.problem.as_deref(), Some("revision 7 not running yet"));
        let crashing = WorkloadStatus {
            reason: Some(drover_protocol::WorkloadReason::CrashLoopBackOff {
                next_retry_ms: 120_000,
            }),
            ..status(7, true, 1_000)
        };
        let h = health_of(&crashing, 7, 100_000);
        assert!(!h.ready && h.problem.unwrap().contains("CrashLoopBackOff"));
    }

    #[test]
    fn min_ready_counts_from_when_it_became_ready_and_restarts_on_a_break() {
        // Found by review: counted from the container's start, a container that took
        // 12 s to become ready was proven at once under minReadySeconds 10.
        let d = WorkloadSpec {
            min_ready_ms: 10_000,
            ..gated(2)
        };
        let ready = Health {
            ready: true,
            problem: None,
        };
        let t = judge(&d, None, &sick(), 0);
        let t = judge(&d, Some(&t), &ready, 12_000);
        assert!(!t.proven, "ready just now");
        assert_eq!(
            deadline(&d, &t, 12_000),
            Some(22_000),
            "wakes at the soak's end"
        );
        let t = judge(&d, Some(&t), &sick(), 15_000);
        assert_eq!(t.ready_since_boot_ms, None, "a break starts the soak over");
        let t = judge(&d, Some(&t), &ready, 16_000);
        let t = judge(&d, Some(&t), &ready, 25_999);
        assert!(!t.proven);
        let t = judge(&d, Some(&t), &ready, 26_000);
        assert!(t.proven);
        // Ready but not long enough when the timeout strikes: the reason says so.
        let t = judge(&d, None, &sick(), 100_000);
        let t = judge(&d, Some(&t), &ready, 155_000);
        let t = judge(&d, Some(&t), &ready, 160_000);
        let rb = t.rolled_back.expect("rolled back at the timeout");
        assert_eq!(
            rb.reason,
            "not healthy within 60s: ready for 5s of the 10s minReadySeconds"
        );
    }

    #[test]
    fn the_deadline_is_open_only_while_the_revision_is_on_trial() {
        let d = gated(4);
        let t = judge(&d, None, &sick(), 5_000);
        assert_eq!(deadline(&d, &t, 6_000), Some(65_000));
        let proven = RevisionTrack {
            proven: true,
            ..t.clone()
        };
        assert_eq!(deadline(&d, &proven, 6_000), None);
        assert_eq!(
            deadline(&spec(4, "oci:/new"), &t, 6_000),
            None,
            "no fallback"
        );
    }
}
