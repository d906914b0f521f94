use std::path::Path;

use drover_protocol::{
    ContainerSpec, EnvVar, HostDevice, Mount as SpecMount, MountSource, Name, NetworkMode,
    Resources, RestartPolicy, WorkloadSpec,
};
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Spec};

use super::*;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      # comment\n\
                      app:x:1000:1001:app:/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\nstaff:x:1001:\nvideo:x:44:app,other\ni2c:x:998:app\n";

fn name(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

fn container() -> ContainerSpec {
    ContainerSpec::new(
        name("main"),
        drover_protocol::ImageRef::new("oci:/img").expect("valid image"),
    )
}

fn workload(c: ContainerSpec, network: NetworkMode) -> WorkloadSpec {
    WorkloadSpec {
        name: name("web"),
        containers: vec![c],
        restart_policy: RestartPolicy::Always,
        network,
        volumes: vec![name("data")],
        stop_grace_ms: 1000,
        labels: Default::default(),
        depends_on: vec![],
        revision: 0,
        health_timeout_ms: 0,
        min_ready_ms: 0,
        fallback: None,
    }
}

fn image() -> ImageProcess {
    ImageProcess {
        entrypoint: vec!["/bin/server".to_string()],
        cmd: vec!["--port".to_string(), "80".to_string()],
        env: vec!["PATH=/bin".to_string(), "MODE=prod".to_string()],
        working_dir: Some("/srv".to_string()),
        user: None,
        healthcheck: None,
    }
}

fn build(wl: &WorkloadSpec, img: &ImageProcess, netns: Option<&Path>) -> Result<Spec, SpecError> {
    runtime_spec(&SpecInput {
        workload: wl,
        container: &wl.containers[0],
        image: img,
        rootfs: Path::new("/var/lib/drover/containers/web.main/rootfs"),
        cgroups_path: "/drover/web/main",
        netns,
        volumes_dir: Path::new("/var/lib/drover/volumes/web"),
        hostname: "web",
        etc_files: None,
        files: &[],
        passwd: Some(PASSWD),
        group: Some(GROUP),
        swap_accounting: true,
    })
}

fn process(spec: &Spec) -> &oci_spec::runtime::Process {
    spec.process().as_ref().expect("process")
}

#[test]
fn image_defaults_make_the_process() {
    let wl = workload(container(), NetworkMode::Host);
    let spec = build(&wl, &image(), None).expect("spec");
    let p = process(&spec);
    let args = p.args().clone().expect("args");
    assert_eq!(args, ["/bin/server", "--port", "80"]);
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert_eq!(p.user().uid(), 0);
    assert_eq!(p.terminal(), Some(false));
    let env = p.env().clone().expect("env");
    assert_eq!(
        env,
        ["PATH=/bin", "MODE=prod", "HOME=/root", "HOSTNAME=web"]
    );
    let root = spec.root().as_ref().expect("root");
    assert_eq!(root.readonly(), Some(false));
    let linux = spec.linux().as_ref().expect("linux");
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/drover/web/main"))
    );
    let ns: Vec<_> = linux
        .namespaces()
        .clone()
        .expect("ns")
        .iter()
        .map(|n| n.typ())
        .collect();
    assert!(!ns.contains(&LinuxNamespaceType::Network));
    assert!(ns.contains(&LinuxNamespaceType::Pid) && ns.contains(&LinuxNamespaceType::Mount));
}

#[test]
fn spec_overrides_command_args_env_and_cwd() {
    let mut c = container();
    c.command = vec!["/bin/sh".to_string()];
    c.args = vec!["-c".to_string(), "true".to_string()];
    c.env = vec![
        EnvVar {
            name: "MODE".to_string(),
            value: "dev".to_string(),
        },
        EnvVar {
            name: "EXTRA".to_string(),
            value: "a=b".to_string(),
        },
    ];
    c.working_dir = Some("/tmp".to_string());
    let wl = workload(c, NetworkMode::Host);
    let mut img = image();
    img.env = vec!["MODE=prod".to_string()];
    let spec = build(&wl, &img, None).expect("spec");
    let p = process(&spec);
    assert_eq!(p.args().clone().expect("args"), ["/bin/sh", "-c", "true"]);
    assert_eq!(p.cwd(), Path::new("/tmp"));
    let env = p.env().clone().expect("env");
    assert_eq!(
        env,
        [
            DEFAULT_PATH,
            "MODE=dev",
            "EXTRA=a=b",
            "HOME=/root",
            "HOSTNAME=web"
        ]
    );
}

