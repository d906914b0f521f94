//! The shared set-up: an agent on fakes, the clones a test scripts and inspects, and
//! workload specs. "Restarting the agent" builds a new one on clones of the same fakes.

use std::sync::Arc;
use std::time::Duration;

use drover_protocol::{
    ContainerSpec, DeviceStatus, ImageRef, Name, NetworkMode, Phase, RestartPolicy, WorkloadSpec,
    WorkloadStatus,
};

use crate::clock::{Clock, FakeClock};
use crate::config::AgentConfig;
use crate::daemon::{Agent, Ports};
use crate::host::fake::FakeHost;
use crate::image::fake::FakeImages;
use crate::runtime::fake::{FakeRuntime, RuntimeCall};
use crate::state::memory::MemoryStateStore;
use crate::state::{StatePaths, WorkloadRecord};

/// The state folder the agent believes it has (nothing touches the disk).
pub const STATE_DIR: &str = "/state";
/// Where the boot clock stands when a test begins.
pub const BOOT0: u64 = 100_000;
/// Where the wall clock stands when a test begins (2023-11-14).
pub const WALL0: u64 = 1_700_000_000_000;

/// An agent on fakes, and the clones of the fakes the test holds.
pub struct Fx {
    pub clock: FakeClock,
    pub rt: FakeRuntime,
    pub images: FakeImages,
    pub state: MemoryStateStore,
    pub host: FakeHost,
    pub agent: Agent,
}

pub fn config() -> AgentConfig {
    AgentConfig {
        device: n("pi"),
        state_dir: STATE_DIR.into(),
        manifests_dir: None,
        hub: None,
        ..AgentConfig::default_for_host()
    }
}

fn agent(
    cfg: AgentConfig,
    clock: &FakeClock,
    rt: &FakeRuntime,
    images: &FakeImages,
    state: &MemoryStateStore,
    host: &FakeHost,
) -> Agent {
    let ports = Ports {
        runtime: Box::new(rt.clone()),
        images: Box::new(images.clone()),
        state: Box::new(state.clone()),
        host: Box::new(host.clone()),
        clock: Arc::new(clock.clone()),
    };
    Agent::with_ports(cfg, ports)
}

impl Fx {
    /// A fresh device: nothing created; images `oci:/img/a`, `oci:/img/b`, `oci:/img/c`
    /// can be pulled (digests `sha256:a`, …).
    pub fn new() -> Fx {
        let clock = FakeClock::new(BOOT0, WALL0);
        let rt = FakeRuntime::new(clock.clone());
        let images = FakeImages::default();
        for x in ["a", "b", "c"] {
            images.add(&img(x), &digest(x));
        }
        let (state, host) = (MemoryStateStore::default(), FakeHost::default());
        let agent = agent(config(), &clock, &rt, &images, &state, &host);
        Fx {
            clock,
            rt,
            images,
            state,
            host,
            agent,
        }
    }

    /// A new agent on the same fakes, as after `systemctl restart drover-agent`.
    pub fn restart(&mut self) {
        let cfg = self.agent.cfg.clone();
        self.agent = agent(
            cfg,
            &self.clock,
            &self.rt,
            &self.images,
            &self.state,
            &self.host,
        );
    }

    /// One reconcile pass; its wake-up.
    pub fn pass(&mut self) -> Option<Duration> {
        self.agent.reconcile()
    }

    /// The status the pass queued for the hub, if any.
    pub fn published(&mut self) -> Option<DeviceStatus> {
        self.agent.take_status()
    }

    /// Static workloads `specs` are created and running after one pass (pulls not held);
    /// the calls and the queued status are consumed.
    pub fn run(&mut self, specs: Vec<WorkloadSpec>) {
        let names: Vec<Name> = specs.iter().map(|s| s.name.clone()).collect();
        self.agent.set_static_desired(specs);
        self.pass();
        for name in names {
            assert_eq!(self.phase(name.as_str()), Phase::Running, "{name} runs");
        }
        self.rt.take_calls();
        self.host.take_calls();
        self.published();
    }

    /// The last written report's status of workload `name`.
    pub fn workload(&self, name: &str) -> WorkloadStatus {
        let report = self.state.report().expect("a report was written");
        report
            .status
            .workloads
            .into_iter()
            .find(|w| w.name.as_str() == name)
            .unwrap_or_else(|| panic!("{name} is in the report"))
    }

    pub fn phase(&self, name: &str) -> Phase {
        self.workload(name).phase
    }

    /// The stored record of workload `name`.
    pub fn record(&self, name: &str) -> Option<WorkloadRecord> {
        self.state.records().get(&n(name)).cloned()
    }

    pub fn boot(&self) -> u64 {
        self.clock.boot_ms()
    }

    pub fn paths(&self) -> StatePaths {
        StatePaths::of(&config())
    }
}

pub fn n(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

/// Image reference `oci:/img/{x}`.
pub fn img(x: &str) -> String {
    format!("oci:/img/{x}")
}

pub fn digest(x: &str) -> String {
    format!("sha256:{x}")
}

/// Workload `name` with one container `app` running image `x`, restart policy Always,
/// host network, a 3 s grace period.
pub fn wl(name: &str, x: &str) -> WorkloadSpec {
    WorkloadSpec {
        name: n(name),
        containers: vec![ContainerSpec::new(
            n("app"),
            ImageRef::new(img(x)).expect("valid image"),
        )],
        restart_policy: RestartPolicy::Always,
        network: NetworkMode::Host,
        volumes: vec![],
        stop_grace_ms: 3_000,
        labels: Default::default(),
        depends_on: vec![],
        revision: 0,
        health_timeout_ms: 0,
        min_ready_ms: 0,
        fallback: None,
    }
}

/// The id of workload `name`'s container `app`.
pub fn id(name: &str) -> String {
    format!("{name}.app")
}

pub fn start(name: &str) -> RuntimeCall {
    RuntimeCall::Start { id: id(name) }
}

pub fn clear(name: &str) -> RuntimeCall {
    RuntimeCall::Clear { id: id(name) }
}

/// The starts among `calls`.
pub fn starts(calls: &[RuntimeCall]) -> Vec<&RuntimeCall> {
    calls
        .iter()
        .filter(|c| matches!(c, RuntimeCall::Start { .. }))
        .collect()
}

pub fn ms(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_millis() as u64)
}
