//! The agent's hub link against a real Mosquitto broker (Debian package `mosquitto`):
//! signed desired states in, forged ones counted, sealed status out, the offline queue
//! bounded, and reconnection by itself after the broker restarts on the same port.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use drover_agent::hub_link::{self as hub, HubConfig, HubEvent, HubHandle, LinkStats};
use drover_protocol::auth::sign_desired;
use drover_protocol::freshness::{open_presence, open_status_seq};
use drover_protocol::keys::StatusKey;
use drover_protocol::{
    ContainerSpec, DesiredState, DeviceStatus, EnvVar, MAX_MESSAGE_BYTES, MAX_MQTT_PACKET_BYTES,
    Name, NetworkMode, Phase, Resources, RestartPolicy, WorkloadSpec, WorkloadStatus, topics,
};
use ed25519_dalek::SigningKey;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

const CREDENTIAL: &str = "test-credential-0123456789";
const WAIT: Duration = Duration::from_secs(15);

/// A Mosquitto process on a fixed local port; killed on drop.
struct Broker {
    child: Child,
    conf: PathBuf,
    log: PathBuf,
    port: u16,
}

fn mosquitto_binary() -> PathBuf {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("mosquitto is not installed: `apt-get install mosquitto` (this test needs a real broker)")
        })
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"
            ),
        )
        .expect("write mosquitto.conf");
        let log = dir.join("mosquitto.log");
        let child = Broker::spawn(&conf, &log, port);
        Broker {
            child,
            conf,
            log,
            port,
        }
    }

    fn spawn(conf: &Path, log: &Path, port: u16) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("broker log");
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::from(out.try_clone().expect("dup log")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}: see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        self.child = Broker::spawn(&self.conf, &self.log, self.port);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain MQTT client playing the hub: publishes desired states, collects status and presence.
struct FakeHub {
    client: AsyncClient,
    received: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

impl FakeHub {
    async fn connect(port: u16, device: &Name) -> FakeHub {
        let mut opts = MqttOptions::new("test-hub", "127.0.0.1", port);
        opts.set_max_packet_size(MAX_MQTT_PACKET_BYTES, MAX_MQTT_PACKET_BYTES);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, received) = mpsc::unbounded_channel();
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        let subscriber = client.clone();
        let (status, online) = (topics::status(device), topics::online(device));
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = subscriber.try_subscribe(&status, QoS::AtLeastOnce);
                        let _ = subscriber.try_subscribe(&online, QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => sleep(Duration::from_millis(100)).await,
                }
            }
        });
        timeout(WAIT, ready.recv())
            .await
            .expect("fake hub subscribed");
        FakeHub { client, received }
    }

    async fn publish_desired(&self, device: &Name, payload: Vec<u8>) {
        self.client
            .publish(topics::desired(device), QoS::AtLeastOnce, true, payload)
            .await
            .expect("publish desired");
    }

    /// The next message on `topic` satisfying `want`, skipping others.
    async fn next_on(&mut self, topic: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.received.recv())
                .await
                .unwrap_or_else(|_| panic!("nothing wanted arrived on {topic}"))
                .expect("fake hub running");
            if msg.0 == topic && want(&msg.1) {
                return msg.1;
            }
        }
    }
}

fn desired(device: &str, generation: u64, key: &SigningKey) -> Vec<u8> {
    let state = DesiredState {
        device: Name::new(device).expect("name"),
        generation,
        workloads: vec![],
    };
    sign_desired(&state, key).expect("sign")
}

fn status(device: &Name, generation: u64) -> DeviceStatus {
    DeviceStatus {
        device: device.clone(),
        observed_generation: generation,
        time_ms: 1,
        workloads: vec![],
        capacity: Default::default(),
    }
}

async fn next_event(events: &mut mpsc::Receiver<HubEvent>) -> HubEvent {
    timeout(WAIT, events.recv())
        .await
        .expect("a hub event in time")
        .expect("link running")
}

/// Waits until `cond` holds for the link's counters.
async fn stats_until(handle: &HubHandle, cond: impl Fn(&LinkStats) -> bool) -> LinkStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = handle.stats();
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "stats never got there: {s:?}");
        sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that no desired state is forwarded for a while.
async fn no_desired_for(events: &mut mpsc::Receiver<HubEvent>, d: Duration) {
    if let Ok(Some(ev)) = timeout(d, events.recv()).await {
        assert!(!matches!(ev, HubEvent::Desired { .. }), "unexpected {ev:?}");
    }
}

fn config(port: u16, hub_key: &SigningKey) -> HubConfig {
    let public =
        base64::engine::general_purpose::STANDARD.encode(hub_key.verifying_key().to_bytes());
    toml::from_str(&format!(
        "broker = \"127.0.0.1:{port}\"\ncredential = \"{CREDENTIAL}\"\npublic_key = \"{public}\"\n\
         heartbeat = \"2s\"\nstatus_queue = 4\n"
    ))
    .expect("hub config")
}

