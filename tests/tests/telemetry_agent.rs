//! End-to-end: telemetry from a real agent through a real broker (Mosquitto).
//!
//! A busybox container that holds memory and burns a core is sampled: what arrives on the
//! device's telemetry topic opens with the device credential, and its values match the
//! cgroup files and `/proc` read when it arrives. With the broker stopped, samples wait
//! in the agent's bounded queue, thinned to one per minute, and arrive in `seq` order
//! after the broker is back. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use drover_protocol::keys::StatusKey;
use drover_protocol::telemetry::open_telemetry;
use drover_protocol::{ContainerUsage, Name, Telemetry, topics};
use drover_tests::agent::{TestAgent, now_ms, workload_yaml};
use drover_tests::hub::{Mosquitto, free_port};
use drover_tests::{require_root, wait_for};

const CREDENTIAL: &str = "telemetry-test-credential";
/// The ed25519 public key of the all-7 seed: the agent needs a pinned key to start; no
/// desired state is sent in these tests.
const HUB_KEY: &str = "6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=";
const T: Duration = Duration::from_secs(30);

/// Points `agent` at the broker on `port` as `device`, sampling every second.
fn configure(agent: &TestAgent, device: &str, port: u16, queue: u32) {
    agent.connect_to_hub(&format!(
        "device = \"{device}\"\n[hub]\nbroker = \"127.0.0.1:{port}\"\n\
         credential = \"{CREDENTIAL}\"\npublic_key = \"{HUB_KEY}\""
    ));
    agent.append_config(&format!(
        "[telemetry]\ninterval = \"1s\"\nqueue = {queue}\n"
    ));
}

/// `mosquitto_sub` on one topic; each payload with the moment it arrived.
struct Subscriber {
    child: Child,
    rx: mpsc::Receiver<(Instant, Vec<u8>)>,
}

