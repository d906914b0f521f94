//! Carrying out the planner's actions: images, pods, containers, removal.
//! Every failure is logged and recorded where the next plan (and the status) sees it.

use std::fs;
use std::time::Duration;

use drover_protocol::{ContainerSpec, Name, NetworkMode, WorkloadSpec};
use tracing::{error, info, warn};

use super::Agent;
use super::agent::DaemonError;
use crate::cgroups;
use crate::fsutil::now_ms;
use crate::image::PreparedImage;
use crate::reconcile::{Action, ImageState};
use crate::runtime::spec::{ImageProcess, SpecInput, runtime_spec};
use crate::runtime::{Runtime, netns, rootfs};
use crate::shim::RunArgs;
use crate::shim::status::{STATUS_FILE, ShimState, ShimStatus};
use crate::state::{self, ContainerRecord, StartError, WorkloadRecord, container_id};

impl Agent {
    pub(super) fn apply(&mut self, action: Action) {
        match action {
            Action::PrepareImage { image } => self.prepare_image(&image),
            Action::CreateWorkload { workload } => self.create_workload(&workload),
            Action::StartContainer {
                workload,
                container,
                restart,
                backoff_level,
            } => self.start_container(&workload, &container, restart, backoff_level),
            Action::RemoveWorkload {
                workload,
                grace_ms,
                keep_data,
            } => self.remove_workload(&workload, grace_ms, keep_data),
        }
    }

    /// Starts a background pull (or unpack) of `image`; the result arrives with a later
    /// pass through `collect_pulls`.
    fn prepare_image(&mut self, image: &str) {
        let cfg = self.pull_config();
        self.pulls
            .start(&self.images, image, cfg, self.paths.agent_sock());
        self.image_states.insert(
            image.to_string(),
            ImageState::Pulling {
                done_bytes: 0,
                total_bytes: 0,
            },
        );
    }

    /// The prepared image for a container start: from this generation's cache, else what
    /// the store resolved before (no network: a device restarts workloads offline).
    fn ensure_image(&mut self, image: &str) -> Result<PreparedImage, String> {
        if let Some(p) = self.prepared.get(image) {
            return Ok(p.clone());
        }
        let found = self.images.resolved(image).ok_or_else(|| {
            format!("image {image} is not in the local store (it is pulled when the workload is created or changed)")
        })?;
        self.prepared.insert(image.to_string(), found.clone());
        Ok(found)
    }

    fn create_workload(&mut self, name: &Name) {
        let Some(spec) = self
            .desired
            .workloads
            .iter()
            .find(|w| &w.name == name)
            .cloned()
        else {
            return;
        };
        if let Err(e) = self.setup_pod(&spec) {
            error!(workload = %name, "cannot set up workload: {e}");
        }
        let containers = spec
            .containers
            .iter()
            .map(|c| (c.name.clone(), ContainerRecord::default()))
            .collect();
        let rec = WorkloadRecord {
            spec,
            created_at_ms: now_ms(),
            containers,
        };
        if let Err(e) = state::save_record(&self.paths, &rec) {
            error!(workload = %name, "cannot persist workload record: {e}");
        }
        info!(workload = %name, "workload created");
        self.records.insert(name.clone(), rec);
    }

