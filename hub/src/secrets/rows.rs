//! A Secret or ConfigMap to and from its store row: Secret values sealed with the
//! [`SecretBox`] (bound to `Secret/NAME/KEY`), ConfigMap values as they are.

use drover_protocol::{Name, RefKind, RefValue};

use super::{AtRestError, SecretBox};
use crate::fleet::ConfigObject;
use crate::store::ConfigRow;

fn what(kind: RefKind, name: &str, key: &str) -> String {
    format!("{}/{name}/{key}", kind.as_str())
}

pub fn to_row(o: &ConfigObject, b: &SecretBox, now_ms: u64) -> Result<ConfigRow, AtRestError> {
    let data = o
        .data
        .iter()
        .map(|(k, v)| {
            let stored = match o.kind {
                RefKind::Secret => b.seal(&what(o.kind, o.name.as_str(), k), v.as_bytes())?,
                RefKind::ConfigMap => v.as_bytes().to_vec(),
            };
            Ok((k.clone(), stored))
        })
        .collect::<Result<_, AtRestError>>()?;
    Ok(ConfigRow {
        kind: o.kind.as_str().to_owned(),
        name: o.name.to_string(),
        secret_type: o.secret_type.clone(),
        data,
        updated_ms: now_ms,
    })
}

/// `None` for a row of an unknown kind or with a bad name (nothing can reference it).
pub fn from_row(row: &ConfigRow, b: &SecretBox) -> Result<Option<ConfigObject>, AtRestError> {
    let kind = match row.kind.as_str() {
        "Secret" => RefKind::Secret,
        "ConfigMap" => RefKind::ConfigMap,
        _ => return Ok(None),
    };
    let Ok(name) = Name::new(row.name.clone()) else {
        return Ok(None);
    };
    let data = row
        .data
        .iter()
        .map(|(k, v)| {
            let plain = match kind {
                RefKind::Secret => b.open(&what(kind, &row.name, k), v)?,
                RefKind::ConfigMap => v.clone(),
            };
            Ok((k.clone(), RefValue(plain)))
        })
        .collect::<Result<_, AtRestError>>()?;
    Ok(Some(ConfigObject {
        kind,
        name,
        secret_type: row.secret_type.clone(),
        data,
        positions: Default::default(),
    }))
}
