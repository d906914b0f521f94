//! `drover-bench-wire`: prints, as JSON, the size in bytes of typical Drover wire messages
//! (postcard in the versioned envelope, signed or sealed as published) next to the same
//! content serialized as JSON (`serde_json::to_vec`).
//!
//! Telemetry is drover-protocol's `Telemetry` sealed as the agent publishes it
//! (`seal_telemetry`), with values at the magnitudes of a board up for a month (varints
//! grow with them). `BeforeSample` is the representative sample this bench defined before
//! the protocol had a type (issue 8's row, kept as the figure before). `uplink` is the
//! idle uplink of one device at the defaults (a telemetry sample every 10 s, QoS 0; a
//! status heartbeat every 60 s, QoS 1; a keep-alive ping every 60 s) from the packets'
//! sizes; bench/agent-telemetry.sh measures the same on a veth.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use drover_protocol::auth::{seal_status, sign_desired};
use drover_protocol::codec::Wire;
use drover_protocol::telemetry::{ContainerUsage, DeviceUsage, WorkloadUsage, seal_telemetry};
use drover_protocol::{
    Capacity, ContainerSpec, ContainerStatus, DesiredState, DeviceStatus, EnvVar, ImageRef, Mount,
    MountSource, Name, NetworkMode, Phase, Resources, RestartPolicy, Telemetry, WorkloadSpec,
    WorkloadStatus, encode, topics,
};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;
const NOW_MS: u64 = 1_763_700_000_000;

fn name(s: &str) -> Name {
    Name::new(s).unwrap_or_else(|e| panic!("bad name {s}: {e}"))
}

fn image(s: &str) -> ImageRef {
    ImageRef::new(s).unwrap_or_else(|e| panic!("bad image {s}: {e}"))
}

fn env(k: &str, v: &str) -> EnvVar {
    EnvVar {
        name: k.into(),
        value: v.into(),
    }
}

