//! References to Secrets and ConfigMaps in a workload template, Kubernetes' way:
//! `env[].valueFrom.{secretKeyRef,configMapKeyRef}: {name, key}` and volumes
//! `{name, secret: {secretName, items}}` / `{name, configMap: {name, items}}` mounted with
//! the usual `mounts: [{volume, mountPath}]` (always read-only).
//!
//! Parsing only: the references come out unresolved (digest zero, no values). The hub
//! resolves them against its stored objects; an agent's local manifests cannot use them.
//! This module must never do IO.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ManifestError;
use crate::Name;
use crate::refs::{EnvRef, FileItem, FilesSource, RefKind, RefValue, ValueRef};

/// `valueFrom`: exactly one of the two.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ValueFromManifest {
    #[serde(default)]
    pub secret_key_ref: Option<KeyRefManifest>,
    #[serde(default)]
    pub config_map_key_ref: Option<KeyRefManifest>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyRefManifest {
    pub name: Name,
    pub key: String,
}

/// `volumes[].secret`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretVolumeManifest {
    pub secret_name: Name,
    #[serde(default)]
    pub items: Vec<KeyToPathManifest>,
}

/// `volumes[].configMap`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigMapVolumeManifest {
    pub name: Name,
    #[serde(default)]
    pub items: Vec<KeyToPathManifest>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyToPathManifest {
    pub key: String,
    pub path: String,
}

/// Where a template references an object (and which key, for env and `items`), for the
/// hub's "not found" errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefSite {
    pub kind: RefKind,
    pub object: Name,
    pub key: Option<String>,
    pub line: u64,
    pub column: u64,
}

impl RefSite {
    fn at<T>(kind: RefKind, object: &Name, key: Option<&str>, node: &Spanned<T>) -> RefSite {
        RefSite {
            kind,
            object: object.clone(),
            key: key.map(str::to_owned),
            line: node.referenced.line(),
            column: node.referenced.column(),
        }
    }
}

/// An unresolved reference to `kind/object`.
fn unresolved(kind: RefKind, object: &Name) -> ValueRef {
    ValueRef {
        kind,
        object: object.clone(),
        digest: [0; 32],
    }
}

/// The env variable `name` taken from `from`, located at `node` for errors.
pub(super) fn env_ref(
    file: &str,
    name: &str,
    from: &Spanned<ValueFromManifest>,
) -> Result<(EnvRef, RefSite), ManifestError> {
    let (kind, r) = match (&from.value.secret_key_ref, &from.value.config_map_key_ref) {
        (Some(r), None) => (RefKind::Secret, r),
        (None, Some(r)) => (RefKind::ConfigMap, r),
        _ => {
            let msg = "valueFrom needs exactly one of secretKeyRef or configMapKeyRef";
            return Err(ManifestError::at(file, from, msg));
        }
    };
    check_key(file, from, &r.key)?;
    let site = RefSite::at(kind, &r.name, Some(&r.key), from);
    let env = EnvRef {
        name: name.to_owned(),
        from: unresolved(kind, &r.name),
        key: r.key.clone(),
        value: RefValue::default(),
    };
    Ok((env, site))
}

/// The files of a `secret` or `configMap` volume. Without `items`, the hub fills in every
/// key of the object.
pub(super) fn files_volume<T>(
    file: &str,
    node: &Spanned<T>,
    secret: Option<&SecretVolumeManifest>,
    config_map: Option<&ConfigMapVolumeManifest>,
) -> Result<(FilesSource, Vec<RefSite>), ManifestError> {
    let (kind, object, items) = match (secret, config_map) {
        (Some(s), None) => (RefKind::Secret, &s.secret_name, &s.items),
        (None, Some(c)) => (RefKind::ConfigMap, &c.name, &c.items),
        _ => {
            let msg = "a volume takes at most one of secret or configMap";
            return Err(ManifestError::at(file, node, msg));
        }
    };
    let mut sites = vec![RefSite::at(kind, object, None, node)];
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        check_key(file, node, &i.key)?;
        check_file_path(file, node, &i.path)?;
        sites.push(RefSite::at(kind, object, Some(&i.key), node));
        out.push(FileItem {
            key: i.key.clone(),
            path: i.path.clone(),
            value: RefValue::default(),
        });
    }
    let source = FilesSource {
        from: unresolved(kind, object),
        items: out,
    };
    Ok((source, sites))
}

