use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::*;
use crate::tls::{ca, client_config, server_config};

fn material(dir: &std::path::Path) -> ca::Material {
    ca::load_or_create(dir, &["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap()
}

async fn connect(
    ca_pem: &str,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    TlsConnector::from(client_config(ca_pem).unwrap())
        .connect(name, tcp)
        .await
}

#[tokio::test]
async fn a_stalled_client_does_not_block_the_next_and_only_the_fleet_ca_is_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let m = material(&tmp.path().join("a"));
    let other = material(&tmp.path().join("b"));
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (mut rx, local) = bind("test", addr, server_config(&m).unwrap())
        .await
        .unwrap();
    // Connected, never says anything.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(TcpStream::connect(local).await.unwrap());
    }
    let t0 = std::time::Instant::now();
    let client = tokio::time::timeout(Duration::from_secs(5), connect(&m.ca_pem, local))
        .await
        .expect("a handshake while others stall")
        .unwrap();
    assert!(t0.elapsed() < HANDSHAKE_TIMEOUT);
    let (_, peer) = rx.recv().await.unwrap();
    assert_eq!(peer, client.get_ref().0.local_addr().unwrap());
    // A client that pins another CA refuses this server.
    let e = connect(&other.ca_pem, local).await.unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
}

#[tokio::test]
async fn mqtt_over_tls_is_spliced_to_the_plain_listener_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let m = material(tmp.path());
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
    });
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (rx, local) = bind("test", addr, server_config(&m).unwrap())
        .await
        .unwrap();
    tokio::spawn(splice_to(rx, target, Default::default()));
    let mut c = connect(&m.ca_pem, local).await.unwrap();
    c.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"ping");
}

#[test]
fn handshakes_are_counted_per_peer_address() {
    let mut p = PerPeer::default();
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    for _ in 0..MAX_HANDSHAKES_PER_PEER {
        assert!(p.start(a));
    }
    assert!(!p.start(a));
    assert!(!p.start(mapped), "an IPv4-mapped address is the same peer");
    assert!(p.start(b));
    p.end(a);
    assert!(p.start(mapped));
    for _ in 0..MAX_HANDSHAKES_PER_PEER {
        p.end(a);
    }
    p.end(b);
    assert_eq!(p.peers(), 0, "no entry is left behind");
}

/// One host holding more idle connections than the listener has handshake slots cannot
/// lock out another host: its connections beyond its own share are closed at once.
#[tokio::test]
async fn one_flooding_address_does_not_lock_out_another() {
    let tmp = tempfile::tempdir().unwrap();
    let m = material(&tmp.path().join("a"));
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (mut rx, local) = bind("test", addr, server_config(&m).unwrap())
        .await
        .unwrap();
    let mut flood = Vec::new();
    for _ in 0..MAX_HANDSHAKES + 20 {
        flood.push(TcpStream::connect(local).await.unwrap());
    }
    // The last ones were closed by the hub: a read ends (EOF or reset) at once.
    let mut last = flood.pop().unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), last.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "an excess connection stayed open: {read:?}"
    );
    // Another address (127.0.0.2 is loopback too) still gets its handshake.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = sock.connect(local).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let t0 = std::time::Instant::now();
    let client = tokio::time::timeout(
        Duration::from_secs(5),
        TlsConnector::from(client_config(&m.ca_pem).unwrap()).connect(name, tcp),
    )
    .await
    .expect("a handshake from another address while one floods")
    .unwrap();
    assert!(t0.elapsed() < HANDSHAKE_TIMEOUT);
    let (_, peer) = rx.recv().await.unwrap();
    assert_eq!(peer, client.get_ref().0.local_addr().unwrap());
}
