//! A real `drover-agent run` process on a private state folder, manifests folder and
//! cgroup parent, with the controls the end-to-end tests need: write manifests, read
//! `ps`, kill -9, "power cut", and a cleanup that leaves no container or cgroup behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::{bin, unique, wait_for};

pub struct TestAgent {
    pub dir: TempDir,
    pub state: PathBuf,
    pub manifests: PathBuf,
    pub config: PathBuf,
    pub cgroup_parent: String,
    child: Option<Child>,
    runs: u32,
    /// When the agent was last started: older reports are ignored by [`TestAgent::ps`].
    started_ms: u64,
}

/// The heartbeat of agents connected to a test hub, in seconds.
pub const TEST_HEARTBEAT_S: u64 = 2;

impl TestAgent {
    /// A new agent (not started) and a busybox OCI layout in its folder.
    pub fn with_busybox(test: &str) -> (TestAgent, PathBuf) {
        let a = TestAgent::new(test);
        let image = a.dir.path().join("busybox");
        crate::oci::busybox_layout(&image, "latest")
            .expect("busybox layout (apt-get install busybox-static)");
        (a, image)
    }

    /// A stopped agent with its own folders and config (`resync_interval` 2 s).
    pub fn new(test: &str) -> TestAgent {
        let dir = tempfile::Builder::new()
            .prefix(&format!("drover-{test}-"))
            .tempdir()
            .expect("tempdir");
        let (state, manifests) = (dir.path().join("state"), dir.path().join("manifests"));
        fs::create_dir_all(&manifests).expect("manifests dir");
        let cgroup_parent = unique("drover-test");
        // In a folder of its own, as /etc/drover: the agent refuses host paths in it.
        let config = dir.path().join("etc").join("agent.toml");
        fs::create_dir_all(dir.path().join("etc")).expect("config dir");
        let toml = format!(
            "device = \"{}\"\n{}",
            test.replace('_', "-"),
            base_config(&state, &manifests, &cgroup_parent)
        );
        fs::write(&config, toml).expect("config");
        TestAgent {
            dir,
            state,
            manifests,
            config,
            cgroup_parent,
            child: None,
            runs: 0,
            started_ms: 0,
        }
    }

    /// Points the agent at a hub: `snippet` is what `drover-hub device add` printed
    /// (device name and `[hub]` section), with a heartbeat of [`TEST_HEARTBEAT_S`] — well
    /// within the test hub's `offline_after` (10 s), as in any sane setup (the defaults
    /// are 30 s and 90 s), so that a quiet device still counts as online. Takes effect at
    /// the next start.
    pub fn connect_to_hub(&self, snippet: &str) {
        let toml = format!(
            "{}\n{snippet}\nheartbeat = \"{TEST_HEARTBEAT_S}s\"\n",
            base_config(&self.state, &self.manifests, &self.cgroup_parent)
        );
        fs::write(&self.config, toml).expect("config");
    }

    /// Appends tables (e.g. `[[images.registries]]`) to the config; after `connect_to_hub`.
    pub fn append_config(&self, toml: &str) {
        let mut text = fs::read_to_string(&self.config).expect("config");
        text.push_str(toml);
        fs::write(&self.config, text).expect("config");
    }