#[test]
fn empty_command_is_an_error_and_cwd_defaults_to_root() {
    let wl = workload(container(), NetworkMode::Host);
    let err = build(&wl, &ImageProcess::default(), None).expect_err("no command");
    assert!(err.to_string().contains("no command"), "{err}");
    let img = ImageProcess {
        cmd: vec!["sh".to_string()],
        ..ImageProcess::default()
    };
    let spec = build(&wl, &img, None).expect("spec");
    assert_eq!(process(&spec).cwd(), Path::new("/"));
}

#[test]
fn users_resolve_from_passwd_and_group() {
    let cases: [(&str, u32, u32, Option<Vec<u32>>); 6] = [
        ("1000", 1000, 1001, Some(vec![44, 998])),
        ("app", 1000, 1001, Some(vec![44, 998])),
        ("app:video", 1000, 44, None),
        ("1234:5678", 1234, 5678, None),
        ("4321", 4321, 0, None),
        ("", 0, 0, None),
    ];
    for (spec, uid, gid, extra) in cases {
        let u = user::resolve(Some(spec), Some(PASSWD), Some(GROUP)).expect(spec);
        assert_eq!((u.uid(), u.gid()), (uid, gid), "{spec}");
        assert_eq!(u.additional_gids().clone(), extra, "{spec}");
    }
    let err = user::resolve(Some("nobody"), Some(PASSWD), Some(GROUP)).expect_err("unknown");
    assert!(err.to_string().contains("no such user"), "{err}");
    let err = user::resolve(Some("app:nogroup"), Some(PASSWD), Some(GROUP)).expect_err("group");
    assert!(
        err.to_string().contains("no such group \"nogroup\""),
        "{err}"
    );
    assert!(user::resolve(Some("app"), None, None).is_err());
}

#[test]
fn network_none_joins_the_netns_by_path() {
    let wl = workload(container(), NetworkMode::None);
    assert!(matches!(
        build(&wl, &image(), None),
        Err(SpecError::NetnsMissing)
    ));
    let spec = build(&wl, &image(), Some(Path::new("/s/netns/web"))).expect("spec");
    let linux = spec.linux().as_ref().expect("linux");
    let ns = linux.namespaces().clone().expect("ns");
    let net = ns
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .expect("net ns");
    assert_eq!(net.path().as_deref(), Some(Path::new("/s/netns/web")));
}

#[test]
fn mounts_volume_hostpath_and_tmpfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = dir.path().to_string_lossy().to_string();
    let mut c = container();
    c.mounts = vec![
        SpecMount {
            source: MountSource::Volume(name("data")),
            target: "/data".into(),
            read_only: false,
        },
        SpecMount {
            source: MountSource::HostPath(host.clone()),
            target: "/h".into(),
            read_only: true,
        },
        SpecMount {
            source: MountSource::Tmpfs {
                size_bytes: 1 << 20,
            },
            target: "/t".into(),
            read_only: false,
        },
    ];
    let wl = workload(c, NetworkMode::Host);
    let spec = build(&wl, &image(), None).expect("spec");
    let mounts = spec.mounts().clone().expect("mounts");
    let find = |d: &str| {
        mounts
            .iter()
            .find(|m| m.destination() == Path::new(d))
            .expect(d)
    };
    assert!(find("/proc").typ().as_deref() == Some("proc"));
    let data = find("/data");
    assert_eq!(
        data.source().as_deref(),
        Some(Path::new("/var/lib/drover/volumes/web/data"))
    );
    assert!(
        data.options()
            .clone()
            .expect("opts")
            .contains(&"rw".to_string())
    );
    let h = find("/h");
    assert_eq!(h.source().as_deref(), Some(Path::new(&host)));
    let hopts = h.options().clone().expect("opts");
    assert!(hopts.contains(&"rbind".to_string()) && hopts.contains(&"ro".to_string()));
    let t = find("/t");
    assert_eq!(t.typ().as_deref(), Some("tmpfs"));
    assert!(
        t.options()
            .clone()
            .expect("opts")
            .contains(&"size=1048576".to_string())
    );
}

