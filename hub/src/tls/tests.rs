use super::*;

#[test]
fn names_cover_the_advertised_hosts_the_machine_and_loopback() {
    let text = "[api]\nadvertise = \"https://hub.example:7443/\"\nlisten = \"127.0.0.1:7780\"\n\
                tls_listen = \"10.1.2.3:7443\"\n[broker]\nadvertise = \"mqtts://[fd00::1]:8883\"\n";
    let c = HubConfig::parse("h", text).unwrap();
    let names = cert_names(&c, "Pi-Hub");
    assert_eq!(
        names,
        [
            "10.1.2.3",
            "127.0.0.1",
            "::1",
            "fd00::1",
            "hub.example",
            "localhost",
            "pi-hub"
        ]
    );
    // Unspecified listen addresses add nothing.
    let names = cert_names(&HubConfig::default(), "h");
    assert_eq!(names, ["127.0.0.1", "::1", "h", "localhost"]);
}

#[test]
fn advertised_hosts_lose_scheme_port_and_path() {
    assert_eq!(advertised_host("hub.lan:7780").as_deref(), Some("hub.lan"));
    assert_eq!(advertised_host("hub.lan").as_deref(), Some("hub.lan"));
    assert_eq!(
        advertised_host("http://10.0.0.1:80/x").as_deref(),
        Some("10.0.0.1")
    );
    assert_eq!(advertised_host("[::1]:1883").as_deref(), Some("::1"));
    assert_eq!(advertised_host("::1").as_deref(), Some("::1"));
    assert_eq!(advertised_host(""), None);
}

#[test]
fn loopback_targets_replace_unspecified_addresses() {
    let t = |s: &str| loopback_target(s.parse().unwrap()).to_string();
    assert_eq!(t("0.0.0.0:1883"), "127.0.0.1:1883");
    assert_eq!(t("[::]:1883"), "[::1]:1883");
    assert_eq!(t("127.0.0.1:1"), "127.0.0.1:1");
}

#[test]
fn the_mosquitto_block_points_at_the_fleet_files() {
    let text = mosquitto_listener(Path::new("/var/lib/drover-hub/tls"), 8883);
    assert!(text.contains("\nlistener 8883\n"), "{text}");
    assert!(
        text.contains("cafile /var/lib/drover-hub/tls/ca.pem\n"),
        "{text}"
    );
    assert!(
        text.contains("certfile /var/lib/drover-hub/tls/server.pem\n"),
        "{text}"
    );
    assert!(
        text.contains("keyfile /var/lib/drover-hub/tls/server.key\n"),
        "{text}"
    );
}

#[test]
fn configs_build_with_ring_and_pin_only_the_fleet_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let m = ca::load_or_create(tmp.path(), &["localhost".to_owned()]).unwrap();
    server_config(&m).unwrap();
    client_config(&m.ca_pem).unwrap();
    assert!(client_config("not pem").is_err());
}