    /// Starts the agent process; its log goes to `agent-N.log` in the test folder.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        self.runs += 1;
        let log = fs::File::create(self.dir.path().join(format!("agent-{}.log", self.runs)))
            .expect("log");
        let child = Command::new(bin("drover-agent"))
            .args(["run", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn drover-agent");
        self.child = Some(child);
        self.started_ms = now_ms();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL to the agent only: shims and containers keep running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the agent's orderly stop (containers keep running).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("agent not running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().expect("wait agent")
    }

    /// What a power cut does: the agent, every shim and every container die at once.
    pub fn power_cut(&mut self) {
        self.kill9();
        for st in self.shim_statuses() {
            for key in ["shim_pid", "pid"] {
                if let Some(pid) = st[key].as_u64() {
                    // SAFETY: plain kill(2); the pids come from our own state folder.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
        }
        // Anything else left in our cgroups (children of containers) dies too.
        for _ in 0..100 {
            let pids = self.cgroup_pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes a manifest atomically (temp file + rename), as a careful user or tool would.
    pub fn write_manifest(&self, file: &str, yaml: &str) {
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        fs::write(&tmp, yaml).expect("write manifest");
        fs::rename(&tmp, self.manifests.join(file)).expect("rename manifest");
    }

    pub fn remove_manifest(&self, file: &str) {
        fs::remove_file(self.manifests.join(file)).expect("remove manifest");
    }

    /// Runs `drover-agent ARGS --config CONFIG`: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("drover-agent"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("cli");
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            out.status.code().unwrap_or(-1),
            s(&out.stdout),
            s(&out.stderr),
        )
    }

    /// `ps -o json`, or `None` when the running agent has not reported yet (a report
    /// left by an earlier agent process does not count).
    pub fn ps(&self) -> Option<Value> {
        let (code, out, _) = self.cli(&["ps", "-o", "json"]);
        if code != 0 {
            return None;
        }
        let v: Value = serde_json::from_str(&out).ok()?;
        (v["time_ms"].as_u64()? >= self.started_ms).then_some(v)
    }

    /// The status of one container from `ps -o json`.
    pub fn container(&self, wl: &str, c: &str) -> Option<Value> {
        let ps = self.ps()?;
        let w = ps["workloads"]
            .as_array()?
            .iter()
            .find(|w| w["name"] == wl)?
            .clone();
        w["containers"]
            .as_array()?
            .iter()
            .find(|x| x["name"] == c)
            .cloned()
    }

    /// The PID of `wl/c` when `ps` reports it running.
    pub fn running_pid(&self, wl: &str, c: &str) -> Option<u32> {
        let c = self.container(wl, c)?;
        (c["phase"] == "Running")
            .then(|| c["pid"].as_u64().map(|p| p as u32))
            .flatten()
    }

    /// Waits until `wl/c` runs and returns its PID.
    pub fn wait_running(&self, wl: &str, c: &str, timeout: Duration) -> u32 {
        wait_for(&format!("{wl}/{c} running"), timeout, || {
            self.running_pid(wl, c)
        })
    }

    /// Waits until exactly `n` workloads are reported, all in `phase`; returns that `ps`.
    pub fn wait_all_in_phase(&self, n: usize, phase: &str, timeout: Duration) -> Value {
        self.wait_ps(&format!("{n} workloads in {phase}"), timeout, |p| {
            p["workloads"]
                .as_array()
                .is_some_and(|w| w.len() == n && w.iter().all(|w| w["phase"] == phase))
        })
    }

    /// Waits until `ps` satisfies `pred`, and returns that `ps`.
    pub fn wait_ps(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, timeout, || self.ps().filter(|p| pred(p)))
    }

    /// A file of the container's cgroup in the v1 hierarchy of `controller`.
    pub fn cgroup_file(&self, controller: &str, wl: &str, c: &str, file: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.cgroup_parent)
            .join(wl)
            .join(c)
            .join(file)
    }

    /// The workload's cgroup folder in the v1 hierarchy of `controller`.
    pub fn workload_cgroup(&self, controller: &str, wl: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.cgroup_parent)
            .join(wl)
    }

    /// All agent logs so far, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.runs)
            .map(|i| {
                fs::read_to_string(self.dir.path().join(format!("agent-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- agent restarted ---\n")
    }

    /// The status files of every shim this agent started: in the runtime folder, and
    /// those of live shims on the state disk (a runtime folder set to the state folder,
    /// as agents had it before `run_dir`).
    pub fn shim_statuses(&self) -> Vec<Value> {
        let read = |base: &Path| -> Vec<Value> {
            let Ok(dirs) = fs::read_dir(base.join("containers")) else {
                return vec![];
            };
            dirs.flatten()
                .filter_map(|d| fs::read(d.path().join("status.json")).ok())
                .filter_map(|b| serde_json::from_slice(&b).ok())
                .collect()
        };
        let mut all = read(&self.run_dir());
        let live = |v: &Value| v["state"] == "starting" || v["state"] == "running";
        all.extend(read(&self.state).into_iter().filter(live));
        all
    }

    /// The agent's runtime folder (`run_dir`) by default: shim folders and libcontainer
    /// state. [`TestAgent::set_run_dir`] can point the agent elsewhere.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Sets `run_dir` in the config (takes effect at the next start); the state folder
    /// itself gives the layout of agents from before `run_dir`.
    pub fn set_run_dir(&self, run: &Path) {
        let text = fs::read_to_string(&self.config).expect("config");
        let lines: Vec<String> = text
            .lines()
            .map(|l| match l.starts_with("run_dir = ") {
                true => format!("run_dir = \"{}\"", run.display()),
                false => l.to_owned(),
            })
            .collect();
        fs::write(&self.config, lines.join("\n") + "\n").expect("config");
    }

    /// What a reboot does to the default runtime folder (a tmpfs): empties it. Call
    /// after [`TestAgent::power_cut`].
    pub fn empty_run_dir(&self) {
        if let Ok(entries) = fs::read_dir(self.run_dir()) {
            for e in entries.flatten() {
                let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
            }
        }
    }

    /// Every process in this agent's cgroup tree (pids hierarchy).
    pub fn cgroup_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        let root = Path::new("/sys/fs/cgroup/pids").join(&self.cgroup_parent);
        collect_procs(&root, &mut pids);
        pids
    }

    /// Stops everything this agent started and removes its cgroups and mounts.
    fn cleanup(&mut self) {
        let has_hub = fs::read_to_string(&self.config).is_ok_and(|c| c.contains("[hub]"));
        if self.child.is_some() && !has_hub {
            if let Ok(entries) = fs::read_dir(&self.manifests) {
                for e in entries.flatten() {
                    let _ = fs::remove_file(e.path());
                }
            }
            let gone = (0..200).any(|_| {
                std::thread::sleep(Duration::from_millis(100));
                self.ps()
                    .is_some_and(|p| p["workloads"].as_array().is_some_and(|w| w.is_empty()))
                    && fs::read_dir(self.state.join("workloads"))
                        .map(|d| d.count() == 0)
                        .unwrap_or(true)
            });
            if !gone {
                eprintln!("cleanup: agent did not remove its workloads in time; forcing");
            }
        }
        self.power_cut();
        force_cleanup(&self.state, &self.run_dir(), &self.cgroup_parent);
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== agent log ({}) =====\n{}\n===== end of agent log =====",
                self.dir.path().display(),
                self.logs()
            );
        }
        self.cleanup();
    }
}