#[test]
fn bad_mounts_are_errors() {
    let missing = "/definitely/not/here/drover";
    let cases = [
        (
            MountSource::HostPath(missing.to_string()),
            "/x",
            "does not exist",
        ),
        (MountSource::Volume(name("other")), "/x", "no such volume"),
        (MountSource::Tmpfs { size_bytes: 1 }, "rel", "absolute"),
    ];
    for (source, target, want) in cases {
        let mut c = container();
        c.mounts = vec![SpecMount {
            source,
            target: target.to_string(),
            read_only: false,
        }];
        let wl = workload(c, NetworkMode::Host);
        let err = build(&wl, &image(), None).expect_err(want);
        assert!(err.to_string().contains(want), "{err}");
    }
}

#[test]
fn resources_become_limits() {
    let mut c = container();
    c.resources = Resources {
        memory_bytes: Some(64 << 20),
        cpu_millis: Some(500),
        pids: Some(32),
    };
    let wl = workload(c, NetworkMode::Host);
    let spec = build(&wl, &image(), None).expect("spec");
    let linux = spec.linux().as_ref().expect("linux");
    let r = linux.resources().as_ref().expect("resources");
    let mem = r.memory().as_ref().expect("memory");
    assert_eq!((mem.limit(), mem.swap()), (Some(64 << 20), Some(64 << 20)));
    let cpu = r.cpu().as_ref().expect("cpu");
    assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(100_000)));
    assert_eq!(r.pids().as_ref().expect("pids").limit(), 32);
    let no_swap = resources::resources(&wl.containers[0].resources, false, vec![]).expect("r");
    assert_eq!(no_swap.memory().as_ref().expect("memory").swap(), None);
}

#[test]
fn devices_deny_by_default_and_allow_host_devices() {
    let mut c = container();
    c.devices = vec![HostDevice {
        host_path: "/dev/null".to_string(),
        container_path: Some("/dev/mynull".to_string()),
        permissions: "rw".to_string(),
    }];
    let wl = workload(c, NetworkMode::Host);
    let spec = build(&wl, &image(), None).expect("spec");
    let linux = spec.linux().as_ref().expect("linux");
    let dev = &linux.devices().clone().expect("devices")[0];
    assert_eq!(dev.path(), Path::new("/dev/mynull"));
    assert_eq!(
        (dev.typ(), dev.major(), dev.minor()),
        (LinuxDeviceType::C, 1, 3)
    );
    let rules = linux
        .resources()
        .as_ref()
        .expect("r")
        .devices()
        .clone()
        .expect("rules");
    assert_eq!(rules[0].to_string(), "a *:* rwm");
    assert!(!rules[0].allow());
    assert!(rules.iter().any(|r| r.to_string() == "c 136:* rwm"));
    assert_eq!(rules.last().expect("last").to_string(), "c 1:3 rw");

    let mut c = container();
    c.devices = vec![HostDevice {
        host_path: "/dev/i2c-drover-missing".to_string(),
        container_path: None,
        permissions: "rw".to_string(),
    }];
    let wl = workload(c, NetworkMode::Host);
    let err = build(&wl, &image(), None).expect_err("missing device");
    assert!(err.to_string().contains("/dev/i2c-drover-missing"), "{err}");
}

#[test]
fn command_and_args_follow_kubernetes() {
    // The image: entrypoint ["/bin/server"], cmd ["--port", "80"].
    let cases: [(&[&str], &[&str], &[&str]); 4] = [
        (&[], &[], &["/bin/server", "--port", "80"]),
        (&["/bin/sleep", "3600"], &[], &["/bin/sleep", "3600"]),
        (&[], &["--port", "81"], &["/bin/server", "--port", "81"]),
        (&["/bin/sh"], &["-c", "true"], &["/bin/sh", "-c", "true"]),
    ];
    for (command, args, want) in cases {
        let mut c = container();
        c.command = command.iter().map(|s| (*s).to_owned()).collect();
        c.args = args.iter().map(|s| (*s).to_owned()).collect();
        let wl = workload(c, NetworkMode::Host);
        let spec = build(&wl, &image(), None).expect("spec");
        let got = process(&spec).args().clone().expect("args");
        assert_eq!(got, want, "command {command:?}, args {args:?}");
    }
}

