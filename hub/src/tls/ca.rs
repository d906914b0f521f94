//! The fleet CA and the hub's server certificate, in `D/tls/`.
//!
//! At first start the hub creates a CA (`ca.pem`, `ca.key` 0600) that every agent pins,
//! and a server certificate (`server.pem`, `server.key` 0600) signed by it for the names
//! devices reach the hub by (`server.names`, one per line). The server certificate is
//! issued again when that set of names changes; the CA is never overwritten (agents pin
//! it: a new CA cuts every device off). Keys are ECDSA P-256 made by rcgen with `ring`.
//! This module must never print a private key or replace an existing `ca.key`/`ca.pem`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};

/// The CA's common name is this, then the first 8 bytes (hex) of the SHA-256 of its
/// public key: distinct per fleet (a verifier then reports another fleet's certificate as
/// of an unknown issuer), and the same whenever the key is loaded again.
pub const CA_NAME: &str = "Drover fleet CA";

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: expected a PEM {what} written by drover-hub: {reason}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("cannot make a certificate for {names:?}: {reason}")]
    Issue { names: Vec<String>, reason: String },
    #[error(
        "{dir}: ca.pem and ca.key must both exist or both be absent (one is missing); \
         restore the missing file from a backup — a new CA would cut off every device"
    )]
    HalfCa { dir: PathBuf },
}

/// What the hub serves with and what devices pin: PEM texts.
#[derive(Clone, Debug)]
pub struct Material {
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    /// True when the server certificate was (re)issued by this call.
    pub issued: bool,
}

/// Loads the CA from `dir` (creating it the first time) and a server certificate for
/// exactly `names` (issuing it when absent or made for other names).
pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Material, CaError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| io(dir, source))?;
    let (ca_pem, ca_key) = load_or_create_ca(dir)?;
    let names = normalise(names);
    let wanted = names.join("\n") + "\n";
    let names_path = dir.join("server.names");
    let current = fs::read_to_string(&names_path).ok();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    if current.as_deref() == Some(wanted.as_str()) && cert.exists() && key.exists() {
        return Ok(Material {
            ca_pem,
            server_pem: read(&cert)?,
            server_key_pem: read(&key)?,
            issued: false,
        });
    }
    let (server_pem, server_key_pem) = issue_server(&ca_key, &names)?;
    write_private(&key, &server_key_pem)?;
    write_public(&cert, &server_pem)?;
    write_public(&names_path, &wanted)?;
    Ok(Material {
        ca_pem,
        server_pem,
        server_key_pem,
        issued: true,
    })
}

/// Sorted, without duplicates or empty names.
pub fn normalise(names: &[String]) -> Vec<String> {
    let mut v: Vec<String> = names
        .iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn load_or_create_ca(dir: &Path) -> Result<(String, KeyPair), CaError> {
    let (pem_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    match (pem_path.exists(), key_path.exists()) {
        (true, true) => {
            let key_pem = read(&key_path)?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Parse {
                path: key_path.clone(),
                what: "private key",
                reason: e.to_string(),
            })?;
            Ok((read(&pem_path)?, key))
        }
        (false, false) => {
            let key = KeyPair::generate().map_err(|e| issue_error(&[], e))?;
            let cert = ca_params(&key)
                .self_signed(&key)
                .map_err(|e| issue_error(&[], e))?;
            write_private(&key_path, &key.serialize_pem())?;
            write_public(&pem_path, &cert.pem())?;
            tracing::info!(path = %pem_path.display(), "created the fleet CA");
            Ok((cert.pem(), key))
        }
        _ => Err(CaError::HalfCa {
            dir: dir.to_owned(),
        }),
    }
}

/// The CA's parameters: the same for the same key, so that a loaded key signs as the CA.
fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let id = Sha256::digest(key.der_bytes());
    dn.push(
        DnType::CommonName,
        format!("{CA_NAME} {}", hex::encode(&id[..8])),
    );
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn issue_server(ca_key: &KeyPair, names: &[String]) -> Result<(String, String), CaError> {
    let mut p = CertificateParams::new(names.to_vec()).map_err(|e| issue_error(names, e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "drover-hub");
    p.distinguished_name = dn;
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(|e| issue_error(names, e))?;
    let issuer = Issuer::new(ca_params(ca_key), ca_key);
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(|e| issue_error(names, e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issue_error(names: &[String], e: rcgen::Error) -> CaError {
    CaError::Issue {
        names: names.to_vec(),
        reason: e.to_string(),
    }
}

fn io(path: &Path, source: std::io::Error) -> CaError {
    CaError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|e| io(path, e))
}

/// Written to a temporary name with `mode`, synced, then renamed over `path`.
fn write_mode(path: &Path, text: &str, mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    // A temporary file left by an earlier crash keeps its old mode: set it again.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io(&tmp, e))?;
    f.write_all(text.as_bytes()).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))
}

fn write_private(path: &Path, text: &str) -> Result<(), CaError> {
    write_mode(path, text, 0o600)
}

fn write_public(path: &Path, text: &str) -> Result<(), CaError> {
    write_mode(path, text, 0o644)
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