    /// What the containers of a workload share: volumes and, for `network: none`, a netns.
    fn setup_pod(&self, spec: &WorkloadSpec) -> Result<(), DaemonError> {
        let io = |context: String| move |source| DaemonError::Io { context, source };
        for v in &spec.volumes {
            let dir = self.paths.volumes_dir(&spec.name).join(v.as_str());
            fs::create_dir_all(&dir).map_err(io(format!("creating volume {}", dir.display())))?;
        }
        if spec.network == NetworkMode::None {
            let path = self.paths.netns(&spec.name);
            netns::create(&path).map_err(|e| DaemonError::Io {
                context: format!("creating network namespace {}", path.display()),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        Ok(())
    }

    fn start_container(&mut self, wl: &Name, c: &Name, restart: bool, backoff_level: u32) {
        let Some(spec) = self.records.get(wl).map(|r| r.spec.clone()) else {
            return;
        };
        let Some(cspec) = spec.containers.iter().find(|x| &x.name == c).cloned() else {
            return;
        };
        let t0 = std::time::Instant::now();
        let result = self.try_start(&spec, &cspec);
        let Some(rec) = self.records.get_mut(wl) else {
            return;
        };
        let crec = rec.containers.entry(c.clone()).or_default();
        crec.restarts += u32::from(restart);
        crec.backoff_level = backoff_level;
        match result {
            Ok((pid, digest)) => {
                crec.started = true;
                crec.start_error = None;
                if let Err(e) = self.images.touch(&digest) {
                    warn!(image = %digest, "cannot record image use: {e}");
                }
                crec.image_digest = Some(digest);
                info!(workload = %wl, container = %c, pid, restart, restarts = crec.restarts, elapsed_ms = t0.elapsed().as_millis() as u64, "container started");
            }
            Err(error) => {
                warn!(workload = %wl, container = %c, "start failed: {error}");
                crec.start_error = Some(StartError {
                    at_ms: now_ms(),
                    error,
                });
            }
        }
        let rec = rec.clone();
        if let Err(e) = state::save_record(&self.paths, &rec) {
            error!(workload = %wl, "cannot persist workload record: {e}");
        }
    }

    /// Builds the container's rootfs and bundle and starts its shim: `(pid, image digest)`.
    fn try_start(
        &mut self,
        spec: &WorkloadSpec,
        c: &ContainerSpec,
    ) -> Result<(u32, String), String> {
        let image = self.ensure_image(c.image.as_str())?;
        let id = container_id(&spec.name, &c.name);
        let dir = self.paths.container_dir(&spec.name, &c.name);
        self.clear_previous(&id, &dir);
        let bundle = dir.join("bundle");
        let root = bundle.join("rootfs");
        rootfs::unmount(&root).map_err(|e| e.to_string())?;
        rootfs::reset_upper(&dir.join("upper"), &dir.join("work")).map_err(|e| e.to_string())?;
        rootfs::mount_overlay(&image.layers, &dir.join("upper"), &dir.join("work"), &root)
            .map_err(|e| e.to_string())?;
        let read = |p: &str| fs::read_to_string(root.join(p)).ok();
        let (passwd, group) = (read("etc/passwd"), read("etc/group"));
        let cfg = &image.config;
        let process = ImageProcess {
            entrypoint: cfg.entrypoint.clone(),
            cmd: cfg.cmd.clone(),
            env: cfg.env.clone(),
            working_dir: cfg.working_dir.clone(),
            user: cfg.user.clone(),
        };
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
            passwd: passwd.as_deref(),
            group: group.as_deref(),
            swap_accounting: cgroups::swap_accounting(),
        };
        let oci = runtime_spec(&input).map_err(|e| e.to_string())?;
        oci.save(bundle.join("config.json"))
            .map_err(|e| format!("writing config.json: {e}"))?;
        let args = RunArgs {
            id,
            dir,
            root: self.paths.runtime(),
            log: self.paths.log_file(&spec.name, &c.name),
            log_max_bytes: self.cfg.logs.max_bytes.0,
            log_files: self.cfg.logs.files,
            stop_grace_ms: u64::from(spec.stop_grace_ms),
            notify: Some(self.paths.agent_sock()),
        };
        let pid = self.runtime.start(&args).map_err(|e| e.to_string())?;
        Ok((pid, image.manifest_digest))
    }

    /// Makes sure no earlier instance of the container is left: a clean exit needs
    /// nothing, anything else (power cut, dead shim) is force-deleted first.
    fn clear_previous(&self, id: &str, dir: &std::path::Path) {
        let st = ShimStatus::read(dir);
        if (st.as_ref().is_some_and(|s| s.state != ShimState::Exited)
            || dir.join("bundle").exists() && st.is_none())
            && let Err(e) = self.runtime.wait_stopped(id, dir, Duration::ZERO)
        {
            warn!(container = id, "cleaning up the previous instance: {e}");
        }
        let _ = fs::remove_file(dir.join(STATUS_FILE));
    }

    fn remove_workload(&mut self, wl: &Name, grace_ms: u32, keep_data: bool) {
        let Some(rec) = self.records.get(wl).cloned() else {
            return;
        };
        let dirs: Vec<_> = rec
            .spec
            .containers
            .iter()
            .map(|c| (c, self.paths.container_dir(wl, &c.name)))
            .collect();
        for (_, dir) in &dirs {
            self.runtime.request_stop(dir);
        }
        let grace = Duration::from_millis(u64::from(grace_ms));
        for (c, dir) in &dirs {
            let id = container_id(wl, &c.name);
            if let Err(e) = self.runtime.wait_stopped(&id, dir, grace) {
                warn!(container = %id, "stopping: {e}");
            }
            if let Err(e) = rootfs::unmount(&dir.join("bundle").join("rootfs")) {
                warn!(container = %id, "unmounting rootfs: {e}");
            }
            if let Err(e) = fs::remove_dir_all(dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(container = %id, "removing {}: {e}", dir.display());
            }
        }
        self.teardown_pod(wl, keep_data);
        if let Err(e) = state::delete_record(&self.paths, wl) {
            error!(workload = %wl, "cannot delete workload record: {e}");
            return;
        }
        self.records.remove(wl);
        self.gc_requested = true;
        info!(workload = %wl, replaced = keep_data, "workload removed");
    }

    fn teardown_pod(&self, wl: &Name, keep_data: bool) {
        let ns = self.paths.netns(wl);
        if ns.exists()
            && let Err(e) = netns::remove(&ns)
        {
            warn!(workload = %wl, "removing network namespace: {e}");
        }
        let cg = format!("/{}/{wl}", self.cfg.cgroup_parent.trim_matches('/'));
        if let Err(e) = cgroups::remove_tree(&cg) {
            warn!(workload = %wl, "removing cgroup {cg}: {e}");
        }
        if !keep_data {
            for d in [self.paths.volumes_dir(wl), self.paths.logs_dir(wl)] {
                let _ = fs::remove_dir_all(d);
            }
        }
    }
}