#[test]
fn home_comes_from_the_images_passwd_else_slash() {
    use crate::runtime::spec::user::home;
    let passwd =
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnohome:x:7:7::\n";
    assert_eq!(home(None, Some(passwd)), "/root");
    assert_eq!(home(Some("app"), Some(passwd)), "/home/app");
    assert_eq!(home(Some("1000:1000"), Some(passwd)), "/home/app");
    assert_eq!(home(Some("nohome"), Some(passwd)), "/");
    assert_eq!(home(Some("4242"), Some(passwd)), "/");
    assert_eq!(home(None, None), "/");
}

#[test]
fn hosts_hostname_and_resolv_conf_are_bind_mounted_unless_the_spec_mounts_them() {
    let dir = Path::new("/state/containers/web.main/etc");
    let mut c = container();
    c.mounts = vec![drover_protocol::Mount {
        source: drover_protocol::MountSource::Tmpfs {
            size_bytes: 1 << 20,
        },
        target: "/etc/resolv.conf".into(),
        read_only: false,
    }];
    let wl = workload(c, NetworkMode::Host);
    let mut input_spec = build(&wl, &image(), None).expect("spec");
    assert!(
        !input_spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.destination() == Path::new("/etc/hosts")),
        "nothing without etc_files"
    );
    input_spec = runtime_spec(&SpecInput {
        workload: &wl,
        container: &wl.containers[0],
        image: &image(),
        rootfs: Path::new("/rootfs"),
        cgroups_path: "/drover/web/main",
        netns: None,
        volumes_dir: Path::new("/state/volumes/web"),
        hostname: "web",
        etc_files: Some(dir),
        files: &[],
        passwd: Some(PASSWD),
        group: Some(GROUP),
        swap_accounting: true,
    })
    .expect("spec");
    let mounts = input_spec.mounts().as_ref().unwrap();
    for name in ["hosts", "hostname"] {
        let m = mounts
            .iter()
            .find(|m| m.destination() == &Path::new("/etc").join(name))
            .expect(name);
        assert_eq!(m.source().as_deref(), Some(dir.join(name).as_path()));
    }
    let resolv: Vec<_> = mounts
        .iter()
        .filter(|m| m.destination() == Path::new("/etc/resolv.conf"))
        .collect();
    assert_eq!(resolv.len(), 1, "the spec's own mount wins");
    assert_eq!(resolv[0].typ().as_deref(), Some("tmpfs"));
}

#[test]
fn init_is_an_annotation_for_the_shim_and_absent_by_default() {
    let wl = workload(container(), NetworkMode::Host);
    let spec = build(&wl, &image(), None).expect("spec");
    let notes = spec.annotations().clone().unwrap_or_default();
    assert!(!notes.contains_key(INIT_ANNOTATION), "{notes:?}");
    let mut c = container();
    c.init = true;
    let spec = build(&workload(c, NetworkMode::Host), &image(), None).expect("spec");
    let notes = spec.annotations().clone().expect("annotations");
    assert_eq!(notes.get(INIT_ANNOTATION).map(String::as_str), Some("true"));
}

#[test]
fn probes_travel_to_the_shim_as_an_annotation() {
    let wl = workload(container(), NetworkMode::Host);
    let spec = build(&wl, &image(), None).expect("spec");
    assert_eq!(ContainerProbes::of(&spec), None);
    let mut c = container();
    c.readiness_probe = Some(drover_protocol::Probe::new(
        drover_protocol::ProbeAction::TcpSocket { port: 80 },
    ));
    let spec = build(&workload(c.clone(), NetworkMode::Host), &image(), None).expect("spec");
    let probes = ContainerProbes::of(&spec).expect("probes");
    assert_eq!(probes.readiness, c.readiness_probe);
    assert_eq!((probes.liveness, probes.startup), (None, None));
}

