//! The agent's last word on what a workload may touch on this device: its `[security]`
//! allow-list (host paths, devices, privileged) plus the paths no config can allow —
//! `/`, the state folder, the run folder and the config folder, with their parents.
//!
//! Checked before anything of a container is set up; a refused container is never
//! started. Its only IO is resolving symlinks of the paths a workload names (so that
//! `/srv/link -> /` is seen as `/`). It must never loosen the rules of
//! `drover_protocol::security`.

use std::path::{Path, PathBuf};

use drover_protocol::{PolicyViolation, SecurityPolicy, WorkloadSpec};

/// The `[security]` section and the folders this agent itself lives in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPolicy {
    allow: SecurityPolicy,
    never: Vec<PathBuf>,
}

impl AgentPolicy {
    /// `config_file`: the agent's config file, when it was read from one (its folder is
    /// protected; the manifests folder usually lives there too).
    pub fn new(
        allow: &SecurityPolicy,
        state_dir: &Path,
        run_dir: &Path,
        config_file: Option<&Path>,
    ) -> Self {
        let mut never = vec![state_dir.to_owned(), run_dir.to_owned()];
        if let Some(dir) = config_file.and_then(Path::parent) {
            never.push(dir.to_owned());
        }
        let resolved: Vec<PathBuf> = never.iter().filter_map(|p| p.canonicalize().ok()).collect();
        never.extend(resolved);
        never.sort();
        never.dedup();
        AgentPolicy {
            allow: allow.clone(),
            never,
        }
    }

    /// Whether `spec` stays within the policy (each host path and device also checked
    /// as what it resolves to now).
    pub fn check(&self, spec: &WorkloadSpec) -> Result<(), PolicyViolation> {
        let never: Vec<&Path> = self.never.iter().map(PathBuf::as_path).collect();
        self.allow.check(spec, &never, &resolve)
    }
}

fn resolve(path: &str) -> String {
    match Path::new(path).canonicalize() {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(_) => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use drover_protocol::{ContainerSpec, ImageRef, Mount, MountSource, Name};

    use super::*;

    fn with_host_path(path: &Path) -> WorkloadSpec {
        let mut c = ContainerSpec::new(Name::new("c").unwrap(), ImageRef::new("x").unwrap());
        c.mounts.push(Mount {
            source: MountSource::HostPath(path.to_string_lossy().into_owned()),
            target: "/mnt".into(),
            read_only: true,
        });
        WorkloadSpec::new(Name::new("w").unwrap(), vec![c])
    }

    #[test]
    fn the_agents_own_folders_and_symlinks_to_them_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let (state, run, etc) = (base.join("state"), base.join("run"), base.join("etc"));
        for d in [&state, &run, &etc, &base.join("data")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(&state, base.join("data/sneaky")).unwrap();
        let allow = SecurityPolicy {
            host_paths: vec![base.to_string_lossy().into_owned()],
            ..Default::default()
        };
        let p = AgentPolicy::new(&allow, &state, &run, Some(&etc.join("agent.toml")));
        assert!(p.check(&with_host_path(&base.join("data"))).is_ok());
        for bad in [
            base.to_owned(),
            state.join("volumes"),
            run.clone(),
            etc.clone(),
            base.join("data/sneaky"),
            PathBuf::from("/"),
        ] {
            assert!(p.check(&with_host_path(&bad)).is_err(), "{}", bad.display());
        }
    }
}
