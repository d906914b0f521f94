//! Resolving a workload's Secret and ConfigMap references, in two steps:
//! [`digest_refs`] at apply puts a keyed digest of what each reference takes into the
//! template (stored, compared, part of the revision: a changed value is a changed spec),
//! and [`fill_values`] puts the values into a copy of a desired state just before it is
//! sealed to its device (never stored in clear, never logged).
//!
//! Pure: no IO, no clock. Errors name objects and keys, never values.

use std::collections::BTreeMap;

use drover_protocol::{FileItem, MountSource, Name, RefKind, RefValue, WorkloadSpec};

use crate::fleet::ConfigObject;

/// The hub's Secrets and ConfigMaps, by kind and name.
pub type Objects = BTreeMap<(RefKind, Name), ConfigObject>;

/// A reference to something that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("{} {:?} not found", .kind.as_str(), .object.as_str())]
    Object { kind: RefKind, object: Name },
    #[error("key {key:?} not found in {} {:?}", .kind.as_str(), .object.as_str())]
    Key {
        kind: RefKind,
        object: Name,
        key: String,
    },
    /// An env value must be text: a NUL byte or invalid UTF-8 cannot reach a process's
    /// environment (the container would never start). Such a key can be mounted as a file.
    #[error(
        "key {key:?} of {} {:?} is binary (not UTF-8 text without NUL bytes): an env value          must be text; mount it as a file instead",
        .kind.as_str(), .object.as_str()
    )]
    NotText {
        kind: RefKind,
        object: Name,
        key: String,
    },
}

impl Missing {
    pub fn kind(&self) -> RefKind {
        match self {
            Missing::Object { kind, .. }
            | Missing::Key { kind, .. }
            | Missing::NotText { kind, .. } => *kind,
        }
    }

    pub fn object(&self) -> &Name {
        match self {
            Missing::Object { object, .. }
            | Missing::Key { object, .. }
            | Missing::NotText { object, .. } => object,
        }
    }

    pub fn key(&self) -> Option<&str> {
        match self {
            Missing::Object { .. } => None,
            Missing::Key { key, .. } | Missing::NotText { key, .. } => Some(key),
        }
    }
}

fn lookup<'a>(
    objects: &'a Objects,
    kind: RefKind,
    name: &Name,
) -> Result<&'a ConfigObject, Missing> {
    objects.get(&(kind, name.clone())).ok_or(Missing::Object {
        kind,
        object: name.clone(),
    })
}

fn value<'a>(o: &'a ConfigObject, key: &str) -> Result<&'a RefValue, Missing> {
    o.data.get(key).ok_or_else(|| Missing::Key {
        kind: o.kind,
        object: o.name.clone(),
        key: key.to_owned(),
    })
}

/// The `(key, path)` pairs a files source takes: its `items`, or every key when none.
fn file_keys(items: &[FileItem], o: &ConfigObject) -> Vec<(String, String)> {
    if items.is_empty() {
        return o.data.keys().map(|k| (k.clone(), k.clone())).collect();
    }
    items
        .iter()
        .map(|i| (i.key.clone(), i.path.clone()))
        .collect()
}

/// Sets the digest of every reference of `spec` (not of its fallback) from `objects`.
/// `digest` is the hub's keyed hash of a list of byte strings.
pub fn digest_refs(
    spec: &mut WorkloadSpec,
    objects: &Objects,
    digest: &dyn Fn(&[&[u8]]) -> [u8; 32],
) -> Result<(), Missing> {
    for c in &mut spec.containers {
        for e in &mut c.env_refs {
            let o = lookup(objects, e.from.kind, &e.from.object)?;
            let v = value(o, &e.key)?;
            let text = std::str::from_utf8(v.as_bytes()).is_ok_and(|t| !t.contains('\0'));
            if !text {
                return Err(Missing::NotText {
                    kind: o.kind,
                    object: o.name.clone(),
                    key: e.key.clone(),
                });
            }
            let kind = e.from.kind.as_str().as_bytes();
            e.from.digest = digest(&[
                kind,
                o.name.as_str().as_bytes(),
                e.key.as_bytes(),
                v.as_bytes(),
            ]);
        }
        for m in &mut c.mounts {
            let MountSource::Files(f) = &mut m.source else {
                continue;
            };
            let o = lookup(objects, f.from.kind, &f.from.object)?;
            let mut parts: Vec<&[u8]> =
                vec![f.from.kind.as_str().as_bytes(), o.name.as_str().as_bytes()];
            let keys = file_keys(&f.items, o);
            for (key, path) in &keys {
                parts.extend([key.as_bytes(), path.as_bytes(), value(o, key)?.as_bytes()]);
            }
            f.from.digest = digest(&parts);
        }
    }
    Ok(())
}

/// True when `spec` (or its fallback) references `kind/name`.
pub fn references(spec: &WorkloadSpec, kind: RefKind, name: &Name) -> bool {
    let direct = spec.containers.iter().any(|c| {
        let env = c.env_refs.iter().any(|e| e.from.kind == kind && &e.from.object == name);
        let files = c.mounts.iter().any(|m| {
            matches!(&m.source, MountSource::Files(f) if f.from.kind == kind && &f.from.object == name)
        });
        env || files
    });
    direct
        || spec
            .fallback
            .as_ref()
            .is_some_and(|f| references(f, kind, name))
}

/// Puts the current values into every reference of `spec` and its fallback (a rollback
/// runs the previous template with today's values, as in Kubernetes). A reference whose
/// object or key is gone keeps an empty value: `apply` refuses to remove what is used.
pub fn fill_values(spec: &mut WorkloadSpec, objects: &Objects) {
    for c in &mut spec.containers {
        for e in &mut c.env_refs {
            let o = lookup(objects, e.from.kind, &e.from.object).ok();
            if let Some(v) = o.and_then(|o| value(o, &e.key).ok()) {
                e.value = v.clone();
            }
        }
        for m in &mut c.mounts {
            let MountSource::Files(f) = &mut m.source else {
                continue;
            };
            let Ok(o) = lookup(objects, f.from.kind, &f.from.object) else {
                continue;
            };
            f.items = file_keys(&f.items, o)
                .into_iter()
                .map(|(key, path)| FileItem {
                    value: value(o, &key).cloned().unwrap_or_default(),
                    key,
                    path,
                })
                .collect();
        }
    }
    if let Some(f) = &mut spec.fallback {
        fill_values(f, objects);
    }
}