/// Five workloads modelled on the demo and example manifests; the first one alone is the
/// "1 workload" case.
fn workloads() -> Vec<WorkloadSpec> {
    let sensor = WorkloadSpec {
        name: name("sensor"),
        containers: vec![ContainerSpec {
            name: name("main"),
            image: image("hub:sensor-sim:1.0"),
            command: vec![],
            args: vec![],
            env: vec![
                env("MQTT_BROKER", "hub.local:1883"),
                env("MQTT_TOPIC", "sensors/pi-7/climate"),
                env("INTERVAL", "5s"),
            ],
            working_dir: None,
            mounts: vec![],
            resources: Resources {
                memory_bytes: Some(16 * MIB),
                cpu_millis: Some(250),
                pids: None,
            },
            devices: vec![],
            init: false,
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
            depends_on: vec![],
            security: Default::default(),
            env_refs: vec![],
        }],
        restart_policy: RestartPolicy::Always,
        network: NetworkMode::Host,
        volumes: vec![],
        stop_grace_ms: 10_000,
        labels: Default::default(),
        depends_on: vec![],
        revision: 0,
        health_timeout_ms: 0,
        min_ready_ms: 0,
        fallback: None,
    };
    let uptime = WorkloadSpec {
        name: name("uptime"),
        containers: vec![ContainerSpec {
            name: name("main"),
            image: image("hub:uptime-http:1.0"),
            command: vec![],
            args: vec![],
            env: vec![env("PORT", "8080")],
            working_dir: None,
            mounts: vec![],
            resources: Resources {
                memory_bytes: Some(16 * MIB),
                cpu_millis: None,
                pids: Some(32),
            },
            devices: vec![],
            init: false,
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
            depends_on: vec![],
            security: Default::default(),
            env_refs: vec![],
        }],
        restart_policy: RestartPolicy::Always,
        network: NetworkMode::Host,
        volumes: vec![],
        stop_grace_ms: 10_000,
        labels: Default::default(),
        depends_on: vec![],
        revision: 0,
        health_timeout_ms: 0,
        min_ready_ms: 0,
        fallback: None,
    };
    let web = WorkloadSpec {
        name: name("web"),
        containers: vec![ContainerSpec {
            name: name("main"),
            image: image("registry.local:5000/web:1.4.2"),
            command: vec!["/bin/web".into()],
            args: vec!["--port".into(), "8081".into()],
            env: vec![env("DATA_DIR", "/data"), env("MODE", "prod")],
            working_dir: Some("/srv".into()),
            mounts: vec![
                Mount {
                    source: MountSource::Volume(name("data")),
                    target: "/data".into(),
                    read_only: false,
                },
                Mount {
                    source: MountSource::HostPath("/etc/ssl/certs".into()),
                    target: "/etc/ssl/certs".into(),
                    read_only: true,
                },
                Mount {
                    source: MountSource::Tmpfs {
                        size_bytes: 16 * MIB,
                    },
                    target: "/tmp".into(),
                    read_only: false,
                },
            ],
            resources: Resources {
                memory_bytes: Some(64 * MIB),
                cpu_millis: Some(500),
                pids: Some(64),
            },
            devices: vec![],
            init: false,
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
            depends_on: vec![],
            security: Default::default(),
            env_refs: vec![],
        }],
        restart_policy: RestartPolicy::Always,
        network: NetworkMode::Host,
        volumes: vec![name("data")],
        stop_grace_ms: 10_000,
        labels: Default::default(),
        depends_on: vec![],
        revision: 0,
        health_timeout_ms: 0,
        min_ready_ms: 0,
        fallback: None,
    };
    let reader = WorkloadSpec {
        name: name("i2c-reader"),
        containers: vec![ContainerSpec {
            name: name("reader"),
            image: image(
                "hub:i2c-reader@sha256:8d3c1a7e5f0b2c4d6e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
            ),
            command: vec![],
            args: vec![],
            env: vec![env("BUS", "/dev/i2c-1")],
            working_dir: None,
            mounts: vec![],
            resources: Resources {
                memory_bytes: Some(8 * MIB),
                cpu_millis: Some(100),
                pids: Some(16),
            },
            devices: vec![drover_protocol::HostDevice {
                host_path: "/dev/i2c-1".into(),
                container_path: None,
                permissions: "rw".into(),
            }],
            init: false,
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
            depends_on: vec![],
            security: Default::default(),
            env_refs: vec![],
        }],
        restart_policy: RestartPolicy::OnFailure,
        network: NetworkMode::None,
        volumes: vec![],
        stop_grace_ms: 2_000,
        labels: Default::default(),
        depends_on: vec![],
        revision: 0,
        health_timeout_ms: 0,
        min_ready_ms: 0,
        fallback: None,
    };
    let shipper = WorkloadSpec {
        name: name("log-shipper"),
        containers: vec![ContainerSpec {
            name: name("main"),
            image: image("docker.io/library/busybox:1.36"),
            command: vec!["/bin/sh".into(), "-c".into()],
            args: vec![
                "while true; do tail -n 100 /logs/app.log | nc hub.local 5140; sleep 60; done"
                    .into(),
            ],
            env: vec![],
            working_dir: None,
            mounts: vec![Mount {
                source: MountSource::HostPath("/var/log/app".into()),
                target: "/logs".into(),
                read_only: true,
            }],
            resources: Resources {
                memory_bytes: Some(8 * MIB),
                cpu_millis: Some(100),
                pids: Some(8),
            },
            devices: vec![],
            init: false,
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
            depends_on: vec![],
            security: Default::default(),
            env_refs: vec![],
        }],
        restart_policy: RestartPolicy::Always,
        network: NetworkMode::Host,
        volumes: vec![],
        stop_grace_ms: 1_000,
        labels: Default::default(),
        depends_on: vec![],
        revision: 0,
        health_timeout_ms: 0,
        min_ready_ms: 0,
        fallback: None,
    };
    vec![sensor, uptime, web, reader, shipper]
}

fn desired(n: usize) -> DesiredState {
    DesiredState {
        device: name("pi-7"),
        generation: 42,
        workloads: workloads().into_iter().take(n).collect(),
    }
}

