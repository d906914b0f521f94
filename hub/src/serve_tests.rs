//! The whole hub in-process: embedded broker, store, API and MQTT client on free ports.
//! A plain rumqttc client, authenticated as a registered device, reads its retained
//! signed desired state and sends back a status.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use base64::Engine;
use drover_protocol::auth::seal_status;
use drover_protocol::sealed::open_desired;
use drover_protocol::{DeviceStatus, MAX_MQTT_PACKET_BYTES, Name, topics};
use ed25519_dalek::VerifyingKey;
use rumqttc::{Client as MqttClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};

use super::*;
use crate::cli::Client;
use crate::views::{AddDeviceRequest, DeviceAdded, DeviceView};

/// A port that was free a moment ago (rumqttd cannot be told to use port 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_hub(dir: &std::path::Path) -> (Client, u16) {
    let (api, mqtt) = (free_port(), free_port());
    let (https, mqtts) = (free_port(), free_port());
    let config = HubConfig::parse(
        "test",
        &format!(
            "data_dir = {:?}\n[api]\nlisten = \"127.0.0.1:{api}\"\ntls_listen = \"127.0.0.1:{https}\"\n[broker]\nlisten = \"127.0.0.1:{mqtt}\"\ntls_listen = \"127.0.0.1:{mqtts}\"\nmax_connections = 16\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(serve(config, std::future::pending())).unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The admin token, created at the hub's first start.
        let token = std::fs::read_to_string(dir.join(crate::api::token::ADMIN_FILE)).ok();
        let client = Client::new(&format!("http://127.0.0.1:{api}")).with_token(token.as_deref());
        if client.get::<Vec<DeviceView>>("/v1/devices").is_ok() {
            return (client, mqtt);
        }
        assert!(Instant::now() < deadline, "hub API never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn device_client(name: &str, password: &str, port: u16) -> (MqttClient, rumqttc::Connection) {
    let mut opts = MqttOptions::new(name, "127.0.0.1", port);
    opts.set_credentials(name, password)
        .set_max_packet_size(MAX_MQTT_PACKET_BYTES, MAX_MQTT_PACKET_BYTES)
        .set_keep_alive(Duration::from_secs(5));
    MqttClient::new(opts, 10)
}

/// The next incoming packet other than pings and acks, within a few seconds.
fn next_packet(conn: &mut rumqttc::Connection) -> Result<Packet, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match conn.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(Event::Incoming(p @ (Packet::ConnAck(_) | Packet::Publish(_))))) => return Ok(p),
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => return Err(e.to_string()),
        }
    }
    Err("timed out".to_owned())
}

#[test]
fn a_registered_device_reads_its_signed_desired_state_and_reports_back() {
    let dir = tempfile::tempdir().unwrap();
    let (api, port) = start_hub(dir.path());
    let req = AddDeviceRequest {
        name: "pi-1".to_owned(),
        labels: Default::default(),
    };
    let added: DeviceAdded = api.post("/v1/devices", &req).unwrap();
    assert!(
        added.config.contains("\nregistry = \"https://")
            && added.config.contains("\nbroker = \"mqtts://")
            && added
                .config
                .contains("\nca = '''\n-----BEGIN CERTIFICATE-----\n"),
        "{}",
        added.config
    );
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(&added.public_key)
        .unwrap();
    let hub_key = VerifyingKey::from_bytes(&key_bytes.try_into().unwrap()).unwrap();
    let name = Name::new("pi-1").unwrap();

    // A wrong password, or a client id that is not the username, is refused.
    let (_c, mut conn) = device_client("pi-1", "not-it", port);
    assert!(next_packet(&mut conn).is_err());
    let mut opts = MqttOptions::new("pi-2", "127.0.0.1", port);
    let password = drover_protocol::keys::mqtt_password(added.credential.as_bytes());
    opts.set_credentials("pi-1", password.clone());
    let (_c, mut conn) = MqttClient::new(opts, 10);
    match next_packet(&mut conn) {
        Ok(Packet::ConnAck(a)) => assert_ne!(a.code, ConnectReturnCode::Success),
        other => assert!(other.is_err(), "{other:?}"),
    }

    // The credential itself is no MQTT password: only the one derived from it.
    let (_c, mut conn) = device_client("pi-1", &added.credential, port);
    assert!(next_packet(&mut conn).is_err());
    let (client, mut conn) = device_client("pi-1", &password, port);
    assert!(matches!(next_packet(&mut conn), Ok(Packet::ConnAck(_))));
    client
        .subscribe(topics::desired(&name), QoS::AtLeastOnce)
        .unwrap();
    let Ok(Packet::Publish(p)) = next_packet(&mut conn) else {
        panic!("no retained desired state");
    };
    // Live (retain flag cleared) when the hub's publish raced the subscription.
    let seal = drover_protocol::keys::SealSecret::derive(added.credential.as_bytes());
    let desired = open_desired(&p.payload, &hub_key, &name, 0, &seal).unwrap();
    assert_eq!((desired.generation, desired.workloads.len()), (1, 0));

    let status = DeviceStatus {
        device: name.clone(),
        observed_generation: desired.generation,
        time_ms: crate::now_ms(),
        workloads: vec![],
        capacity: Default::default(),
    };
    let payload = seal_status(&status, added.credential.as_bytes()).unwrap();
    client
        .publish(topics::online(&name), QoS::AtLeastOnce, true, "online")
        .unwrap();
    client
        .publish(topics::status(&name), QoS::AtLeastOnce, false, payload)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = conn.recv_timeout(Duration::from_millis(100));
        let devices: Vec<DeviceView> = api.get("/v1/devices").unwrap();
        if devices[0].online && devices[0].in_sync {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status never arrived: {devices:?}"
        );
    }
}
