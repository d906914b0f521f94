//! Values a workload takes from a `Secret` or `ConfigMap` (since envelope version 5): env
//! variables (`valueFrom`) and files (a `secret` / `configMap` volume).
//!
//! The hub keeps these references with only a keyed digest of the values they point at
//! (so a changed Secret changes the spec, and rollouts see it); it fills the values in
//! just before sealing a desired state to its device. Values live in [`RefValue`], which
//! keeps them out of everything but the sealed postcard bytes: its `Debug` prints
//! `<redacted>`, human-readable encodings (JSON: the agent's records, the hub's views and
//! store) write it empty, and equality ignores it (the digest beside it decides).
//!
//! This module must never print, log or compare a value.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Name;

/// Which kind of object a reference points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RefKind {
    Secret,
    ConfigMap,
}

impl RefKind {
    /// `Secret` or `ConfigMap`, as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Secret => "Secret",
            RefKind::ConfigMap => "ConfigMap",
        }
    }
}

/// The object a value comes from and a digest of what was taken from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueRef {
    pub kind: RefKind,
    pub object: Name,
    /// Keyed digest (the hub's) of the keys and values taken; zero until the hub resolved
    /// the reference. Equal digests mean equal values.
    pub digest: [u8; 32],
}

/// `env: - name: X, valueFrom: {secretKeyRef | configMapKeyRef: {name, key}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRef {
    pub name: String,
    pub from: ValueRef,
    pub key: String,
    /// Filled by the hub only inside a sealed desired state.
    pub value: RefValue,
}

/// A `secret` or `configMap` volume: the object's keys as files, mounted read-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesSource {
    pub from: ValueRef,
    pub items: Vec<FileItem>,
}

/// One file of a [`FilesSource`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileItem {
    pub key: String,
    /// Relative path below the mount point (`items[].path`, else the key).
    pub path: String,
    /// Filled by the hub only inside a sealed desired state.
    pub value: RefValue,
}

/// Bytes of a Secret or ConfigMap value. See the module documentation.
#[derive(Clone, Default)]
pub struct RefValue(pub Vec<u8>);

impl RefValue {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as text (env values); invalid UTF-8 is replaced.
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl std::fmt::Debug for RefValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The digest in the enclosing reference decides equality.
impl PartialEq for RefValue {
    fn eq(&self, _: &RefValue) -> bool {
        true
    }
}

impl Eq for RefValue {}

impl Serialize for RefValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str("")
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for RefValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            serde::de::IgnoredAny::deserialize(d)?;
            return Ok(RefValue::default());
        }
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = RefValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RefValue, E> {
                Ok(RefValue(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RefValue, E> {
                Ok(RefValue(v))
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: &str) -> FileItem {
        FileItem {
            key: "k".into(),
            path: "k".into(),
            value: RefValue(v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn values_travel_in_postcard_only() {
        let bytes = postcard::to_stdvec(&item("s3cret")).unwrap();
        let back: FileItem = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.value.as_bytes(), b"s3cret");
        let json = serde_json::to_string(&item("s3cret")).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        let back: FileItem = serde_json::from_str(&json).unwrap();
        assert!(back.value.as_bytes().is_empty());
    }

    #[test]
    fn debug_redacts_and_equality_ignores_values() {
        assert!(!format!("{:?}", item("s3cret")).contains("s3cret"));
        assert_eq!(item("a"), item("b"));
    }
}