fn status(desired: &DesiredState) -> DeviceStatus {
    let workloads = desired
        .workloads
        .iter()
        .enumerate()
        .map(|(i, w)| WorkloadStatus {
            name: w.name.clone(),
            phase: Phase::Running,
            restarts: 0,
            containers: w
                .containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    phase: Phase::Running,
                    image: c.image.to_string(),
                    pid: Some(4242 + i as u32),
                    restarts: 0,
                    started_at_ms: Some(NOW_MS - 3_600_000),
                    exit_code: None,
                    oom_killed: false,
                    last_error: None,
                    memory_bytes: Some(3 * MIB + 123_456),
                    memory_limit_bytes: c.resources.memory_bytes,
                    pull_done_bytes: None,
                    pull_total_bytes: None,
                    health: Default::default(),
                    ready: false,
                    probe_failures: 0,
                    probe_message: None,
                })
                .collect(),
            last_error: None,
            reason: None,
            revision: 0,
            rolled_back: None,
        })
        .collect();
    DeviceStatus {
        device: desired.device.clone(),
        observed_generation: desired.generation,
        time_ms: NOW_MS,
        workloads,
        capacity: Capacity {
            memory_bytes: 4 * 1024 * MIB,
            cpu_millis: 4000,
            memory_reserved_bytes: 112 * MIB,
            disk_free_bytes: 21_474_836_480,
            low_disk: false,
        },
    }
}

/// The sample this bench defined before the protocol had a telemetry type (no MAC).
#[derive(Serialize, Deserialize)]
struct BeforeSample {
    device: Name,
    time_ms: u64,
    agent_rss_bytes: u64,
    load_avg_milli: u32,
    memory_available_bytes: u64,
    disk_free_bytes: u64,
    workloads: Vec<WorkloadMetrics>,
}

#[derive(Serialize, Deserialize)]
struct WorkloadMetrics {
    name: Name,
    cpu_millis: u32,
    memory_bytes: u64,
    restarts: u32,
}

impl Wire for BeforeSample {
    const KIND: u8 = 200;
    const KIND_NAME: &'static str = "telemetry sample (bench only)";
}

fn before_sample(desired: &DesiredState) -> BeforeSample {
    BeforeSample {
        device: desired.device.clone(),
        time_ms: NOW_MS,
        agent_rss_bytes: 6_291_456,
        load_avg_milli: 420,
        memory_available_bytes: 3_221_225_472,
        disk_free_bytes: 21_474_836_480,
        workloads: desired
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| WorkloadMetrics {
                name: w.name.clone(),
                cpu_millis: 12 + 7 * i as u32,
                memory_bytes: 3 * MIB + 4096 * i as u64,
                restarts: 0,
            })
            .collect(),
    }
}

/// A sample of a board up for a month running `desired`'s workloads.
fn telemetry(desired: &DesiredState) -> Telemetry {
    Telemetry {
        seq: (41 << 32) + 259_200,
        time_s: NOW_MS / 1000,
        device: DeviceUsage::month_up_example(),
        workloads: desired
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| WorkloadUsage {
                name: w.name.clone(),
                containers: w
                    .containers
                    .iter()
                    .map(|c| ContainerUsage {
                        name: c.name.clone(),
                        cpu_ms: 181_440_000 + 1000 * i as u64,
                        memory_kib: 12_288 + 64 * i as u64,
                        memory_peak_kib: 20_480,
                        pids: 9,
                        oom_kills: 0,
                        restarts: 2,
                    })
                    .collect(),
            })
            .collect(),
        dropped: 0,
    }
}

/// Bytes of an MQTT 3.1.1 PUBLISH carrying `payload` on `topic` (packet id with QoS 1).
fn publish_bytes(topic: &str, payload: usize, qos1: bool) -> usize {
    let remaining = 2 + topic.len() + if qos1 { 2 } else { 0 } + payload;
    let len_bytes = match remaining {
        0..128 => 1,
        128..16_384 => 2,
        16_384..2_097_152 => 3,
        _ => 4,
    };
    1 + len_bytes + remaining
}

