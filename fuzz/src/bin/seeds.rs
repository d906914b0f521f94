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
use drover_protocol::freshness::{seal_presence, seal_status_seq};
use drover_protocol::keys::SealSecret;
use drover_protocol::manifest::parse_workloads;
use drover_protocol::sealed::rand_core::{CryptoRng, RngCore};
use drover_protocol::sealed::seal_desired;
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
    let seal = SealSecret::derive(CREDENTIAL).public();
    for (i, d) in desired.iter().enumerate() {
        wire_seed(
            &mut seeds,
            &i.to_string(),
            Kind::SealedDesired,
            seal_desired(d, &seal, &key, &mut Counter(i as u64))
                .unwrap_or_else(|e| panic!("seed: {e}")),
        );
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
    wire_seed(
        &mut seeds,
        "0",
        Kind::SequencedStatus,
        ok(seal_status_seq(&s, 5 << 32, CREDENTIAL)),
    );
    for (name, online) in [("online", true), ("offline", false)] {
        let p = seal_presence(&dev, online, (5 << 32) + 1, CREDENTIAL);
        wire_seed(&mut seeds, name, Kind::SealedPresence, ok(p));
    }
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

/// Registry answers: `[host byte] body [NUL config]` (see `fuzz_targets/registry.rs`).
fn registry_seeds() -> Seeds {
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let entry = |os: &str, arch: &str, variant: Option<&str>, c: char| {
        let v = variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":500,"platform":{{"os":"{os}","architecture":"{arch}"{v}}}}}"#,
            d(c)
        )
    };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{},{},{}]}}"#,
        entry("linux", "amd64", None, 'a'),
        entry("linux", "arm64", Some("v8"), 'b'),
        entry("linux", "arm", Some("v7"), 'c'),
        entry("linux", "arm", Some("v6"), 'd'),
    );
    let platformless = format!(r#"{{"manifests":[{{"digest":"{}"}}]}}"#, d('e'));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":300}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":1000}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{}"}}]}}"#,
        d('1'),
        d('2'),
        d('3')
    );
    let config = format!(
        r#"{{"architecture":"arm64","os":"linux","config":{{"Entrypoint":["/app"],"Cmd":["--serve"],"Env":["PATH=/bin"],"WorkingDir":"/srv","User":"1000:1000","Healthcheck":{{"Test":["CMD","/app","--check"],"Interval":30000000000,"Timeout":5000000000,"Retries":3}}}},"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
        d('4'),
        d('5')
    );
    let schema1 = r#"{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:00"}]}"#.to_owned();
    let mut seeds = Seeds::new();
    for host in 0u8..5 {
        let mut image = vec![host];
        image.extend(manifest.as_bytes());
        image.push(0);
        image.extend(config.as_bytes());
        seeds.push((format!("image-{host}"), image));
        seeds.push((
            format!("index-{host}"),
            [&[host], index.as_bytes()].concat(),
        ));
    }
    seeds.push((
        "platformless".into(),
        [&[0], platformless.as_bytes()].concat(),
    ));
    seeds.push(("schema1".into(), [&[0], schema1.as_bytes()].concat()));
    seeds
}

/// `/v2` requests: `[method] [flags] target \n range \n authorization`.
fn v2_seeds() -> Seeds {
    let m = drover_protocol::Digest::of(drover_fuzz::v2::MANIFEST);
    let b = drover_protocol::Digest::of(drover_fuzz::v2::BLOB);
    let requests: [(u8, u8, String); 10] = [
        (0, 1, "/v2/".into()),
        (
            0,
            0,
            "/v2/tools/app/manifests/1\n\nBasic cGktMTpzZWNyZXQ=".into(),
        ),
        (0, 1, "/v2/tools/app/manifests/1".into()),
        (1, 1, "/v2/tools/app/manifests/1".into()),
        (0, 1, format!("/v2/tools/app/manifests/{m}")),
        (0, 1, "/v2/tools/app/tags/list".into()),
        (0, 3, format!("/v2/tools/app/blobs/{b}\nbytes=2-9")),
        (0, 3, format!("/v2/tools/app/blobs/{b}\nbytes=5-")),
        (
            0,
            0,
            "/v2/tools/app/tags/list\n\nBasic cGktMTp3cm9uZw==".into(),
        ),
        (0, 1, "/v2/../tools/app/manifests/1".into()),
    ];
    requests
        .into_iter()
        .enumerate()
        .map(|(i, (method, flags, text))| {
            let mut b = vec![method, flags];
            b.extend(text.as_bytes());
            (format!("r{i}"), b)
        })
        .collect()
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("seed: {e}"))
}