/// Kubernetes' rule for Secret and ConfigMap keys: `[-._a-zA-Z0-9]+`, at most 253.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

fn check_key<T>(file: &str, node: &Spanned<T>, key: &str) -> Result<(), ManifestError> {
    if is_valid_key(key) {
        return Ok(());
    }
    let msg = format!("key must be letters, digits, '-', '_' or '.', got {key:?}");
    Err(ManifestError::at(file, node, msg))
}

/// `items[].path`: relative, no `..`, no empty components.
fn check_file_path<T>(file: &str, node: &Spanned<T>, path: &str) -> Result<(), ManifestError> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        return Ok(());
    }
    let msg = format!("items path must be relative without '..', got {path:?}");
    Err(ManifestError::at(file, node, msg))
}

#[cfg(test)]
mod tests {
    use super::super::{WorkloadTemplateSpec, yaml_options};
    use crate::{MountSource, Name, RefKind};

    fn spec(text: &str) -> Result<crate::WorkloadSpec, String> {
        let t: WorkloadTemplateSpec =
            serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| e.to_string())?;
        t.to_spec("t.yaml", Name::new("w").unwrap())
            .map_err(|e| e.to_string())
    }

    const BASE: &str = "volumes:
  - {name: s, secret: {secretName: db, items: [{key: tls.crt, path: certs/tls.crt}]}}
  - {name: c, configMap: {name: app}}
  - {name: data}
containers:
  - name: main
    image: x
    env:
      - {name: A, value: a}
      - {name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}
      - {name: LEVEL, valueFrom: {configMapKeyRef: {name: app, key: level}}}
    mounts:
      - {volume: s, mountPath: /s, readOnly: false}
      - {volume: c, mountPath: /c}
      - {volume: data, mountPath: /d}
";

    #[test]
    fn references_parse_into_unresolved_refs() {
        let w = spec(BASE).unwrap();
        assert_eq!(
            w.volumes,
            [Name::new("data").unwrap()],
            "file volumes are no named volumes"
        );
        let c = &w.containers[0];
        assert_eq!(c.env.len(), 1);
        let refs: Vec<_> = c
            .env_refs
            .iter()
            .map(|e| (e.name.as_str(), e.from.kind, e.key.as_str()))
            .collect();
        assert_eq!(
            refs,
            [
                ("PW", RefKind::Secret, "pw"),
                ("LEVEL", RefKind::ConfigMap, "level")
            ]
        );
        let MountSource::Files(f) = &c.mounts[0].source else {
            panic!("files")
        };
        assert_eq!((f.from.kind, f.from.digest), (RefKind::Secret, [0; 32]));
        assert_eq!(
            (f.items[0].key.as_str(), f.items[0].path.as_str()),
            ("tls.crt", "certs/tls.crt")
        );
        assert!(
            c.mounts[0].read_only && c.mounts[1].read_only,
            "always read-only"
        );
        assert!(matches!(&c.mounts[1].source, MountSource::Files(f) if f.items.is_empty()));
        assert!(!c.mounts[2].read_only);
    }

    #[test]
    fn mistakes_are_located() {
        let both = BASE.replace(
            "{name: A, value: a}",
            "{name: A, value: a, valueFrom: {secretKeyRef: {name: db, key: pw}}}",
        );
        assert!(
            spec(&both)
                .unwrap_err()
                .starts_with("t.yaml:9:40: env takes value or valueFrom")
        );
        let neither = BASE.replace("{secretKeyRef: {name: db, key: pw}}", "{}");
        let e = spec(&neither).unwrap_err();
        assert!(
            e.starts_with("t.yaml:10:") && e.contains("valueFrom needs exactly one"),
            "{e}"
        );
        let key = BASE.replace("key: pw}", "key: \"a/b\"}");
        assert!(
            spec(&key)
                .unwrap_err()
                .contains("key must be letters, digits")
        );
        let path = BASE.replace("path: certs/tls.crt", "path: ../x");
        let e = spec(&path).unwrap_err();
        assert!(
            e.starts_with("t.yaml:2:") && e.contains("items path must be relative"),
            "{e}"
        );
        let two = BASE.replace(
            "{name: c, configMap:",
            "{name: c, secret: {secretName: x}, configMap:",
        );
        assert!(
            spec(&two)
                .unwrap_err()
                .contains("at most one of secret or configMap")
        );
    }
}
