use proptest::prelude::*;

use super::*;
use crate::keys::StatusKey;

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// A sample as a Raspberry Pi 4 sends it after a month up, with one workload: values at
/// realistic magnitudes, since varints grow with them.
pub(crate) fn month_up_sample(workloads: usize) -> Telemetry {
    Telemetry {
        seq: (41 << 32) + 259_200,
        time_s: 1_796_000_000,
        device: DeviceUsage::month_up_example(),
        workloads: (0..workloads)
            .map(|i| WorkloadUsage {
                name: name(&format!("sensor-{i}")),
                containers: vec![ContainerUsage {
                    name: name("app"),
                    cpu_ms: 181_440_000,
                    memory_kib: 12_288,
                    memory_peak_kib: 20_480,
                    pids: 9,
                    oom_kills: 0,
                    restarts: 2,
                }],
            })
            .collect(),
        dropped: 0,
    }
}

#[test]
fn a_sample_with_one_workload_fits_the_96_byte_budget() {
    let dev = name("greenhouse-07");
    let payload = seal_telemetry(&month_up_sample(1), &dev, b"credential").unwrap();
    assert!(payload.len() <= 96, "{} bytes", payload.len());
    let five = seal_telemetry(&month_up_sample(5), &dev, b"credential").unwrap();
    eprintln!(
        "one workload: {} bytes, five: {} bytes",
        payload.len(),
        five.len()
    );
}

#[test]
fn a_sample_opens_only_with_its_credential_device_and_a_newer_seq() {
    let dev = name("pi-1");
    let sample = month_up_sample(2);
    let payload = seal_telemetry(&sample, &dev, b"secret").unwrap();
    assert_eq!(
        open_telemetry(&payload, &dev, &StatusKey::derive(b"secret"), 0).unwrap(),
        sample
    );
    assert!(matches!(
        open_telemetry(&payload, &dev, &StatusKey::derive(b"other"), 0),
        Err(TelemetryError::BadMac)
    ));
    // Another device's topic: the device name is under the tag.
    assert!(matches!(
        open_telemetry(&payload, &name("pi-2"), &StatusKey::derive(b"secret"), 0),
        Err(TelemetryError::BadMac)
    ));
    let err =
        open_telemetry(&payload, &dev, &StatusKey::derive(b"secret"), sample.seq).unwrap_err();
    assert!(
        matches!(err, TelemetryError::Replayed { got, held } if got == sample.seq && held == sample.seq)
    );
    assert_eq!(err.reason(), "replayed");
    // Any flipped bit breaks the tag.
    let mut tampered = payload.clone();
    tampered[3] ^= 1;
    assert_eq!(
        open_telemetry(&tampered, &dev, &StatusKey::derive(b"secret"), 0)
            .unwrap_err()
            .reason(),
        "bad_mac"
    );
    assert_eq!(
        open_telemetry(&payload[..20], &dev, &StatusKey::derive(b"secret"), 0)
            .unwrap_err()
            .reason(),
        "bad_mac"
    );
    assert!(matches!(
        open_telemetry(&payload[..5], &dev, &StatusKey::derive(b"secret"), 0),
        Err(TelemetryError::Short(5))
    ));
}

#[test]
fn a_well_tagged_payload_of_another_kind_is_malformed() {
    let dev = name("pi-1");
    let status = crate::DeviceStatus {
        device: dev.clone(),
        observed_generation: 1,
        time_ms: 1,
        workloads: vec![],
        capacity: Default::default(),
    };
    let mut bytes = encode(&status).unwrap();
    let full = tag(&dev, &StatusKey::derive(b"k"), &bytes)
        .finalize()
        .into_bytes();
    bytes.extend_from_slice(&full[..TAG_BYTES]);
    assert_eq!(
        open_telemetry(&bytes, &dev, &StatusKey::derive(b"k"), 0)
            .unwrap_err()
            .reason(),
        "malformed"
    );
}

proptest! {
    #[test]
    fn garbage_is_refused_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        prop_assert!(open_telemetry(&bytes, &name("pi"), &StatusKey::derive(b"k"), 0).is_err());
    }

    #[test]
    fn samples_round_trip(seq in any::<u64>(), cpu in any::<u16>(), temp in any::<Option<i16>>(), n in 0usize..6) {
        let mut s = month_up_sample(n);
        s.seq = seq;
        s.device.cpu_permille = cpu;
        s.device.temperature_decicelsius = temp;
        let dev = name("pi");
        let payload = seal_telemetry(&s, &dev, b"k").unwrap();
        if seq > 0 {
            prop_assert_eq!(open_telemetry(&payload, &dev, &StatusKey::derive(b"k"), seq - 1).unwrap(), s);
        }
    }
}