impl Subscriber {
    /// With `session`, a persistent session of that client id (kept by a persistent
    /// broker across its restart, messages queued for it meanwhile).
    fn start(port: u16, topic: &str, session: Option<&str>) -> Subscriber {
        let mut cmd = Command::new("mosquitto_sub");
        let port = port.to_string();
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            topic,
            "-q",
            "1",
            "-F",
            "%x",
        ]);
        if let Some(id) = session {
            cmd.args(["-c", "-i", id]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (apt-get install mosquitto-clients)");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let payload = hex::decode(line.trim()).expect("hex payload");
                if tx.send((Instant::now(), payload)).is_err() {
                    return;
                }
            }
        });
        Subscriber { child, rx }
    }

    /// The next sample, opened with the device's credential above `held`.
    fn next(&self, device: &Name, held: u64) -> (Instant, Telemetry, usize) {
        let (at, payload) = self.rx.recv_timeout(T).expect("a telemetry sample in time");
        let sample = open_telemetry(
            &payload,
            device,
            &StatusKey::derive(CREDENTIAL.as_bytes()),
            held,
        )
        .unwrap_or_else(|e| panic!("sample does not open: {e}"));
        (at, sample, payload.len())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_u64(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim().parse().unwrap()
}

/// The value of `key` (in KiB) in a `/proc/meminfo`-style file.
fn kib_field(path: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn burn(sample: &Telemetry) -> Option<&ContainerUsage> {
    let w = sample
        .workloads
        .iter()
        .find(|w| w.name.as_str() == "burn")?;
    w.containers.first()
}

#[test]
fn a_container_s_usage_arrives_as_its_cgroup_reports_it() {
    if !require_root("a_container_s_usage_arrives_as_its_cgroup_reports_it") {
        return;
    }
    let broker = Mosquitto::start();
    let device = Name::new("tel-usage").unwrap();
    let sub = Subscriber::start(broker.port, &topics::telemetry(&device), None);
    let (mut agent, image) = TestAgent::with_busybox("telemetry_usage");
    configure(&agent, device.as_str(), broker.port, 64);
    // ~16 MB held in a shell variable, then a core burnt.
    let script = "x=$(yes aaaaaaaaaaaaaaa | head -c 16000000); while :; do :; done";
    agent.write_manifest("burn.yaml", &workload_yaml("burn", &image, script, "", ""));
    agent.start();
    agent.wait_running("burn", "main", T);
    let cg = |ctrl: &str, file: &str| agent.cgroup_file(ctrl, "burn", "main", file);

    // Wait until the container holds its memory (`yes` and `head` done).
    let mut held = 0;
    wait_for("the container's 16 MB in telemetry", T, || {
        let (_, s, _) = sub.next(&device, held);
        held = s.seq;
        burn(&s)
            .filter(|c| c.memory_kib > 15_000 && c.pids == 1)
            .map(|_| ())
    });
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (at, s, bytes) = sub.next(&device, held);
        // Read at once: the sample left the agent a few milliseconds ago.
        let mem = read_u64(&cg("memory", "memory.usage_in_bytes"));
        let cpu_ns = read_u64(&cg("cpuacct", "cpuacct.usage"));
        let pids = read_u64(&cg("pids", "pids.current"));
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let c = burn(&s).expect("burn in every sample").clone();
        let mem_kib = mem / 1024;
        assert!(
            c.memory_kib.abs_diff(mem_kib) <= 1024 + mem_kib / 20,
            "memory {c:?} vs {mem_kib} KiB"
        );
        assert!(c.memory_peak_kib >= c.memory_kib, "{c:?}");
        let file_ms = cpu_ns / 1_000_000;
        assert!(
            c.cpu_ms <= file_ms && file_ms - c.cpu_ms < 500,
            "cpu {c:?} vs {file_ms} ms"
        );
        assert_eq!(u64::from(c.pids), pids, "{c:?}");
        assert_eq!((c.oom_kills, c.restarts), (0, 0), "{c:?}");
        check_device(&s, &agent, uptime);
        assert_eq!((s.dropped, s.workloads.len()), (0, 1));
        println!("sample with one workload: {bytes} bytes");
        assert!(bytes <= 96, "{bytes} bytes: {s:?}");
        held = s.seq;
        seen.push((at, c.cpu_ms, file_ms));
    }
    // CPU time rises as the cgroup's does: about 1000 ms per second of burning (less
    // when the machine is busy; the cgroup's own counter is the reference).
    let (first, last) = (seen[0], seen[seen.len() - 1]);
    let wall_ms = last.0.duration_since(first.0).as_millis() as u64;
    let (sent, file) = (last.1 - first.1, last.2 - first.2);
    println!("cpu: {sent} ms in telemetry, {file} ms in cpuacct, over {wall_ms} ms");
    // A tenth of a core at least, even on a machine busy with other work.
    assert!(sent > wall_ms / 10, "the container burns: {sent} ms");
    assert!(
        sent <= wall_ms * 11 / 10 + 100,
        "one core at most: {sent} ms in {wall_ms} ms"
    );
    assert!(sent.abs_diff(file) <= 500, "{sent} vs {file}");
}

/// The device part of a sample against `/proc` and the state folder, read just now.
fn check_device(s: &Telemetry, agent: &TestAgent, uptime: f64) {
    let d = &s.device;
    let now_s = now_ms() / 1000;
    assert!(
        s.time_s.abs_diff(now_s) <= 2,
        "time {} vs {now_s}",
        s.time_s
    );
    assert!(
        (d.uptime_s as f64 - uptime).abs() <= 2.0,
        "uptime {} vs {uptime}",
        d.uptime_s
    );
    let total = kib_field("/proc/meminfo", "MemTotal:");
    let available = kib_field("/proc/meminfo", "MemAvailable:");
    let used_and_available = d.memory_used_kib + d.memory_available_kib;
    assert!(used_and_available.abs_diff(total) <= 2, "{d:?} vs {total}");
    assert!(
        d.memory_available_kib.abs_diff(available) <= total / 20,
        "{d:?} vs {available}"
    );
    let rss = kib_field(&format!("/proc/{}/status", agent.pid().unwrap()), "VmRSS:");
    assert!(
        d.agent_rss_kib.abs_diff(rss) <= 2048,
        "agent rss {} vs {rss} KiB",
        d.agent_rss_kib
    );
    // SAFETY: statvfs fills the struct we pass; the path is NUL-terminated.
    let free_kib = unsafe {
        let path = std::ffi::CString::new(agent.state.as_os_str().as_encoded_bytes()).unwrap();
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(path.as_ptr(), &mut st), 0);
        st.f_bavail * st.f_frsize / 1024
    };
    assert!(
        d.disk_free_kib.abs_diff(free_kib) <= free_kib / 100 + 1024,
        "{d:?} vs {free_kib}"
    );
    assert!(d.cpu_permille > 0 && d.cpu_permille <= 1000, "{d:?}");
}