#[tokio::test(flavor = "current_thread")]
async fn the_link_verifies_desired_states_seals_status_and_survives_a_broker_restart() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("drover_agent=debug")
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = Broker::start(dir.path());
    let device = Name::new("pi-1").expect("name");
    let hub_key = SigningKey::from_bytes(&[9; 32]);
    let mut fake = FakeHub::connect(broker.port, &device).await;

    let (tx, mut events) = mpsc::channel(8);
    let handle = hub::spawn(&config(broker.port, &hub_key), &device, 0, tx).expect("spawn");
    assert!(matches!(next_event(&mut events).await, HubEvent::Connected));
    let online = topics::online(&device);
    let status_key = StatusKey::derive(CREDENTIAL.as_bytes());
    let presence = |p: &[u8]| open_presence(p, &device, &status_key).expect("sealed");
    let announced = fake.next_on(&online, |p| presence(p).online).await;
    let online_seq = presence(&announced).seq.expect("sequenced");

    // A genuine desired state arrives once, with the payload to persist.
    let genuine = desired("pi-1", 3, &hub_key);
    fake.publish_desired(&device, genuine.clone()).await;
    match next_event(&mut events).await {
        HubEvent::Desired { state, payload } => {
            assert_eq!(state.generation, 3);
            assert_eq!(payload, genuine);
        }
        other => panic!("expected the desired state, got {other:?}"),
    }
    assert_eq!(handle.held_generation(), 3);

    // Forged, misaddressed and replayed states are dropped and counted by reason.
    fake.publish_desired(
        &device,
        desired("pi-1", 4, &SigningKey::from_bytes(&[8; 32])),
    )
    .await;
    fake.publish_desired(&device, desired("pi-2", 5, &hub_key))
        .await;
    fake.publish_desired(&device, desired("pi-1", 2, &hub_key))
        .await;
    fake.publish_desired(&device, genuine.clone()).await; // same generation: silent
    let s = stats_until(&handle, |s| s.rejected_desired >= 3).await;
    no_desired_for(&mut events, Duration::from_millis(500)).await;
    let s2 = handle.stats();
    assert_eq!(s2.rejected_desired, 3, "{s2:?}");
    for reason in ["bad_signature", "wrong_device", "stale_generation"] {
        assert_eq!(s.rejected_by_reason.get(reason), Some(&1), "{s:?}");
    }

    // A status is sealed with the credential and arrives.
    handle.publish_status(status(&device, 3));
    let status_topic = topics::status(&device);
    let open = |p: &[u8]| {
        open_status_seq(p, &device, &StatusKey::derive(CREDENTIAL.as_bytes()))
            .expect("status opens")
            .0
    };
    let got = fake.next_on(&status_topic, |_| true).await;
    assert_eq!(open(&got).observed_generation, 3);
    // And again with the heartbeat, time refreshed, though nothing changed.
    let beat = fake.next_on(&status_topic, |_| true).await;
    assert!(open(&beat).time_ms > 1);

    // Broker down: statuses beyond the queue are dropped, oldest first, and counted.
    broker.kill();
    assert!(matches!(
        next_event(&mut events).await,
        HubEvent::Disconnected
    ));
    let before = handle.stats();
    assert!(!before.connected);
    for generation in 10..20 {
        handle.publish_status(status(&device, generation));
    }
    assert_eq!(handle.stats().dropped_status - before.dropped_status, 6);

    // Broker back on the same port: the link reconnects by itself and sends the latest.
    broker.restart();
    assert!(matches!(next_event(&mut events).await, HubEvent::Connected));
    let latest = fake
        .next_on(&status_topic, |p| open(p).observed_generation == 19)
        .await;
    assert_eq!(open(&latest).device, device);
    let s = stats_until(&handle, |s| s.connected).await;
    assert_eq!(s.reconnects, 1);

    // The hub republishes the retained desired state after its restart: nothing new.
    fake.publish_desired(&device, genuine).await;
    no_desired_for(&mut events, Duration::from_secs(1)).await;
    assert_eq!(handle.stats().rejected_desired, 3);
    // A newer one still gets through on the new connection.
    fake.publish_desired(&device, desired("pi-1", 4, &hub_key))
        .await;
    match next_event(&mut events).await {
        HubEvent::Desired { state, .. } => assert_eq!(state.generation, 4),
        other => panic!("expected generation 4, got {other:?}"),
    }

    // Dropping the last handle closes the connection: the broker publishes the last will.
    // Sealed, and above every `online` sent before (two connections so far).
    drop(handle);
    let will = fake.next_on(&online, |p| !presence(p).online).await;
    assert!(presence(&will).seq.expect("sequenced") > online_seq + 2);
}

