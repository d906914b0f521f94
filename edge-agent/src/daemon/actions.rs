//! Carrying out the planner's actions through the ports: images, pods, containers, stops
//! and removal. Every failure is logged and recorded where the next plan (and the
//! status) sees it; none of these waits for a process to end.

use drover_protocol::{ContainerSpec, Name, NetworkMode, WorkloadSpec};
use tracing::{error, info, warn};

use super::agent::Agent;
use crate::host::HostError;
use crate::reconcile::{Action, StartErrorKind};
use crate::runtime::RuntimeError;
use crate::runtime::security::AgentPolicy;
use crate::runtime::spec::{ImageProcess, SpecError, SpecInput, runtime_spec};
use crate::shim::RunArgs;
use crate::state::{ContainerRecord, StartFailure, StopRecord, WorkloadRecord, container_id};

/// Why a container could not be started. The kind decides how the planner retries.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("image {reference} is not in the local store (it is pulled again before the next try)")]
    Image { reference: String },
    #[error("setting up the root filesystem: {0}")]
    Rootfs(#[from] HostError),
    #[error("{0}")]
    Spec(#[from] SpecError),
    #[error("encoding config.json: {0}")]
    Bundle(#[from] serde_json::Error),
    #[error("{0}")]
    WorkingDir(HostError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("refused by this device's [security] policy: {0}")]
    Policy(#[from] drover_protocol::PolicyViolation),
}

impl StartError {
    pub fn kind(&self) -> StartErrorKind {
        match self {
            StartError::Image { .. } => StartErrorKind::Image,
            StartError::Rootfs(_) => StartErrorKind::Rootfs,
            StartError::Spec(SpecError::HostPathMissing(_) | SpecError::Device { .. }) => {
                StartErrorKind::Host
            }
            StartError::Spec(_)
            | StartError::Bundle(_)
            | StartError::WorkingDir(_)
            | StartError::Policy(_) => StartErrorKind::Spec,
            StartError::Runtime(_) => StartErrorKind::Runtime,
        }
    }
}

impl Agent {
    pub(super) fn apply(&mut self, action: Action) {
        match action {
            Action::PrepareImage { image } => {
                self.ports.images.start_pull(&image);
                self.images.pulling(&image);
            }
            Action::CreateWorkload { workload } => self.create_workload(&workload),
            Action::UpdateRevision { workload } => self.update_revision(&workload),
            Action::StartContainer {
                workload,
                container,
                restart,
                backoff_level,
            } => self.start_container(&workload, &container, restart, backoff_level),
            Action::StopWorkload { workload } => self.stop_workload(&workload),
            Action::RemoveWorkload {
                workload,
                keep_data,
                force,
            } => self.remove_workload(&workload, keep_data, force),
        }
    }

    fn create_workload(&mut self, name: &Name) {
        let Some(spec) = self
            .sources
            .desired
            .workloads
            .iter()
            .find(|w| &w.name == name)
            .cloned()
        else {
            return;
        };
        let containers = spec
            .containers
            .iter()
            .map(|c| (c.name.clone(), ContainerRecord::default()))
            .collect();
        let rec = WorkloadRecord {
            spec,
            created_at_ms: self.ports.clock.wall_ms(),
            containers,
            stopping: None,
        };
        info!(workload = %name, "workload created");
        self.records.insert(name.clone(), rec);
        self.save_record(name);
    }

    /// Takes the desired spec of `name` into its record in place (it runs like the
    /// created one: only rollout bookkeeping changed).
    fn update_revision(&mut self, name: &Name) {
        let desired = self
            .sources
            .desired
            .workloads
            .iter()
            .find(|w| &w.name == name);
        let (Some(spec), Some(rec)) = (desired, self.records.get_mut(name)) else {
            return;
        };
        info!(workload = %name, from = rec.spec.revision, to = spec.revision,
            "revision updated in place: the containers run as they are");
        rec.spec = spec.clone();
        self.save_record(name);
    }

    /// Persists the record of `wl`; a failure (full disk) is logged and the record is
    /// written again at the next pass ([`Agent::save_unsaved_records`]).
    pub(super) fn save_record(&mut self, wl: &Name) {
        let Some(rec) = self.records.get(wl) else {
            return;
        };
        match self.ports.state.save_record(rec) {
            Ok(()) => {
                self.unsaved.remove(wl);
            }
            Err(e) => {
                if self.unsaved.insert(wl.clone()) {
                    error!(workload = %wl, "cannot persist workload record (retried at every pass): {e}");
                }
            }
        }
    }

    /// Writes the records a full disk (or another write error) kept from being saved.
    pub(super) fn save_unsaved_records(&mut self) {
        let pending: Vec<Name> = self.unsaved.iter().cloned().collect();
        for wl in pending {
            if self.records.contains_key(&wl) {
                self.save_record(&wl);
            } else {
                self.unsaved.remove(&wl);
            }
        }
    }

    /// What the containers of a workload share: volumes and, for `network: none`, a netns.
    /// Done before every container start (each step does nothing when already done), so
    /// a failure is a start failure, retried with back-off.
    fn setup_pod(&self, spec: &WorkloadSpec) -> Result<(), HostError> {
        for v in &spec.volumes {
            let dir = self.paths.volumes_dir(&spec.name).join(v.as_str());
            self.ports.host.create_dir(&dir)?;
        }
        if spec.network == NetworkMode::None {
            self.ports
                .host
                .create_netns(&self.paths.netns(&spec.name))?;
        }
        Ok(())
    }

    fn start_container(&mut self, wl: &Name, c: &Name, restart: bool, backoff_level: u32) {
        let Some(spec) = self.spec_with_values(wl) else {
            return;
        };
        let Some(cspec) = spec.containers.iter().find(|x| &x.name == c).cloned() else {
            return;
        };
        let t0 = std::time::Instant::now();
        let result = self.try_start(&spec, &cspec);
        let (wall, boot) = (self.ports.clock.wall_ms(), self.ports.clock.boot_ms());
        let Some(rec) = self.records.get_mut(wl) else {
            return;
        };
        let crec = rec.containers.entry(c.clone()).or_default();
        crec.restarts += u32::from(restart);
        crec.backoff_level = backoff_level;
        crec.restart_requested = false;
        match result {
            Ok((pid, digest)) => {
                crec.started = true;
                crec.start_error = None;
                if let Err(e) = self.ports.images.touch(&digest) {
                    warn!(image = %digest, "cannot record image use: {e}");
                }
                crec.image_digest = Some(digest);
                info!(workload = %wl, container = %c, pid, restart, restarts = crec.restarts, elapsed_ms = t0.elapsed().as_millis() as u64, "container started");
            }
            Err(e) => {
                let kind = e.kind();
                warn!(workload = %wl, container = %c, kind = kind.as_str(), "start failed: {e}");
                crec.start_error = Some(StartFailure {
                    at_ms: wall,
                    at_boot_ms: Some(boot),
                    kind,
                    error: e.to_string(),
                });
            }
        }
        self.save_record(wl);
    }

    /// Builds the container's rootfs and bundle and starts its shim: `(pid, image digest)`.
    fn try_start(
        &mut self,
        spec: &WorkloadSpec,
        c: &ContainerSpec,
    ) -> Result<(u32, String), StartError> {
        // Before anything of the container exists: a refused one is never set up.
        self.security_policy().check(spec)?;
        let id = container_id(&spec.name, &c.name);
        // Per-start files in the runtime folder; only the writable layer on the state disk.
        let dir = self.paths.container_dir(&spec.name, &c.name);
        let data = self.paths.container_data_dir(&spec.name, &c.name);
        // First, so that the previous instance's last status (exited, lost) is gone
        // whatever step fails next: observation then sees this start's failure.
        if let Err(e) = self.ports.runtime.clear(&id, &dir, &data) {
            warn!(container = id, "cleaning up the previous instance: {e}");
        }
        let image = self
            .images
            .ensure(self.ports.images.as_ref(), c.image.as_str())
            .ok_or_else(|| StartError::Image {
                reference: c.image.to_string(),
            })?;
        self.setup_pod(spec)?;
        let host = &self.ports.host;
        let root = host.mount_rootfs(&image.layers, &data)?;
        let (passwd, group) = (
            host.read_rootfs_file(&root, "etc/passwd"),
            host.read_rootfs_file(&root, "etc/group"),
        );
        let cfg = &image.config;
        let process = ImageProcess {
            entrypoint: cfg.entrypoint.clone(),
            cmd: cfg.cmd.clone(),
            env: cfg.env.clone(),
            working_dir: cfg.working_dir.clone(),
            user: cfg.user.clone(),
            healthcheck: cfg.healthcheck.clone(),
        };
        let etc = self.write_etc_files(spec, &dir)?;
        let files = self.write_ref_files(spec, c)?;
        let netns = self.paths.netns(&spec.name);
        let cgroups_path = self.cgroups_path(&spec.name, &c.name);
        let input = SpecInput {
            workload: spec,
            container: c,
            image: &process,
            rootfs: &root,
            cgroups_path: &cgroups_path,
            netns: (spec.network == NetworkMode::None).then_some(netns.as_path()),
            volumes_dir: &self.paths.volumes_dir(&spec.name),
            hostname: spec.name.as_str(),
            etc_files: Some(&etc),
            passwd: passwd.as_deref(),
            group: group.as_deref(),
            swap_accounting: host.swap_accounting(),
            files: &files,
        };
        let oci = runtime_spec(&input)?;
        if let Some(user) = oci.process().as_ref().map(|p| p.user()) {
            self.own_ref_files(&files, user.uid(), user.gid())?;
        }
        if let Some(cwd) = oci
            .process()
            .as_ref()
            .map(|p| p.cwd().to_string_lossy().into_owned())
            && cwd != "/"
        {
            host.ensure_rootfs_dir(&root, &cwd)
                .map_err(StartError::WorkingDir)?;
        }
        let bytes = serde_json::to_vec(&oci)?;
        let bundle = dir.join("bundle");
        host.create_dir(&bundle)?;
        host.write_file(&bundle.join("config.json"), &bytes)?;
        let args = RunArgs {
            id,
            dir,
            root: self.paths.runtime(),
            data_dir: Some(data.clone()),
            log: self.paths.log_file(&spec.name, &c.name),
            log_max_bytes: self.cfg.logs.max_bytes.0,
            log_files: self.cfg.logs.files,
            stop_grace_ms: u64::from(spec.stop_grace_ms),
            notify: Some(self.paths.agent_sock()),
        };
        let (id, dir) = (args.id.clone(), args.dir.clone());
        match self.ports.runtime.start(&args) {
            Ok(pid) => Ok((pid, image.manifest_digest)),
            Err(e @ RuntimeError::StartTimeout { .. }) => {
                // A shim stuck in creation would keep the container `Starting` forever:
                // end it, so that this failure is what the next passes see (and back off).
                if let Err(k) = self.ports.runtime.force_stop(&id, &dir) {
                    warn!(container = %id, "ending the stuck shim: {k}");
                }
                if let Err(k) = self.ports.runtime.clear(&id, &dir, &data) {
                    warn!(container = %id, "clearing the stuck start: {k}");
                }
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The container's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` in
    /// `dir/etc/` (as Docker provides them): localhost and the workload's name; the host's
    /// resolvers on the host network, none without a network.
    fn write_etc_files(
        &self,
        spec: &WorkloadSpec,
        dir: &std::path::Path,
    ) -> Result<std::path::PathBuf, StartError> {
        let host = &self.ports.host;
        let etc = dir.join("etc");
        host.create_dir(&etc)?;
        let name = spec.name.as_str();
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{name}\n"
        );
        let resolv = match spec.network {
            NetworkMode::Host => host.resolv_conf(),
            NetworkMode::None => String::new(),
        };
        host.write_file(&etc.join("hosts"), hosts.as_bytes())?;
        host.write_file(&etc.join("hostname"), format!("{name}\n").as_bytes())?;
        host.write_file(&etc.join("resolv.conf"), resolv.as_bytes())?;
        Ok(etc)
    }

    /// Asks every container of `wl` to stop and records the request (so that an agent
    /// restarted meanwhile carries on with the removal). Returns at once.
    fn stop_workload(&mut self, wl: &Name) {
        let (wall, boot) = (self.ports.clock.wall_ms(), self.ports.clock.boot_ms());
        let Some(rec) = self.records.get_mut(wl) else {
            return;
        };
        rec.stopping = Some(StopRecord {
            requested_at_ms: wall,
            requested_at_boot_ms: boot,
        });
        let grace_ms = rec.spec.stop_grace_ms;
        for c in &rec.spec.containers {
            self.ports
                .runtime
                .request_stop(&self.paths.container_dir(wl, &c.name));
        }
        info!(workload = %wl, grace_ms, "stopping workload");
        self.save_record(wl);
    }

    /// Deletes a stopped workload; with `force`, kills what still runs first.
    fn remove_workload(&mut self, wl: &Name, keep_data: bool, force: bool) {
        let Some(rec) = self.records.get(wl).cloned() else {
            return;
        };
        for c in &rec.spec.containers {
            let id = container_id(wl, &c.name);
            let dir = self.paths.container_dir(wl, &c.name);
            let data = self.paths.container_data_dir(wl, &c.name);
            let done = if force {
                warn!(container = %id, "still running after its grace period: killing it");
                self.ports.runtime.force_stop(&id, &dir)
            } else {
                // Down already; force-deletes only what a dead shim left behind.
                self.ports.runtime.clear(&id, &dir, &data)
            };
            if let Err(e) = done {
                warn!(container = %id, "deleting the container: {e}");
            }
            if let Err(e) = self.ports.host.remove_container_dir(&data) {
                warn!(container = %id, "removing its folder: {e}");
            }
            if let Err(e) = self.ports.host.remove_dir(&dir) {
                warn!(container = %id, "removing its runtime folder: {e}");
            }
        }
        self.remove_ref_files(&rec.spec);
        self.teardown_pod(wl, keep_data);
        if let Err(e) = self.ports.state.delete_record(wl) {
            error!(workload = %wl, "cannot delete workload record: {e}");
            return;
        }
        self.records.remove(wl);
        self.images.gc_requested = true;
        info!(workload = %wl, replaced = keep_data, "workload removed");
    }

    fn teardown_pod(&self, wl: &Name, keep_data: bool) {
        let host = &self.ports.host;
        if let Err(e) = host.remove_netns(&self.paths.netns(wl)) {
            warn!(workload = %wl, "removing network namespace: {e}");
        }
        let cg = self.workload_cgroup(wl);
        if let Err(e) = host.remove_cgroup(&cg) {
            warn!(workload = %wl, "removing cgroup {cg}: {e}");
        }
        if !keep_data {
            for d in [self.paths.volumes_dir(wl), self.paths.logs_dir(wl)] {
                if let Err(e) = host.remove_dir(&d) {
                    warn!(workload = %wl, "removing {}: {e}", d.display());
                }
            }
        }
    }

    /// The workload's cgroup, relative to each hierarchy's root: `/{parent}/{wl}`.
    fn workload_cgroup(&self, wl: &Name) -> String {
        format!("/{}/{wl}", self.cfg.cgroup_parent.trim_matches('/'))
    }

    /// A container's cgroup: `/{parent}/{wl}/{c}`.
    pub(super) fn cgroups_path(&self, wl: &Name, c: &Name) -> String {
        format!("{}/{c}", self.workload_cgroup(wl))
    }

    /// `[security]` plus this agent's own folders (resolved now: they may be links).
    fn security_policy(&self) -> AgentPolicy {
        let cfg = &self.cfg;
        let config_file = cfg.config_file.as_deref();
        AgentPolicy::new(&cfg.security, &cfg.state_dir, &cfg.run_dir, config_file)
    }
}