#[test]
fn samples_taken_offline_arrive_thinned_and_in_order_after_the_broker_returns() {
    if !require_root("samples_taken_offline_arrive_thinned_and_in_order_after_the_broker_returns") {
        return;
    }
    let port = free_port();
    let store = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start_persistent(port, store.path());
    let device = Name::new("tel-offline").unwrap();
    let session = drover_tests::unique("tel-sub");
    let sub = Subscriber::start(port, &topics::telemetry(&device), Some(&session));
    let mut agent = TestAgent::new("telemetry_offline");
    let queue = 3;
    configure(&agent, device.as_str(), port, queue);
    agent.start();
    let (_, first, _) = sub.next(&device, 0);
    let (_, online, _) = sub.next(&device, first.seq);

    broker.stop();
    let stopped_s = now_ms() / 1000;
    std::thread::sleep(Duration::from_secs(5));
    let _broker = Mosquitto::start_persistent(port, store.path());
    let restarted_s = now_ms() / 1000;

    // Everything up to a few samples taken after the agent reconnected.
    let mut got = vec![online.clone()];
    while got.last().unwrap().time_s <= restarted_s + 2 || got.len() < 4 {
        let (_, s, _) = sub.next(&device, got.last().unwrap().seq);
        got.push(s);
    }
    let counters: Vec<u64> = got.iter().map(|s| s.seq & 0xffff_ffff).collect();
    let times: Vec<u64> = got.iter().map(|s| s.time_s).collect();
    println!("counters {counters:?}, times {times:?}, broker away {stopped_s}..{restarted_s}");
    assert!(
        got.iter().all(|s| s.seq >> 32 == first.seq >> 32),
        "one epoch"
    );
    // In order (`next` opened each above the previous), and with a gap where the queue
    // thinned the outage's samples.
    let missing: u64 = counters.windows(2).map(|w| w[1] - w[0] - 1).sum();
    assert!(missing > 0, "the queue thinned the outage: {counters:?}");
    // The broker went away after `online` was sent: the next sample was the first one
    // queued, and thinning keeps the first sample of a minute.
    assert_eq!(counters[1], counters[0] + 1, "{counters:?}");
    let widest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        widest >= 3,
        "a time gap where samples were thinned: {times:?}"
    );
    // At most `queue` samples taken while the broker was away reach the subscriber.
    let offline: Vec<&Telemetry> = got[1..].iter().filter(|s| s.time_s < restarted_s).collect();
    assert!(
        !offline.is_empty() && offline.len() <= queue as usize,
        "{times:?}"
    );
    assert!(
        got.iter().all(|s| s.dropped == 0),
        "nothing dropped within a minute or two"
    );
    // The agent's counters, as of its latest report (so waited for until they count
    // every received sample, `first` included).
    let count = |p: &serde_json::Value, key: &str| p["agent"]["hub"][key].as_u64().unwrap_or(0);
    let ps = agent.wait_ps("link stats with every received sample", T, |p| {
        count(p, "published_telemetry") > got.len() as u64
    });
    let hub = &ps["agent"]["hub"];
    println!("link stats {hub}");
    // Every sample missing between the received ones was thinned: none lost on the way
    // (no more thinning happens once connected, so the count is final).
    assert_eq!(hub["downsampled_telemetry"], missing, "{hub}");
    assert_eq!(hub["dropped_telemetry"], 0, "{hub}");
}