/// A signed desired state of one workload whose env value pads it to `size` bytes.
fn desired_of_size(device: &Name, generation: u64, key: &SigningKey, size: usize) -> Vec<u8> {
    let sized = |pad: usize| {
        let container = ContainerSpec {
            name: Name::new("main").expect("name"),
            image: drover_protocol::ImageRef::new("oci:/images/app:1").expect("image"),
            command: vec![],
            args: vec![],
            env: vec![EnvVar {
                name: "BLOB".into(),
                value: "x".repeat(pad),
            }],
            working_dir: None,
            mounts: vec![],
            resources: Resources::default(),
            devices: vec![],
            init: false,
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
            depends_on: vec![],
            security: Default::default(),
            env_refs: vec![],
        };
        let state = DesiredState {
            device: device.clone(),
            generation,
            workloads: vec![WorkloadSpec {
                name: Name::new("app").expect("name"),
                containers: vec![container],
                restart_policy: RestartPolicy::Always,
                network: NetworkMode::Host,
                volumes: vec![],
                stop_grace_ms: 1000,
                labels: Default::default(),
                depends_on: vec![],
                revision: 0,
                health_timeout_ms: 0,
                min_ready_ms: 0,
                fallback: None,
            }],
        };
        sign_desired(&state, key).expect("sign")
    };
    let base = sized(0).len();
    // Length prefixes grow with the padding (1 → 3 bytes, three of them nested).
    let payload = sized(size - base - 6);
    assert!(
        payload.len() <= size && payload.len() + 8 > size,
        "{}",
        payload.len()
    );
    payload
}

/// A status whose workload errors alone exceed one message.
fn oversize_status(device: &Name, generation: u64) -> DeviceStatus {
    let mut st = status(device, generation);
    st.workloads = (0..8)
        .map(|i| WorkloadStatus {
            name: Name::new(format!("wl-{i}")).expect("name"),
            phase: Phase::Error,
            restarts: 0,
            containers: vec![],
            last_error: Some("e".repeat(MAX_MESSAGE_BYTES / 4)),
            reason: None,
            revision: 0,
            rolled_back: None,
        })
        .collect();
    st
}

#[tokio::test(flavor = "current_thread")]
async fn desired_states_and_statuses_at_the_size_limit_keep_the_link_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path());
    let device = Name::new("pi-big").expect("name");
    let hub_key = SigningKey::from_bytes(&[9; 32]);
    let mut fake = FakeHub::connect(broker.port, &device).await;
    let (tx, mut events) = mpsc::channel(8);
    let handle = hub::spawn(&config(broker.port, &hub_key), &device, 0, tx).expect("spawn");
    assert!(matches!(next_event(&mut events).await, HubEvent::Connected));

    // A desired state of the largest allowed size arrives whole.
    let payload = desired_of_size(&device, 7, &hub_key, MAX_MESSAGE_BYTES);
    fake.publish_desired(&device, payload.clone()).await;
    match next_event(&mut events).await {
        HubEvent::Desired {
            state,
            payload: got,
        } => {
            assert_eq!(state.generation, 7);
            assert_eq!(got, payload);
        }
        other => panic!("expected the desired state, got {other:?}"),
    }

    // A status over the limit is trimmed, sent, and opens at the hub.
    handle.publish_status(oversize_status(&device, 7));
    let got = fake.next_on(&topics::status(&device), |_| true).await;
    assert!(got.len() <= MAX_MESSAGE_BYTES, "{}", got.len());
    let (opened, _) = open_status_seq(&got, &device, &StatusKey::derive(CREDENTIAL.as_bytes()))
        .expect("status opens");
    assert_eq!((opened.observed_generation, opened.workloads.len()), (7, 8));
    assert!(opened.workloads.iter().all(|w| {
        w.last_error
            .as_deref()
            .is_some_and(|e| e.ends_with("bytes cut]"))
    }));
    // The heartbeat resends it over the same connection.
    fake.next_on(&topics::status(&device), |_| true).await;
    let s = handle.stats();
    assert_eq!(
        (s.trimmed_status, s.reconnects, s.connected),
        (1, 0, true),
        "{s:?}"
    );
}

#[test]
fn spawning_outside_a_runtime_is_an_error_not_a_panic() {
    let key = SigningKey::from_bytes(&[9; 32]);
    let (tx, _rx) = mpsc::channel(1);
    let device = Name::new("pi-1").expect("name");
    let err = hub::spawn(&config(1883, &key), &device, 0, tx).err();
    assert_eq!(err, Some(hub::HubConfigError::NoRuntime));
}
