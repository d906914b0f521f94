//! End-to-end: TLS between agents and hub (issue 13 part 1). A real hub with its TLS
//! listeners (MQTT over TLS spliced to the embedded broker, HTTPS for the registry), a
//! real agent configured from `device add` (the fleet CA pinned) that runs a `hub:` image
//! pulled over HTTPS; an agent pointed at a server whose certificate comes from another
//! CA (a second hub: same names, other fleet CA) never connects and says why; and a hub
//! asked for a plain listener beyond loopback refuses to start. Needs root (containers).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use drover_tests::agent::{TestAgent, last_error};
use drover_tests::hub::{TestHub, free_port};
use drover_tests::{bin, oci, require_root, wait_for};

const T: Duration = Duration::from_secs(60);

fn deployment(name: &str, role: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  \
         selector: {{matchLabels: {{role: {role}}}}}\n  template:\n    spec:\n      \
         stopGracePeriod: 1s\n      containers:\n        - name: main\n          \
         image: hub:busybox:1.0\n          command: [/bin/sh, -c, \"while true; do sleep 1; done\"]\n"
    )
}

fn import_busybox(hub: &TestHub) {
    let layout = hub.dir.path().join("busybox");
    oci::busybox_layout(&layout, "1.0").unwrap();
    let (code, _, err) = hub.cli(&["image", "import", &layout.display().to_string()]);
    assert_eq!(code, 0, "image import: {err}");
}

