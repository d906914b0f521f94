//! Writes the seed corpora into `fuzz/seeds/<target>/`: real encoded, signed and sealed
//! messages (with the fixed keys of `drover_fuzz`), the YAML manifests and TOML configs
//! of `configs/`, and typical names, references and quantities. Run from `fuzz/`:
//! `cargo run --bin seeds` (bench/fuzz.sh does it when the folder is missing).

// Linked for its sanitizer-coverage callbacks: this binary is built with the same
// instrumentation flags as the targets (its `main` is ours, libFuzzer's is not pulled in).
use libfuzzer_sys as _;

use std::fs;
use std::path::Path;

use drover_fuzz::{CREDENTIAL, Kind, device, hub_key};
use drover_protocol::auth::{seal_status, sign_desired};
use drover_protocol::command::{
    Command, CommandKind, CommandResponse, FailureKind, LogsRequest, seal_response, sign_command,
};
use drover_protocol::manifest::parse_workloads;
use drover_protocol::telemetry::seal_telemetry;
use drover_protocol::{
    Capacity, ContainerStatus, ContainerUsage, DesiredState, DeviceStatus, DeviceUsage, Name,
    Phase, Telemetry, WorkloadStatus, WorkloadUsage, encode,
};

type Seeds = Vec<(String, Vec<u8>)>;

fn name(s: &str) -> Name {
    Name::new(s).unwrap_or_else(|e| panic!("seed name {s}: {e}"))
}

fn write(target: &str, seeds: Seeds) {
    let dir = Path::new("seeds").join(target);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for (file, bytes) in &seeds {
        fs::write(dir.join(file), bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    println!("{target}: {} seeds", seeds.len());
}

fn wire_seed(seeds: &mut Seeds, label: &str, kind: Kind, payload: Vec<u8>) {
    let mut bytes = vec![kind.byte()];
    bytes.extend(payload);
    seeds.push((format!("{kind:?}-{label}").to_lowercase(), bytes));
}

/// Every manifest (and config) file under `configs/` with extension `ext`.
fn config_files(ext: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![Path::new("../configs").to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                let text = fs::read_to_string(&path).unwrap_or_default();
                let label = path.to_string_lossy().replace(['/', '.'], "_");
                out.push((label.trim_start_matches('_').to_owned(), text));
            }
        }
    }
    out
}

fn status() -> DeviceStatus {
    let mut c = ContainerStatus::new(name("app"), "hub:sensor-sim:1".into(), Phase::Running);
    c.pid = Some(42);
    c.started_at_ms = Some(1_700_000_000_000);
    c.memory_bytes = Some(12 << 20);
    DeviceStatus {
        device: device(),
        observed_generation: 3,
        time_ms: 1_700_000_000_000,
        workloads: vec![WorkloadStatus {
            name: name("sensor"),
            phase: Phase::Running,
            restarts: 1,
            containers: vec![c],
            last_error: Some("exit 1".into()),
            reason: None,
            revision: 2,
            rolled_back: None,
        }],
        capacity: Capacity {
            memory_bytes: 4 << 30,
            cpu_millis: 4000,
            memory_reserved_bytes: 64 << 20,
            disk_free_bytes: 8 << 30,
            low_disk: false,
        },
    }
}

fn telemetry() -> Telemetry {
    let usage = ContainerUsage {
        name: name("app"),
        cpu_ms: 123_456,
        memory_kib: 20_480,
        memory_peak_kib: 30_000,
        pids: 3,
        oom_kills: 0,
        restarts: 1,
    };
    Telemetry {
        seq: 9,
        time_s: 1_700_000_000,
        device: DeviceUsage::month_up_example(),
        workloads: vec![WorkloadUsage {
            name: name("sensor"),
            containers: vec![usage],
        }],
        dropped: 0,
    }
}

