//! A container's `securityContext` as written (Kubernetes' shape:
//! `{runAsUser, runAsGroup, readOnlyRootFilesystem, privileged, capabilities: {add, drop}}`),
//! checked here with every error at its node. Whether a device may run it is the policy's
//! business (`crate::security`), not the manifest's. No IO.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ManifestError;
use crate::security::{SecurityContext, capability_name};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityContextManifest {
    /// Kubernetes allows 0 (root); -1 and anything above 2^32-2 are refused.
    #[serde(default)]
    pub run_as_user: Option<Spanned<u32>>,
    #[serde(default)]
    pub run_as_group: Option<Spanned<u32>>,
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub capabilities: CapabilitiesManifest,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitiesManifest {
    #[serde(default)]
    pub add: Vec<Spanned<String>>,
    #[serde(default)]
    pub drop: Vec<Spanned<String>>,
}

impl SecurityContextManifest {
    pub fn to_spec(&self, file: &str) -> Result<SecurityContext, ManifestError> {
        for id in [&self.run_as_user, &self.run_as_group]
            .into_iter()
            .flatten()
        {
            if id.value == u32::MAX {
                return Err(ManifestError::at(file, id, "4294967295 is not a valid id"));
            }
        }
        Ok(SecurityContext {
            run_as_user: self.run_as_user.as_ref().map(|u| u.value),
            run_as_group: self.run_as_group.as_ref().map(|g| g.value),
            read_only_root_filesystem: self.read_only_root_filesystem,
            privileged: self.privileged,
            cap_add: names(file, &self.capabilities.add)?,
            cap_drop: names(file, &self.capabilities.drop)?,
        })
    }
}

fn names(file: &str, list: &[Spanned<String>]) -> Result<Vec<String>, ManifestError> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for node in list {
        let Some(name) = capability_name(&node.value) else {
            let msg = format!(
                "unknown capability {:?}: expected a Linux capability like NET_ADMIN or ALL",
                node.value
            );
            return Err(ManifestError::at(file, node, msg));
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}
