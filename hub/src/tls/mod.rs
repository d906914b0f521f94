//! TLS for everything the hub serves beyond loopback: the fleet CA (`ca.rs`), the names
//! its server certificate covers, and the listeners that terminate TLS (`listener.rs`:
//! HTTPS for the API and registry, MQTT over TLS spliced to the embedded broker's
//! loopback listener).
//!
//! rustls with `ring` only. This module must never serve a plain connection on a TLS
//! listener, nor trust anything but the fleet CA when the hub is a TLS client.

pub mod ca;
pub mod listener;
pub mod sessions;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::HubConfig;

pub use ca::{CaError, Material};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("TLS setup: {0}")]
    Rustls(String),
    #[error("cannot listen on {addr} for {what} (TLS): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The crypto provider every TLS config of the hub uses: `ring`.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The fleet CA and server certificate for this config's names (`D/tls`), and the
/// rustls server config built from them.
pub fn setup(config: &HubConfig) -> Result<(Material, Arc<rustls::ServerConfig>), TlsError> {
    let names = cert_names(config, &crate::config::host_name());
    let dir = config.data_dir.join("tls");
    let material = ca::load_or_create(&dir, &names)?;
    if material.issued {
        tracing::info!(names = ?ca::normalise(&names), "issued the hub's TLS certificate");
    }
    let server = server_config(&material)?;
    Ok((material, server))
}

/// A rustls server config presenting the hub's certificate (and the CA, so that a
/// client holding only the CA sees the whole chain).
pub fn server_config(m: &Material) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut chain = certs(&m.server_pem)?;
    chain.extend(certs(&m.ca_pem)?);
    let key = PrivateKeyDer::from_pem_slice(m.server_key_pem.as_bytes())
        .map_err(|e| TlsError::Rustls(format!("server.key: {e}")))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A rustls client config trusting only the PEM certificates in `ca_pem` (the fleet CA).
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem)? {
        roots
            .add(c)
            .map_err(|e| TlsError::Rustls(format!("fleet CA: {e}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Rustls(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Rustls("no certificate in the PEM text".into()));
    }
    Ok(certs)
}

/// The names devices may reach the hub by: the advertised hosts, this machine's name,
/// `localhost`, 127.0.0.1, ::1, and the listen addresses that are not unspecified.
pub fn cert_names(config: &HubConfig, host_name: &str) -> Vec<String> {
    let mut names = vec![
        host_name.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for a in [&config.api.advertise, &config.broker.advertise] {
        if let Some(h) = advertised_host(a) {
            names.push(h);
        }
    }
    let listens = [
        Some(config.api.listen),
        config.api.tls_listen.0,
        Some(config.broker.listen),
        config.broker.tls_listen.0,
    ];
    for ip in listens.into_iter().flatten().map(|a| a.ip()) {
        if !ip.is_unspecified() {
            names.push(ip.to_string());
        }
    }
    ca::normalise(&names)
}

/// The host of an advertised address: `[scheme://]host[:port][/path]`, IPv6 brackets off.
pub fn advertised_host(a: &str) -> Option<String> {
    let rest = a.split_once("://").map_or(a, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or_default();
    let host = if let Some(inner) = hostport.strip_prefix('[') {
        inner.split(']').next().unwrap_or_default()
    } else if hostport.parse::<IpAddr>().is_ok() {
        hostport
    } else {
        hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// Where a loopback client reaches a listener bound to `listen` (an unspecified address
/// is reached on 127.0.0.1 / ::1).
pub fn loopback_target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], listen.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    }
}

/// A Mosquitto TLS listener block using the files in `tls_dir` (`D/tls`).
pub fn mosquitto_listener(tls_dir: &Path, port: u16) -> String {
    let f = |name: &str| tls_dir.join(name).display().to_string();
    format!(
        "# Drover: MQTT over TLS with the hub's fleet CA (drover-hub broker-config mosquitto-tls).\n\
         # Mosquitto must be able to read server.key (e.g. copy it, owned by mosquitto, 0600).\n\
         # Devices: broker = \"mqtts://HOST:{port}\" and the CA in [hub] ca / ca_file;\n\
         # the hub: [broker] url = \"mqtts://HOST:{port}\" (HOST among the certificate's names).\n\
         listener {port}\n\
         cafile {}\n\
         certfile {}\n\
         keyfile {}\n\
         tls_version tlsv1.2\n\
         require_certificate false\n",
        f("ca.pem"),
        f("server.pem"),
        f("server.key"),
    )
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