/// The `last_error` of workload `name` in a `ps` report, as JSON text (`null` when none).
pub fn last_error(ps: &Value, name: &str) -> String {
    let workloads = ps["workloads"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    workloads
        .iter()
        .find(|w| w["name"] == name)
        .map_or("null".into(), |w| w["last_error"].to_string())
}

/// The agent settings every test agent shares (no device name, no hub).
/// The runtime folder sits beside the state folder (`run/`), private to the test.
fn base_config(state: &Path, manifests: &Path, cgroup_parent: &str) -> String {
    let run = state.with_file_name("run");
    format!(
        "state_dir = \"{}\"\nrun_dir = \"{}\"\nmanifests_dir = \"{}\"\n\
         cgroup_parent = \"{cgroup_parent}\"\n\
         resync_interval = \"2s\"\nlog_level = \"info,drover_agent=debug\"\n",
        state.display(),
        run.display(),
        manifests.display()
    )
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten().filter(|e| e.path().is_dir()) {
            collect_procs(&e.path(), pids);
        }
    }
}

/// Removes whatever a killed agent left: libcontainer state, mounts, cgroups.
fn force_cleanup(state: &Path, run: &Path, cgroup_parent: &str) {
    if let Ok(dirs) = fs::read_dir(run.join("containers")) {
        for d in dirs.flatten() {
            let id = d.file_name().to_string_lossy().into_owned();
            let _ = Command::new(bin("drover-agent"))
                .args(["shim", "delete", "--id", &id, "--root"])
                .arg(run.join("runtime"))
                .output();
        }
    }
    if let Ok(dirs) = fs::read_dir(state.join("containers")) {
        for d in dirs.flatten() {
            // Containers of an agent whose runtime folder was the state folder.
            let id = d.file_name().to_string_lossy().into_owned();
            let _ = Command::new(bin("drover-agent"))
                .args(["shim", "delete", "--id", &id, "--root"])
                .arg(state.join("runtime"))
                .output();
            umount(&d.path().join("bundle").join("rootfs"));
        }
    }
    if let Ok(ns) = fs::read_dir(state.join("netns")) {
        for n in ns.flatten() {
            umount(&n.path());
        }
    }
    let Ok(ctrls) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for c in ctrls.flatten() {
        remove_cgroup_tree(&c.path().join(cgroup_parent));
    }
}

fn umount(p: &Path) {
    if let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) {
        // SAFETY: c is a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// rmdir bottom-up; cgroup folders cannot be removed with their pseudo-files.
pub fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        {
            remove_cgroup_tree(&e.path());
        }
    }
    let _ = fs::remove_dir(dir);
}

/// A workload manifest running `script` with busybox `sh -c` from the layout `image`.
pub fn workload_yaml(
    name: &str,
    image: &Path,
    script: &str,
    extra_spec: &str,
    resources: &str,
) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  stopGracePeriod: 2s\n{extra_spec}  containers:\n    - name: main\n      image: oci:{}:latest\n      command: [/bin/sh, -c, {script:?}]\n      resources: {{{resources}}}\n",
        image.display()
    )
}

/// Unix time in milliseconds (as in the agent's reports).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
