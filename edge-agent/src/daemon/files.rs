//! Writing a container's Secret and ConfigMap files before each start, and removing them
//! with the workload (layout and the tmpfs rule: `runtime::files`).
//!
//! Values come only from the desired state in memory (decrypted from the sealed state the
//! hub sent): the agent's records hold digests, so [`Agent::spec_with_values`] takes the
//! desired workload when it is the recorded one. This module must never log a value.

use std::path::PathBuf;

use drover_protocol::{ContainerSpec, MountSource, Name, RefKind, WorkloadSpec};

use super::Agent;
use super::actions::StartError;
use crate::host::HostError;
use crate::runtime::files::{config_dir, is_safe_relative, layout, secrets_dir};
use crate::state::container_id;

impl Agent {
    /// The recorded spec of `wl`, with the values of its Secret/ConfigMap references
    /// (from the desired state when that is the same spec, digests and all).
    pub(super) fn spec_with_values(&self, wl: &Name) -> Option<WorkloadSpec> {
        let recorded = &self.records.get(wl)?.spec;
        let desired = self
            .sources
            .desired
            .workloads
            .iter()
            .find(|w| &w.name == wl);
        Some(match desired {
            Some(d) if d == recorded => d.clone(),
            _ => recorded.clone(),
        })
    }

    /// Writes the files of every `Files` mount of `c` afresh; returns each mount target
    /// with the host folder to bind.
    pub(super) fn write_ref_files(
        &self,
        spec: &WorkloadSpec,
        c: &ContainerSpec,
    ) -> Result<Vec<(String, PathBuf)>, StartError> {
        let host = &self.ports.host;
        let secrets = self.secrets_dir(&spec.name, &c.name);
        let config = config_dir(&self.paths.container_data_dir(&spec.name, &c.name));
        let mounts = layout(c, &secrets, &config);
        if mounts.is_empty() {
            return Ok(Vec::new());
        }
        if mounts.iter().any(|m| m.kind == RefKind::Secret) {
            host.ensure_tmpfs(&self.paths.run.join("secrets"))?;
        }
        host.remove_dir(&secrets)?;
        host.remove_dir(&config)?;
        let mut out = Vec::with_capacity(mounts.len());
        for m in &mounts {
            host.create_dir(&m.dir)?;
            for item in m.items {
                if !is_safe_relative(&item.path) {
                    return Err(StartError::Rootfs(HostError::Io {
                        context: "refusing the file path",
                        path: item.path.clone().into(),
                        source: std::io::ErrorKind::InvalidInput.into(),
                    }));
                }
                let path = m.dir.join(&item.path);
                if let Some(parent) = path.parent() {
                    host.create_dir(parent)?;
                }
                host.write_private_file(&path, item.value.as_bytes())?;
            }
            out.push((m.target.to_owned(), m.dir.clone()));
        }
        Ok(out)
    }

    /// Gives the files to the container's user when it is not root (Kubernetes makes
    /// them world-readable instead; here they stay 0600 and belong to that user).
    pub(super) fn own_ref_files(
        &self,
        files: &[(String, PathBuf)],
        uid: u32,
        gid: u32,
    ) -> Result<(), StartError> {
        if uid == 0 {
            return Ok(());
        }
        for (_, dir) in files {
            self.ports.host.chown_tree(dir, uid, gid)?;
        }
        Ok(())
    }

    pub(super) fn secrets_dir(&self, wl: &Name, c: &Name) -> PathBuf {
        secrets_dir(&self.paths.run, &container_id(wl, c))
    }

    /// Removes the Secret files of `wl`'s containers (ConfigMap files go with the
    /// container's folder).
    pub(super) fn remove_ref_files(&self, spec: &WorkloadSpec) {
        for c in &spec.containers {
            let has_secrets = c.mounts.iter().any(
                |m| matches!(&m.source, MountSource::Files(f) if f.from.kind == RefKind::Secret),
            );
            if !has_secrets {
                continue;
            }
            let dir = self.secrets_dir(&spec.name, &c.name);
            if let Err(e) = self.ports.host.remove_dir(&dir) {
                tracing::warn!(workload = %spec.name, container = %c.name, "removing its secret files: {e}");
            }
        }
    }
}