/// A tar built with the `tar` crate: `(path, type, link target or content)`.
fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let body: &[u8] = if kind.is_file() { data.as_bytes() } else { b"" };
        h.set_size(body.len() as u64);
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            ok(h.set_link_name(data));
        }
        ok(h.set_path(path));
        h.set_cksum();
        ok(b.append(&h, body));
    }
    ok(b.into_inner())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    ok(e.write_all(bytes));
    ok(e.finish())
}

/// One zstd frame of raw (stored) blocks: what any decoder must read.
fn zstd_raw(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x28, 0xB5, 0x2F, 0xFD, 0xA0];
    out.extend((bytes.len() as u32).to_le_bytes());
    let chunks: Vec<&[u8]> = bytes.chunks(1 << 16).collect();
    for (i, c) in chunks.iter().enumerate() {
        let last = u32::from(i + 1 == chunks.len());
        let header = ((c.len() as u32) << 3) | last;
        out.extend(&header.to_le_bytes()[..3]);
        out.extend(*c);
    }
    out
}

/// Layers: `[selector] blob`, selector bits 0-1 the compression (`fuzz_targets/layer.rs`).
fn layer_seeds() -> Seeds {
    use tar::EntryType::{Directory, Fifo, Link, Regular, Symlink};
    let tars = [
        (
            "tree",
            tar_of(&[
                ("etc/", Directory, ""),
                ("etc/hostname", Regular, "edge\n"),
                ("bin/", Directory, ""),
                ("bin/sh", Regular, "#!binary"),
                ("bin/ash", Link, "bin/sh"),
                ("bin/busybox", Symlink, "sh"),
                ("run/fifo", Fifo, ""),
            ]),
        ),
        (
            "whiteouts",
            tar_of(&[
                ("dir/", Directory, ""),
                ("dir/.wh..wh..opq", Regular, ""),
                (".wh.gone", Regular, ""),
                ("etc/.wh.passwd", Regular, ""),
            ]),
        ),
        (
            "lower-link",
            tar_of(&[("passwd", Link, "etc/passwd"), ("l", Symlink, "/etc")]),
        ),
        (
            "escapes",
            tar_of(&[("link", Symlink, "../../.."), ("link/x", Regular, "x")]),
        ),
        ("empty", tar_of(&[])),
    ];
    let mut seeds = Seeds::new();
    for (label, t) in &tars {
        seeds.push((format!("{label}-tar"), [&[0], t.as_slice()].concat()));
        seeds.push((format!("{label}-gzip"), [&[1], gzip(t).as_slice()].concat()));
        seeds.push((
            format!("{label}-zstd"),
            [&[2], zstd_raw(t).as_slice()].concat(),
        ));
    }
    seeds
}

fn main() {
    write("wire", wire_seeds());
    write("manifest", text_seeds("yaml"));
    write("config", text_seeds("toml"));
    write("strings", string_seeds());
    write("fleet", text_seeds("yaml"));
    write("hub_config", text_seeds("toml"));
    write("agent_config", text_seeds("toml"));
    write("registry", registry_seeds());
    write("v2", v2_seeds());
    write("layer", layer_seeds());
}

/// A fixed stream of bytes for the HPKE encapsulation of seeds: seeds stay the same from
/// run to run (never used for anything but seeds).
struct Counter(u64);

impl RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = (self.next_u64() >> 56) as u8;
        }
    }
}

impl CryptoRng for Counter {}