fn healthcheck(test: &[&str]) -> crate::image::healthcheck::ImageHealthcheck {
    crate::image::healthcheck::ImageHealthcheck {
        test: Some(test.iter().map(|s| s.to_string()).collect()),
        start_period: Some(5_000_000_000),
        ..Default::default()
    }
}

#[test]
fn the_image_healthcheck_is_the_readiness_probe_when_the_manifest_sets_none() {
    let wl = workload(container(), NetworkMode::Host);
    let img = ImageProcess {
        healthcheck: Some(Box::new(healthcheck(&["CMD-SHELL", "test -e /ready"]))),
        ..image()
    };
    let probes = ContainerProbes::of(&build(&wl, &img, None).expect("spec")).expect("probes");
    let p = probes.readiness.expect("readiness from HEALTHCHECK");
    assert_eq!(
        p.action,
        drover_protocol::ProbeAction::Exec {
            command: vec!["/bin/sh".into(), "-c".into(), "test -e /ready".into()]
        }
    );
    assert_eq!((p.initial_delay_s, p.period_s, p.timeout_s), (5, 30, 30));
    assert_eq!(
        (probes.liveness, probes.startup),
        (None, None),
        "never restarts, as in Docker"
    );
    let disabled = ImageProcess {
        healthcheck: Some(Box::new(healthcheck(&["NONE"]))),
        ..image()
    };
    assert_eq!(
        ContainerProbes::of(&build(&wl, &disabled, None).expect("spec")),
        None
    );
}

#[test]
fn any_manifest_probe_wins_over_the_image_healthcheck_and_they_are_never_mixed() {
    let mut c = container();
    c.liveness_probe = Some(drover_protocol::Probe::new(
        drover_protocol::ProbeAction::TcpSocket { port: 80 },
    ));
    let img = ImageProcess {
        // Even a broken HEALTHCHECK does not matter once the manifest sets a probe.
        healthcheck: Some(Box::new(healthcheck(&["BOGUS"]))),
        ..image()
    };
    let spec = build(&workload(c.clone(), NetworkMode::Host), &img, None).expect("spec");
    let probes = ContainerProbes::of(&spec).expect("probes");
    assert_eq!(probes.liveness, c.liveness_probe);
    assert_eq!((probes.readiness, probes.startup), (None, None));
}

#[test]
fn a_broken_image_healthcheck_refuses_the_start_and_says_how_to_override_it() {
    let wl = workload(container(), NetworkMode::Host);
    let img = ImageProcess {
        healthcheck: Some(Box::new(healthcheck(&["CMD"]))),
        ..image()
    };
    let err = build(&wl, &img, None).expect_err("bad HEALTHCHECK");
    assert!(matches!(err, SpecError::Healthcheck(_)), "{err:?}");
    assert!(
        err.to_string().contains("set a probe in the manifest"),
        "{err}"
    );
}

/// Bounding set (names without `CAP_`), effective set size, and whether ambient and
/// inheritable are empty; permitted must equal effective.
fn caps_of(spec: &Spec) -> (Vec<String>, usize, bool) {
    let caps = process(spec).capabilities().clone().expect("capabilities");
    let mut names: Vec<String> = caps
        .bounding()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|c| c.to_string())
        .collect();
    names.sort();
    let effective = caps.effective().clone().unwrap_or_default();
    assert_eq!(caps.permitted().clone().unwrap_or_default(), effective);
    let none = caps.ambient().clone().unwrap_or_default().is_empty()
        && caps.inheritable().clone().unwrap_or_default().is_empty();
    (names, effective.len(), none)
}

