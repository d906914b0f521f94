use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::*;

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Does `server_pem` verify for `name` against `ca_pem` alone (rustls' webpki verifier)?
fn verifies(ca_pem: &str, server_pem: &str, name: &str) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
    let cert = CertificateDer::from_pem_slice(server_pem.as_bytes()).unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn first_start_creates_a_ca_and_a_server_certificate_it_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    let m = load_or_create(&dir, &names(&["hub.lan", "127.0.0.1", "localhost"])).unwrap();
    assert!(m.issued);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("server.key")), 0o600);
    assert_eq!(mode(&dir.join("ca.pem")), 0o644);
    assert!(m.ca_pem.contains("BEGIN CERTIFICATE"));
    assert!(!m.ca_pem.contains("PRIVATE KEY"));
    verifies(&m.ca_pem, &m.server_pem, "hub.lan").unwrap();
    verifies(&m.ca_pem, &m.server_pem, "127.0.0.1").unwrap();
    let e = verifies(&m.ca_pem, &m.server_pem, "other.lan").unwrap_err();
    assert!(e.contains("not valid for name"), "{e}");
}

#[test]
fn same_names_reuse_everything_and_new_names_reissue_only_the_server_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    let first = load_or_create(&dir, &names(&["b.lan", "a.lan"])).unwrap();
    let again = load_or_create(&dir, &names(&["a.lan", "b.lan", "A.lan", ""])).unwrap();
    assert!(!again.issued);
    assert_eq!(again.server_pem, first.server_pem);
    assert_eq!(again.server_key_pem, first.server_key_pem);
    let ca_key = fs::read_to_string(dir.join("ca.key")).unwrap();
    let moved = load_or_create(&dir, &names(&["a.lan", "c.lan"])).unwrap();
    assert!(moved.issued);
    assert_ne!(moved.server_pem, first.server_pem);
    assert_eq!(moved.ca_pem, first.ca_pem, "the CA is never replaced");
    assert_eq!(fs::read_to_string(dir.join("ca.key")).unwrap(), ca_key);
    // The CA loaded from disk signs like the one just created.
    verifies(&first.ca_pem, &moved.server_pem, "c.lan").unwrap();
    assert!(verifies(&first.ca_pem, &moved.server_pem, "b.lan").is_err());
}

#[test]
fn another_ca_does_not_vouch_for_this_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let a = load_or_create(&tmp.path().join("a"), &names(&["hub.lan"])).unwrap();
    let b = load_or_create(&tmp.path().join("b"), &names(&["hub.lan"])).unwrap();
    assert_ne!(a.ca_pem, b.ca_pem);
    let e = verifies(&a.ca_pem, &b.server_pem, "hub.lan").unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[test]
fn half_a_ca_is_an_error_not_a_new_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    load_or_create(&dir, &names(&["hub.lan"])).unwrap();
    fs::remove_file(dir.join("ca.key")).unwrap();
    let e = load_or_create(&dir, &names(&["hub.lan"])).unwrap_err();
    assert!(matches!(e, CaError::HalfCa { .. }), "{e}");
    assert!(!dir.join("ca.key").exists());
    assert!(e.to_string().contains("cut off every device"), "{e}");
}