/// IPv4 + TCP headers with the timestamp option, as Linux sends them: 20 + 32 bytes.
const TCP_IP_HEADERS: usize = 52;
/// An Ethernet II header (the veth counters of bench/agent-telemetry.sh include it).
const ETHERNET_HEADER: usize = 14;

/// The idle uplink of one device with one workload at the agent's defaults: a telemetry
/// sample every 10 s (QoS 0), a status heartbeat every 60 s (QoS 1, so the broker's
/// PUBACK is ACKed), and a PINGREQ every 60 s keep-alive (rumqttc pings even while other
/// packets flow; the PINGRESP is ACKed). Before bench/agent-telemetry.sh measured it, the
/// model had a 30 s heartbeat and no pings, and came out 0.03 kbit/s under the capture.
fn uplink(d: &DesiredState, credential: &[u8]) -> Result<Value, Box<dyn std::error::Error>> {
    let (telemetry_every_s, heartbeat_every_s, keep_alive_s) = (10.0, 60.0, 60.0);
    let t = seal_telemetry(&telemetry(d), &d.device, credential)?;
    let s = drover_protocol::freshness::seal_status_seq(&status(d), 1_700_000_000_000, credential)?;
    let t_pkt = publish_bytes(&topics::telemetry(&d.device), t.len(), false);
    let s_pkt = publish_bytes(&topics::status(&d.device), s.len(), true);
    let ping = 2;
    let mqtt = t_pkt as f64 / telemetry_every_s
        + s_pkt as f64 / heartbeat_every_s
        + ping as f64 / keep_alive_s;
    // Segments: telemetry; status and the ACK of its PUBACK; PINGREQ and the ACK of its
    // PINGRESP.
    let segments = 1.0 / telemetry_every_s + 2.0 / heartbeat_every_s + 2.0 / keep_alive_s;
    let tcp = mqtt + segments * TCP_IP_HEADERS as f64;
    let ethernet = tcp + segments * ETHERNET_HEADER as f64;
    let kbit = |bytes_per_s: f64| (bytes_per_s * 8.0 / 1000.0 * 1000.0).round() / 1000.0;
    Ok(json!({
        "device": d.device.as_str(),
        "workloads": d.workloads.len(),
        "telemetry_every_s": telemetry_every_s,
        "heartbeat_every_s": heartbeat_every_s,
        "keep_alive_s": keep_alive_s,
        "telemetry_payload_bytes": t.len(),
        "telemetry_packet_bytes": t_pkt,
        "status_payload_bytes": s.len(),
        "status_packet_bytes": s_pkt,
        "mqtt_kbit_s": kbit(mqtt),
        "with_tcp_ip_headers_kbit_s": kbit(tcp),
        "with_ethernet_kbit_s": kbit(ethernet),
        "budget_kbit_s": 0.25,
    }))
}

fn json_len<T: Serialize>(v: &T) -> Result<usize, serde_json::Error> {
    Ok(serde_json::to_vec(v)?.len())
}

fn row(what: &str, note: &str, wire: usize, json: usize) -> Value {
    json!({
        "message": what,
        "note": note,
        "wire_bytes": wire,
        "json_bytes": json,
        "json_over_wire": (json as f64 / wire as f64 * 100.0).round() / 100.0,
    })
}

/// Fixed bytes for the ephemeral key: sizes do not depend on them.
struct FixedRng;

impl drover_protocol::sealed::rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        7
    }
    fn next_u64(&mut self) -> u64 {
        7
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(7);
    }
}

