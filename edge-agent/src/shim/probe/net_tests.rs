//! Network probes against real sockets on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollTimeout, poll};

use super::*;

/// Runs `check` as the shim's loop would, for at most 5 s.
fn drive(mut check: NetCheck) -> Outcome {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < end, "the check never ended");
        let mut fds = [PollFd::new(check.fd(), check.interest())];
        poll(&mut fds, PollTimeout::from(100u16)).expect("poll");
        if fds[0].revents().is_some_and(|r| !r.is_empty())
            && let Step::Done(outcome) = check.advance()
        {
            return outcome;
        }
    }
}

fn http(port: u16, headers: &[(&str, &str)]) -> ProbeAction {
    ProbeAction::HttpGet {
        path: "healthz".into(),
        port,
        scheme: HttpScheme::Http,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// A server answering one request with `answer`; returns the port and the request seen.
fn serve_once(answer: &'static [u8]) -> (u16, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
            if !req.starts_with(b"GET") {
                break; // not HTTP (a TLS hello): answer at once
            }
        }
        s.write_all(answer).expect("write");
        String::from_utf8_lossy(&req).into_owned()
    });
    (port, t)
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn tcp_succeeds_when_accepted_and_fails_when_refused() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let ok = NetCheck::start(&ProbeAction::TcpSocket { port }).expect("started");
    assert_eq!(drive(ok), Outcome::Success);
    let port = closed_port();
    let refused = match NetCheck::start(&ProbeAction::TcpSocket { port }) {
        Ok(c) => drive(c),
        Err(o) => o,
    };
    assert_eq!(refused, Outcome::Failure("Connection refused".into()));
}

#[test]
fn http_sends_host_and_headers_and_judges_the_status() {
    let (port, seen) = serve_once(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    let check = NetCheck::start(&http(port, &[("X-Probe", "yes")])).expect("started");
    assert_eq!(drive(check), Outcome::Success);
    let req = seen.join().expect("server");
    assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
    assert!(
        req.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
        "{req}"
    );
    assert!(req.contains("X-Probe: yes\r\n"), "{req}");

    let (port, _) = serve_once(b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n");
    let check = NetCheck::start(&http(port, &[])).expect("started");
    assert_eq!(drive(check), Outcome::Success, "3xx counts as success");

    let (port, _) = serve_once(b"HTTP/1.1 500 Internal Server Error\r\n\r\nboom");
    let check = NetCheck::start(&http(port, &[("Host", "app")])).expect("started");
    assert_eq!(drive(check), Outcome::Failure("HTTP 500".into()));
}

#[test]
fn a_manifest_host_header_replaces_ours() {
    let r = String::from_utf8(request("/", 80, &[("host".into(), "app".into())])).unwrap();
    assert!(!r.contains("127.0.0.1"), "{r}");
    assert!(r.contains("host: app\r\n"), "{r}");
}

#[test]
fn garbage_or_silence_is_a_failure() {
    let (port, _) = serve_once(b"SSH-2.0-OpenSSH\r\n");
    let check = NetCheck::start(&http(port, &[])).expect("started");
    assert!(matches!(drive(check), Outcome::Failure(m) if m.starts_with("not an HTTP response")));
    let (port, _) = serve_once(b"");
    let check = NetCheck::start(&http(port, &[])).expect("started");
    assert_eq!(
        drive(check),
        Outcome::Failure("connection closed without a response".into())
    );
}

#[test]
fn https_fails_cleanly_against_a_plain_http_server() {
    let (port, _) = serve_once(b"HTTP/1.1 200 OK\r\n\r\n");
    let action = ProbeAction::HttpGet {
        path: "/".into(),
        port,
        scheme: HttpScheme::Https,
        headers: vec![],
    };
    let check = NetCheck::start(&action).expect("started");
    assert!(matches!(drive(check), Outcome::Failure(m) if m.starts_with("TLS")));
}

/// `openssl s_server -www` with a fresh self-signed certificate (which a probe accepts);
/// the folder holding key and certificate lives as long as the server.
struct TlsServer(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tls_server(port: u16) -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-subj", "/CN=probe", "-days", "1", "-keyout"])
        .args([&key, Path::new("-out"), &cert])
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(made.status.success(), "{made:?}");
    let child = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port.to_string(),
            "-cert",
        ])
        .args([&cert, Path::new("-key"), &key])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let server = TlsServer(child, dir);
    let end = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "s_server never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

#[test]
fn https_accepts_a_self_signed_certificate_as_kubernetes_does() {
    let port = closed_port();
    let _server = tls_server(port);
    let action = ProbeAction::HttpGet {
        path: "/".into(),
        port,
        scheme: HttpScheme::Https,
        headers: vec![],
    };
    let check = NetCheck::start(&action).expect("started");
    assert_eq!(drive(check), Outcome::Success);
}