#[test]
fn containers_are_confined_like_dockers_by_default() {
    let wl = workload(container(), NetworkMode::Host);
    let spec = build(&wl, &image(), None).expect("spec");
    let (caps, effective, none_ambient) = caps_of(&spec);
    assert_eq!((caps.len(), effective), (14, 14), "{caps:?}");
    assert!(caps.iter().any(|c| c == "NET_BIND_SERVICE"), "{caps:?}");
    assert!(!caps.iter().any(|c| c == "SYS_ADMIN"), "{caps:?}");
    assert!(none_ambient);
    assert_eq!(process(&spec).no_new_privileges(), Some(true));
    let linux = spec.linux().as_ref().expect("linux");
    let masked = linux.masked_paths().clone().expect("masked");
    assert!(masked.contains(&"/sys/devices/virtual/powercap".to_string()));
    assert!(masked.contains(&"/proc/kcore".to_string()));
    let ro = linux.readonly_paths().clone().expect("readonly");
    assert!(ro.contains(&"/proc/sys".to_string()));
    assert!(ro.contains(&"/sys/fs/cgroup".to_string()));
    assert!(linux.seccomp().is_some());
    let mounts = spec.mounts().clone().expect("mounts");
    let opts = |dest: &str| {
        let m = mounts.iter().find(|m| m.destination() == Path::new(dest));
        m.and_then(|m| m.options().clone()).unwrap_or_default()
    };
    assert!(opts("/sys").contains(&"ro".to_string()));
    for o in ["nosuid", "noexec", "nodev"] {
        assert!(opts("/proc").contains(&o.to_string()), "/proc {o}");
    }
    assert_eq!(spec.root().as_ref().expect("root").readonly(), Some(false));
}

#[test]
fn bind_mounts_are_nosuid_and_nodev() {
    let mut c = container();
    c.mounts.push(SpecMount {
        source: MountSource::Volume(name("data")),
        target: "/data".into(),
        read_only: false,
    });
    let wl = workload(c, NetworkMode::Host);
    let spec = build(&wl, &image(), None).expect("spec");
    let mounts = spec.mounts().clone().expect("mounts");
    let data = mounts
        .iter()
        .find(|m| m.destination() == Path::new("/data"))
        .expect("data");
    let opts = data.options().clone().expect("opts");
    assert!(opts.contains(&"nosuid".to_string()) && opts.contains(&"nodev".to_string()));
}

#[test]
fn security_context_sets_user_caps_and_read_only_root() {
    let mut c = container();
    c.security.run_as_user = Some(1234);
    c.security.run_as_group = Some(99);
    c.security.read_only_root_filesystem = true;
    c.security.cap_drop = vec!["ALL".into()];
    c.security.cap_add = vec!["NET_ADMIN".into()];
    let wl = workload(c, NetworkMode::Host);
    let spec = build(&wl, &image(), None).expect("spec");
    let user = process(&spec).user();
    assert_eq!((user.uid(), user.gid()), (1234, 99));
    // A non-root user holds none of them, only the bounding set.
    assert_eq!(caps_of(&spec).0, ["NET_ADMIN"]);
    assert_eq!(caps_of(&spec).1, 0);
    assert_eq!(spec.root().as_ref().expect("root").readonly(), Some(true));
}

#[test]
fn privileged_gets_all_caps_no_seccomp_and_no_masks() {
    let mut c = container();
    c.security.privileged = true;
    let wl = workload(c, NetworkMode::Host);
    let spec = build(&wl, &image(), None).expect("spec");
    // Every capability the agent itself may pass on (its bounding set).
    let (caps, effective, _) = caps_of(&spec);
    assert!(
        caps.len() > 14 && caps.iter().any(|c| c == "SYS_ADMIN"),
        "{caps:?}"
    );
    assert_eq!(effective, caps.len());
    let linux = spec.linux().as_ref().expect("linux");
    assert!(linux.seccomp().is_none());
    assert!(linux.masked_paths().is_none() && linux.readonly_paths().is_none());
    assert_eq!(process(&spec).no_new_privileges(), Some(false));
}

#[test]
fn kernel_releases_compare_by_major_and_minor() {
    assert!(hardening::release_at_least("6.1.0-rpi7-rpi-v8", (4, 8)));
    assert!(hardening::release_at_least("4.8.0", (4, 8)));
    assert!(!hardening::release_at_least("4.4.302", (4, 8)));
    assert!(!hardening::release_at_least("garbage", (4, 8)));
}

#[test]
fn cgroup_hierarchies_are_the_mount_points_right_below_sys_fs_cgroup() {
    let mounts: Vec<std::path::PathBuf> = [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup/memory",
        "/mnt/elsewhere/cpuset",
        "/sys/fs/cgroup/pids/nested",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .collect();
    assert_eq!(
        hardening::cgroup_hierarchies(&mounts),
        [
            "/sys/fs/cgroup/cpu,cpuacct",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/systemd"
        ]
    );
}
