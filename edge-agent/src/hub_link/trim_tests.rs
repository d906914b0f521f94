use drover_protocol::auth::seal_status;
use drover_protocol::{Capacity, ContainerStatus, Name};

use super::*;

fn container(image: &str, error: Option<String>) -> ContainerStatus {
    ContainerStatus {
        name: Name::new("main").unwrap(),
        phase: Phase::Running,
        image: image.to_owned(),
        pid: Some(42),
        restarts: 0,
        started_at_ms: Some(1),
        exit_code: None,
        oom_killed: false,
        last_error: error,
        memory_bytes: Some(1 << 20),
        memory_limit_bytes: None,
        pull_done_bytes: None,
        pull_total_bytes: None,
        health: Default::default(),
        ready: false,
        probe_failures: 0,
        probe_message: None,
    }
}

fn workload(i: usize, phase: Phase, error: Option<String>, image: &str) -> WorkloadStatus {
    WorkloadStatus {
        name: Name::new(format!("wl-{i:05}")).unwrap(),
        phase,
        restarts: 3,
        containers: vec![container(image, error.clone()), container(image, None)],
        last_error: error,
        reason: None,
        revision: 0,
        rolled_back: None,
    }
}

fn status(workloads: Vec<WorkloadStatus>) -> DeviceStatus {
    DeviceStatus {
        device: Name::new("pi-7").unwrap(),
        observed_generation: 12,
        time_ms: 1_700_000_000_000,
        workloads,
        capacity: Capacity {
            memory_bytes: 4 << 30,
            cpu_millis: 4000,
            memory_reserved_bytes: 1 << 30,
            disk_free_bytes: 10 << 30,
            low_disk: true,
        },
    }
}

/// The device-level fields `fit` must never touch.
fn device_fields(s: &DeviceStatus) -> (Name, u64, u64, Capacity) {
    (
        s.device.clone(),
        s.observed_generation,
        s.time_ms,
        s.capacity,
    )
}

#[test]
fn a_status_that_fits_is_left_alone() {
    let mut s = status(
        (0..10)
            .map(|i| workload(i, Phase::Running, None, "oci:/a"))
            .collect(),
    );
    let before = s.clone();
    assert_eq!(fit(&mut s, STATUS_BUDGET_BYTES), None);
    assert_eq!(s, before);
}

#[test]
fn huge_errors_are_cut_and_everything_else_is_kept() {
    let huge = "x".repeat(100_000);
    let mut s = status(vec![
        workload(0, Phase::Error, Some(huge.clone()), "oci:/a"),
        workload(1, Phase::Running, None, "oci:/b"),
        workload(2, Phase::BackOff, Some(huge), "oci:/c"),
    ]);
    let before = s.clone();
    let t = fit(&mut s, STATUS_BUDGET_BYTES).expect("trimmed");
    assert!(t.bytes_before > STATUS_BUDGET_BYTES);
    assert!(t.bytes_after <= STATUS_BUDGET_BYTES);
    assert_eq!(size(&s), t.bytes_after);
    assert_eq!(
        (t.errors_cut, t.details_dropped, t.workloads_dropped),
        (4, 0, 0)
    );
    assert_eq!(device_fields(&s), device_fields(&before));
    assert_eq!(s.workloads.len(), 3);
    let err = s.workloads[0].last_error.as_deref().unwrap();
    assert!(
        err.starts_with(&"x".repeat(1024)),
        "the longest cap that fits is used"
    );
    assert!(
        err.ends_with(&format!("… [{} bytes cut]", 100_000 - 1024)),
        "{err}"
    );
    for (kept, orig) in s.workloads.iter().zip(&before.workloads) {
        assert_eq!((&kept.name, kept.phase), (&orig.name, orig.phase));
        assert_eq!(kept.containers.len(), 2);
    }
}

#[test]
fn many_workloads_lose_healthy_detail_first_then_fit() {
    let image = format!("oci:/images/{}:latest", "i".repeat(400));
    let error = Some(format!("image {image}: not found"));
    let workloads = (0..400)
        .map(|i| match i % 4 {
            0 => workload(i, Phase::Error, error.clone(), &image),
            _ => workload(i, Phase::Running, None, &image),
        })
        .collect();
    let mut s = status(workloads);
    let before = s.clone();
    let t = fit(&mut s, STATUS_BUDGET_BYTES).expect("trimmed");
    assert!(t.bytes_after <= STATUS_BUDGET_BYTES, "{t:?}");
    assert!(t.details_dropped > 0 && t.workloads_dropped == 0, "{t:?}");
    assert_eq!(device_fields(&s), device_fields(&before));
    assert_eq!(s.workloads.len(), 400, "every workload is still reported");
    let names: Vec<_> = s.workloads.iter().map(|w| &w.name).collect();
    let orig: Vec<_> = before.workloads.iter().map(|w| &w.name).collect();
    assert_eq!(names, orig, "order kept");
    // Failing workloads keep their detail while healthy ones can give theirs up.
    assert!(
        s.workloads
            .iter()
            .filter(|w| w.phase == Phase::Error)
            .all(|w| w.containers.len() == 2)
    );
    let bare: Vec<_> = s
        .workloads
        .iter()
        .filter(|w| w.containers.is_empty())
        .collect();
    assert_eq!(bare.len(), t.details_dropped as usize);
    assert!(bare.iter().all(|w| w.phase == Phase::Running));
    assert_eq!(
        bare.last().unwrap().name,
        before.workloads[399].name,
        "last listed first"
    );
}

#[test]
fn when_names_alone_overflow_workloads_are_left_out_from_the_end() {
    let name = |i: usize| Name::new(format!("{:0>63}", i)).unwrap();
    let workloads = (0..6000)
        .map(|i| WorkloadStatus {
            name: name(i),
            phase: Phase::Pending,
            restarts: 0,
            containers: vec![],
            last_error: Some("waiting for its image".into()),
            reason: None,
            revision: 0,
            rolled_back: None,
        })
        .collect();
    let mut s = status(workloads);
    let before = s.clone();
    let t = fit(&mut s, STATUS_BUDGET_BYTES).expect("trimmed");
    assert!(t.bytes_after <= STATUS_BUDGET_BYTES, "{t:?}");
    assert!(t.workloads_dropped > 0);
    assert_eq!(s.workloads.len() + t.workloads_dropped as usize, 6000);
    assert_eq!(device_fields(&s), device_fields(&before));
    assert_eq!(s.workloads[0].name, name(0), "the first listed are kept");
    assert_eq!(
        s.workloads.last().unwrap().name,
        name(s.workloads.len() - 1)
    );
}

#[test]
fn a_trimmed_status_always_seals_into_one_message() {
    let huge = "é".repeat(200_000);
    let mut s = status(
        (0..50)
            .map(|i| workload(i, Phase::Error, Some(huge.clone()), "oci:/a"))
            .collect(),
    );
    assert!(seal_status(&s, b"k").is_err(), "too large before");
    fit(&mut s, STATUS_BUDGET_BYTES).expect("trimmed");
    let sealed = seal_status(&s, b"k").expect("fits after trimming");
    assert!(sealed.len() <= MAX_MESSAGE_BYTES);
    assert!(
        sealed.len() - size(&s) <= SEAL_OVERHEAD_BYTES,
        "seal overhead {}",
        sealed.len() - size(&s)
    );
}

#[test]
fn texts_are_cut_at_character_boundaries() {
    let text = "ü".repeat(10); // two bytes each
    let cut = shorten(&text, 5);
    assert_eq!(cut, "üü… [16 bytes cut]");
}