impl drover_protocol::sealed::rand_core::CryptoRng for FixedRng {}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let credential = [9u8; 32];
    let mut rows = Vec::new();
    for n in [1usize, 5] {
        let d = desired(n);
        let plain = encode(&d)?;
        let signed = sign_desired(&d, &key)?;
        let djson = json_len(&d)?;
        // JSON counterpart of the signed payload: the state plus a base64 ed25519 signature.
        let sjson = json_len(&json!({"desired": d, "signature": B64.encode([0u8; 64])}))?;
        rows.push(row(
            &format!("desired state, {n} workload(s), signed (before sealing)"),
            "sign_desired: envelope(SignedDesired{envelope(DesiredState), ed25519 sig}); JSON: {desired, signature: base64}",
            signed.len(),
            sjson,
        ));
        let pk = drover_protocol::keys::SealSecret::derive(&credential).public();
        let sealed = drover_protocol::sealed::seal_desired(&d, &pk, &key, &mut FixedRng)?;
        rows.push(row(
            &format!("desired state, {n} workload(s), sealed and signed (as published)"),
            "seal_desired: envelope(SealedDesired{device, generation, HPKE enc (32), ChaCha20-Poly1305(envelope(DesiredState)) + tag (16), ed25519 sig}); JSON as signed",
            sealed.len(),
            sjson,
        ));
        rows.push(row(
            &format!("desired state, {n} workload(s), plain encode"),
            "encode(DesiredState); JSON: serde_json::to_vec(DesiredState)",
            plain.len(),
            djson,
        ));
    }
    for n in [1usize, 5] {
        let d = desired(n);
        let s = status(&d);
        let sealed = seal_status(&s, &credential)?;
        let sjson = json_len(&json!({"status": s, "mac": B64.encode([0u8; 32])}))?;
        let seq = drover_protocol::freshness::seal_status_seq(&s, 1_700_000_000_000, &credential)?;
        let qjson = json_len(
            &json!({"status": s, "seq": 1_700_000_000_000u64, "mac": B64.encode([0u8; 32])}),
        )?;
        rows.push(row(
            &format!("device status, {n} running workload(s), sequenced and sealed (as published)"),
            "seal_status_seq: envelope(SequencedStatus{seq, envelope(DeviceStatus), HMAC-SHA256 over device, seq, status}); JSON: {status, seq, mac: base64}",
            seq.len(),
            qjson,
        ));
        rows.push(row(
            &format!("before: device status, {n} running workload(s), sealed without sequence"),
            "seal_status (before issue 13 part 6): envelope(AuthedStatus{envelope(DeviceStatus), HMAC-SHA256}); JSON: {status, mac: base64}",
            sealed.len(),
            sjson,
        ));
        rows.push(row(
            &format!("device status, {n} running workload(s), plain encode"),
            "encode(DeviceStatus); JSON: serde_json::to_vec(DeviceStatus)",
            encode(&s)?.len(),
            json_len(&s)?,
        ));
    }
    let dev = desired(1).device;
    let presence =
        drover_protocol::freshness::seal_presence(&dev, true, 1_700_000_000_000, &credential)?;
    rows.push(row(
        "presence online, sealed with sequence (as published)",
        "seal_presence: envelope(SealedPresence{online, seq, HMAC-SHA256}); JSON: {online, seq, mac: base64}",
        presence.len(),
        json_len(&json!({"online": true, "seq": 1_700_000_000_000u64, "mac": B64.encode([0u8; 32])}))?,
    ));
    rows.push(row(
        "before: presence online, plain",
        "the bytes `online` (before issue 13 part 6); JSON: the same string quoted",
        b"online".len(),
        json_len(&"online")?,
    ));
    for n in [1usize, 5] {
        let d = desired(n);
        let t = telemetry(&d);
        rows.push(row(
            &format!("telemetry sample, {n} workload(s), sealed (as published)"),
            "seal_telemetry: envelope(Telemetry) + 16-byte truncated HMAC-SHA256; JSON: serde_json::to_vec(Telemetry) + base64 tag",
            seal_telemetry(&t, &d.device, &credential)?.len(),
            json_len(&json!({"telemetry": t, "mac": B64.encode([0u8; 16])}))?,
        ));
    }
    for n in [1usize, 5] {
        let t = before_sample(&desired(n));
        rows.push(row(
            &format!("before: bench-defined telemetry sample, {n} workload(s)"),
            "the sample bench/wire defined before drover-protocol had a type (issue 8): encode(), no MAC",
            encode(&t)?.len(),
            json_len(&t)?,
        ));
    }
    let out = json!({
        "codec": "postcard in drover_protocol's versioned envelope",
        "telemetry_type": "drover_protocol::Telemetry (sealed with seal_telemetry)",
        "rows": rows,
        "uplink": uplink(&desired(1), &credential)?,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