#[test]
fn an_agent_pinning_the_fleet_ca_runs_a_hub_image_over_tls_and_refuses_another_ca() {
    if !require_root(
        "an_agent_pinning_the_fleet_ca_runs_a_hub_image_over_tls_and_refuses_another_ca",
    ) {
        return;
    }
    let mut hub = TestHub::with_tls();
    hub.start();
    let (mqtts, https) = hub.tls_ports.unwrap();
    let tls_dir = hub.dir.path().join("data/tls");
    let mode = |f: &str| {
        std::fs::metadata(tls_dir.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!((mode("ca.key"), mode("server.key")), (0o600, 0o600));
    import_busybox(&hub);

    // Stalled clients (TCP open, no handshake) on both TLS ports must not block anyone.
    let _stalled: Vec<TcpStream> = [mqtts, https, mqtts, https]
        .iter()
        .map(|p| TcpStream::connect(("127.0.0.1", *p)).unwrap())
        .collect();

    let snippet = hub.device_add("tls-good", &["role=tls"]);
    assert!(
        snippet.contains(&format!("broker = \"mqtts://127.0.0.1:{mqtts}\"")),
        "{snippet}"
    );
    assert!(
        snippet.contains("BEGIN CERTIFICATE") && !snippet.contains("PRIVATE"),
        "{snippet}"
    );
    let mut good = TestAgent::new("tls-good");
    good.connect_to_hub(&snippet);
    assert!(
        std::fs::read_to_string(&good.config)
            .unwrap()
            .contains(&format!("registry = \"https://127.0.0.1:{https}\"")),
        "device add gives the HTTPS registry"
    );
    good.start();
    let t0 = Instant::now();
    assert_eq!(hub.apply("tls.yaml", &deployment("overtls", "tls")).0, 0);
    wait_for("the hub image running on the TLS device", T, || {
        good.running_pid("overtls", "main")
    });
    eprintln!("apply + pull over HTTPS + start: {:?}", t0.elapsed());
    wait_for("the TLS device online at the hub", T, || {
        let d = hub.devices();
        let online = d
            .as_array()?
            .iter()
            .any(|d| d["name"] == "tls-good" && d["online"] == true);
        online.then_some(())
    });
    assert!(
        good.logs().contains("connected to the hub broker"),
        "{}",
        good.logs()
    );

    // Another CA: a second hub (its own fleet CA, a certificate for the same names).
    let mut other = TestHub::with_tls();
    other.start();
    let (other_mqtts, other_https) = other.tls_ports.unwrap();
    let mitm = snippet
        .replace(&format!(":{mqtts}\""), &format!(":{other_mqtts}\""))
        .replace("device = \"tls-good\"", "device = \"tls-mitm\"");
    let mut victim = TestAgent::new("tls-mitm");
    victim.connect_to_hub(&mitm);
    let cfg = std::fs::read_to_string(&victim.config).unwrap();
    let cfg = cfg.replace(&format!(":{https}\""), &format!(":{other_https}\""));
    assert!(
        cfg.contains(&format!("mqtts://127.0.0.1:{other_mqtts}"))
            && cfg.contains(&format!(":{other_https}\"")),
        "{cfg}"
    );
    std::fs::write(&victim.config, cfg).unwrap();
    // A local manifest with a `hub:` image makes it try the impostor's registry too.
    victim.write_manifest(
        "local.yaml",
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata:\n  name: local\nspec:\n  \
         containers:\n    - name: main\n      image: hub:busybox:1.0\n      \
         command: [/bin/sh, -c, \"sleep 1000\"]\n",
    );
    import_busybox(&other);
    victim.start();
    let log = wait_for("the agent to refuse the impostor broker", T, || {
        let l = victim.logs();
        l.contains("cannot reach the hub broker").then_some(l)
    });
    assert!(
        log.contains("UnknownIssuer") || log.contains("certificate"),
        "the agent says the certificate is not trusted:\n{log}"
    );
    assert!(!log.contains("connected to the hub broker"), "{log}");
    let why = log
        .lines()
        .find(|l| l.contains("cannot reach the hub broker"));
    eprintln!("impostor broker: {}", why.unwrap_or_default());
    let ps = victim.wait_ps("the pull from the impostor registry to fail", T, |ps| {
        last_error(ps, "local").contains("certificate")
    });
    let err = last_error(&ps, "local");
    eprintln!("impostor registry: {err}");
    assert!(
        err.contains("UnknownIssuer") || err.contains("not trusted") || err.contains("certificate"),
        "{err}"
    );
    assert!(victim.running_pid("local", "main").is_none());
    // The impostor never saw an MQTT login: the handshake failed before any byte of MQTT.
    assert!(!other.logs().contains("tls-mitm"), "{}", other.logs());
    victim.stop();
    good.stop();
}

#[test]
fn a_plain_listener_beyond_loopback_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    let base = format!(
        "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:{}\"\ntls_listen = \"\"\n[broker]\n\
         tls_listen = \"\"\nlisten = \"0.0.0.0:{}\"\n",
        dir.path().join("data").display(),
        free_port(),
        free_port()
    );
    std::fs::write(&config, &base).unwrap();
    let out = Command::new(bin("drover-hub"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a plain 0.0.0.0 broker must not start: {err}"
    );
    assert!(
        err.contains("[broker] listen") && err.contains("allow_plain"),
        "{err}"
    );

    // The built-in defaults put the plain listeners on loopback and TLS on the network.
    let d = drover_hub::config::HubConfig::default();
    assert!(d.broker.listen.ip().is_loopback() && d.api.listen.ip().is_loopback());
    assert!(d.broker.tls_listen.0.is_some() && d.api.tls_listen.0.is_some());
}

#[test]
fn mosquitto_with_the_printed_tls_block_serves_hub_and_agent_with_the_fleet_ca() {
    let (plain, tls) = (free_port(), free_port());
    let mut hub = TestHub::with_external_broker(plain);
    let text = std::fs::read_to_string(&hub.config).unwrap();
    let url = format!("url = \"mqtts://127.0.0.1:{tls}\"");
    std::fs::write(
        &hub.config,
        text.replace(&format!("url = \"127.0.0.1:{plain}\""), &url),
    )
    .unwrap();
    let config = hub.config.display().to_string();
    let tls_port = tls.to_string();
    let (code, block, err) = hub.cli(&[
        "broker-config",
        "mosquitto-tls",
        "--config",
        &config,
        "--port",
        &tls_port,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(block.contains(&format!("\nlistener {tls}\n")), "{block}");
    let _mosquitto = drover_tests::hub::Mosquitto::start_with_settings(plain, &block);
    hub.start();
    wait_for("the hub connected to Mosquitto over TLS", T, || {
        hub.logs()
            .contains("connected to the MQTT broker")
            .then_some(())
    });
    let snippet = hub.device_add("mosq-tls", &["role=m"]);
    assert!(
        snippet.contains(&format!("broker = \"mqtts://127.0.0.1:{tls}\"")),
        "{snippet}"
    );
    assert!(snippet.contains("BEGIN CERTIFICATE"), "{snippet}");
    let mut a = TestAgent::new("mosq-tls");
    a.connect_to_hub(&snippet);
    a.start();
    wait_for("the agent online through Mosquitto over TLS", T, || {
        let d = hub.devices();
        let on = d
            .as_array()?
            .iter()
            .any(|d| d["name"] == "mosq-tls" && d["online"] == true);
        on.then_some(())
    });
    a.stop();
}
