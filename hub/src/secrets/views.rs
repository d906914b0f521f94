//! What `get secrets|configmaps` and `describe secret|configmap` show: names, keys and
//! sizes. A Secret's values are never in a view (`<redacted>`), in any output format;
//! the views are built from store rows without opening a single sealed value.

use serde::{Deserialize, Serialize};

use super::at_rest::OVERHEAD_BYTES;
use crate::store::ConfigRow;

/// Shown in place of every Secret value.
pub const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigObjectView {
    /// `Secret` or `ConfigMap`.
    pub kind: String,
    pub name: String,
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
    pub keys: Vec<KeyView>,
    pub updated_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub key: String,
    /// Bytes of the value.
    pub size: u64,
    /// `<redacted>` for a Secret, the text for a ConfigMap.
    pub value: String,
}

impl ConfigObjectView {
    pub fn of(row: &ConfigRow) -> ConfigObjectView {
        let secret = row.kind == "Secret";
        let keys = row
            .data
            .iter()
            .map(|(k, v)| KeyView {
                key: k.clone(),
                size: if secret {
                    v.len().saturating_sub(OVERHEAD_BYTES) as u64
                } else {
                    v.len() as u64
                },
                value: if secret {
                    REDACTED.to_owned()
                } else {
                    String::from_utf8_lossy(v).into_owned()
                },
            })
            .collect();
        ConfigObjectView {
            kind: row.kind.clone(),
            name: row.name.clone(),
            secret_type: row.secret_type.clone(),
            keys,
            updated_ms: row.updated_ms,
        }
    }
}

/// `get secrets` / `get configmaps`.
pub fn table(views: &[ConfigObjectView]) -> String {
    let mut out = String::from("NAME                 TYPE       KEYS  BYTES\n");
    for v in views {
        let bytes: u64 = v.keys.iter().map(|k| k.size).sum();
        let ty = v.secret_type.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "{:<20} {:<10} {:>4}  {bytes}\n",
            v.name,
            ty,
            v.keys.len()
        ));
    }
    out
}

/// `describe secret NAME` / `describe configmap NAME`.
pub fn describe(v: &ConfigObjectView) -> String {
    let mut out = format!("Name:  {}\nKind:  {}\n", v.name, v.kind);
    if let Some(t) = &v.secret_type {
        out.push_str(&format!("Type:  {t}\n"));
    }
    out.push_str("Data:\n");
    for k in &v.keys {
        out.push_str(&format!("  {}: {} bytes  {}\n", k.key, k.size, k.value));
    }
    out
}
