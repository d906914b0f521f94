//! `kind: Secret` and `kind: ConfigMap` fleet objects, as Kubernetes writes them: a Secret
//! has `data` (base64) and/or `stringData` (text, wins over `data`), optionally
//! `type: Opaque`; a ConfigMap has `data` (text). At most 1 MiB of values per object.
//!
//! This module must never do IO, and never put a value into an error or a log line:
//! errors name the key, never what it holds.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use drover_protocol::manifest::{ManifestError, is_valid_key};
use drover_protocol::{Name, RefKind, RefValue};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::source::{Position, Positions};

/// Kubernetes' limit: 1 MiB of values per Secret or ConfigMap.
pub const MAX_OBJECT_BYTES: usize = 1 << 20;

/// One Secret or ConfigMap with its values (kept out of `Debug` and JSON by `RefValue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigObject {
    pub kind: RefKind,
    pub name: Name,
    /// A Secret's `type` (only `Opaque` so far).
    pub secret_type: Option<String>,
    pub data: BTreeMap<String, RefValue>,
    /// Where the name was written (not stored or compared).
    #[serde(skip)]
    pub positions: Positions,
}

impl ConfigObject {
    /// Same kind, name, type, keys and values (`==` ignores values).
    pub fn same_as(&self, other: &ConfigObject) -> bool {
        self == other
            && self.secret_type == other.secret_type
            && self.data.len() == other.data.len()
            && self
                .data
                .iter()
                .zip(&other.data)
                .all(|((ka, va), (kb, vb))| ka == kb && va.as_bytes() == vb.as_bytes())
    }

    /// Total bytes of the values.
    pub fn size(&self) -> usize {
        self.data.values().map(|v| v.as_bytes().len()).sum()
    }

    /// `message` located at this object's `metadata.name`.
    pub fn at(&self, message: impl Into<String>) -> ManifestError {
        let at = self.positions.name.as_ref();
        Positions::error_at(at, self.kind.as_str(), &self.name, message)
    }
}

/// The parts of a document only Secrets and ConfigMaps have.
#[derive(Default)]
pub struct DataManifest<'a> {
    pub data: Option<&'a Spanned<BTreeMap<String, Spanned<String>>>>,
    pub string_data: Option<&'a Spanned<BTreeMap<String, Spanned<String>>>>,
    pub secret_type: Option<&'a Spanned<String>>,
}

impl DataManifest<'_> {
    /// The first field present, for "a Deployment has no data"-style errors.
    pub fn any_position(&self, file: &str) -> Option<Position> {
        let data = self.data.map(|d| Position::of(file, d));
        let string = self.string_data.map(|d| Position::of(file, d));
        let ty = self.secret_type.map(|t| Position::of(file, t));
        data.or(string).or(ty)
    }
}

fn at<T>(file: &str, node: &Spanned<T>, message: impl Into<String>) -> ManifestError {
    ManifestError::at(file, node, message)
}

/// Checks and decodes a Secret or ConfigMap document.
pub fn config_object(
    file: &str,
    kind: RefKind,
    name: &Spanned<Name>,
    m: &DataManifest<'_>,
) -> Result<ConfigObject, ManifestError> {
    let mut data = BTreeMap::new();
    if let Some(d) = m.data {
        for (key, value) in &d.value {
            check_key(file, value, key)?;
            let bytes = match kind {
                RefKind::ConfigMap => value.value.as_bytes().to_vec(),
                RefKind::Secret => STANDARD.decode(value.value.trim()).map_err(|_| {
                    at(
                        file,
                        value,
                        format!("data.{key} is not valid base64 (stringData takes plain text)"),
                    )
                })?,
            };
            data.insert(key.clone(), RefValue(bytes));
        }
    }
    match (kind, m.string_data, m.secret_type) {
        (RefKind::ConfigMap, Some(s), _) => {
            return Err(at(
                file,
                s,
                "a ConfigMap has no stringData: its data is text already",
            ));
        }
        (RefKind::ConfigMap, None, Some(t)) => {
            return Err(at(file, t, "a ConfigMap has no type"));
        }
        (RefKind::Secret, _, Some(t)) if t.value != "Opaque" => {
            let msg = format!("Secret type {:?} is not supported; use Opaque", t.value);
            return Err(at(file, t, msg));
        }
        _ => {}
    }
    for (key, value) in m.string_data.iter().flat_map(|s| &s.value) {
        check_key(file, value, key)?;
        data.insert(key.clone(), RefValue(value.value.as_bytes().to_vec()));
    }
    let object = ConfigObject {
        kind,
        name: name.value.clone(),
        secret_type: m.secret_type.map(|t| t.value.clone()),
        data,
        positions: Positions {
            name: Some(Position::of(file, name)),
            ..Positions::default()
        },
    };
    if object.size() > MAX_OBJECT_BYTES {
        let msg = format!(
            "{} {:?} holds {} bytes of values; at most {MAX_OBJECT_BYTES} (1 MiB) are allowed",
            kind.as_str(),
            name.value.as_str(),
            object.size()
        );
        return Err(at(file, name, msg));
    }
    Ok(object)
}

fn check_key(file: &str, value: &Spanned<String>, key: &str) -> Result<(), ManifestError> {
    if is_valid_key(key) {
        return Ok(());
    }
    let msg = format!("key {key:?} must be letters, digits, '-', '_' or '.'");
    Err(at(file, value, msg))
}