fn commands() -> Vec<Command> {
    let logs = LogsRequest {
        workload: name("sensor"),
        container: Some(name("app")),
        follow: true,
        tail: Some(100),
        since_s: Some(3600),
        max_bytes: 1 << 20,
    };
    let kinds = [
        CommandKind::Logs(logs),
        CommandKind::Restart {
            workload: name("sensor"),
        },
        CommandKind::Cancel { id: 4 },
        CommandKind::Renew { id: 4 },
    ];
    (1u64..)
        .zip(kinds)
        .map(|(id, kind)| Command {
            device: device(),
            id,
            kind,
        })
        .collect()
}

fn wire_seeds() -> Seeds {
    let ok =
        |r: Result<Vec<u8>, _>| r.unwrap_or_else(|e: drover_protocol::CodecError| panic!("{e}"));
    let (dev, key) = (device(), hub_key());
    let mut seeds = Seeds::new();
    let mut desired = vec![DesiredState {
        device: dev.clone(),
        generation: 1,
        workloads: vec![],
    }];
    for (label, text) in config_files("yaml") {
        if let Ok(workloads) = parse_workloads(&label, &text) {
            desired.push(DesiredState {
                device: dev.clone(),
                generation: 7,
                workloads,
            });
        }
    }
    for (i, d) in desired.iter().enumerate() {
        wire_seed(&mut seeds, &i.to_string(), Kind::Desired, ok(encode(d)));
        wire_seed(
            &mut seeds,
            &i.to_string(),
            Kind::SignedDesired,
            ok(sign_desired(d, &key)),
        );
    }
    let s = status();
    wire_seed(&mut seeds, "0", Kind::Status, ok(encode(&s)));
    wire_seed(
        &mut seeds,
        "0",
        Kind::AuthedStatus,
        ok(seal_status(&s, CREDENTIAL)),
    );
    let t = telemetry();
    wire_seed(&mut seeds, "plain", Kind::Telemetry, ok(encode(&t)));
    wire_seed(
        &mut seeds,
        "sealed",
        Kind::Telemetry,
        ok(seal_telemetry(&t, &dev, CREDENTIAL)),
    );
    for c in commands() {
        let id = c.id.to_string();
        wire_seed(&mut seeds, &id, Kind::Command, ok(encode(&c)));
        wire_seed(
            &mut seeds,
            &id,
            Kind::SignedCommand,
            ok(sign_command(&c, &key)),
        );
    }
    let responses = [
        CommandResponse {
            id: 1,
            chunk: 0,
            data: b"line one\nline two\n".to_vec(),
            end: false,
            error: None,
        },
        CommandResponse::failed(
            1,
            1,
            FailureKind::from_code(b"no-workload"),
            "no such workload",
        ),
    ];
    for (i, r) in responses.iter().enumerate() {
        let label = i.to_string();
        wire_seed(&mut seeds, &label, Kind::Response, ok(encode(r)));
        wire_seed(
            &mut seeds,
            &format!("sealed{i}"),
            Kind::Response,
            ok(seal_response(r, &dev, CREDENTIAL)),
        );
    }
    seeds
}

fn text_seeds(ext: &str) -> Seeds {
    config_files(ext)
        .into_iter()
        .map(|(label, text)| (label, text.into_bytes()))
        .collect()
}

fn string_seeds() -> Seeds {
    [
        "sensor",
        "drover.dev/role",
        "edge-01",
        "hub:sensor-sim:1",
        "docker.io/library/alpine:3.20",
        "ghcr.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "localhost:5000/x/y:tag",
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "64Mi",
        "1.5Gi",
        "500m",
        "2",
        "30s",
        "1h30m",
        "250ms",
    ]
    .iter()
    .enumerate()
    .map(|(i, s)| (format!("s{i}"), s.as_bytes().to_vec()))
    .collect()
}

fn main() {
    write("wire", wire_seeds());
    write("manifest", text_seeds("yaml"));
    write("config", text_seeds("toml"));
    write("strings", string_seeds());
}
