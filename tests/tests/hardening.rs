//! End-to-end: containers are confined by default (Docker's capabilities, seccomp
//! profile, no new privileges, masked paths) and the agent's `[security]` and the hub's
//! `[policy]` refuse host paths, devices and `privileged` they do not allow. Real agents,
//! real containers; a small static C probe (built here with `cc -static`) makes the raw
//! syscalls and prints each errno. Needs root.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use drover_tests::agent::{TestAgent, last_error};
use drover_tests::hub::TestHub;
use drover_tests::oci::{LayerBuilder, busybox_layer, write_layout};
use drover_tests::{require_root, wait_for};

const T: Duration = Duration::from_secs(30);

/// Makes each call a confined container must not be able to make; `argv[1]` is a host
/// pid (the agent's), which the container's pid namespace must not even show.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *what, long rc) {
    if (rc == 0) printf("%s: ok\n", what);
    else printf("%s: %s\n", what, strerror(errno));
}

int main(int argc, char **argv) {
    int host = argc > 1 ? atoi(argv[1]) : 1;
    report("mount", mount("none", "/mnt", "tmpfs", 0, NULL));
    report("init_module", syscall(SYS_init_module, "\0asm", 4, ""));
    int fd = open("/bin/busybox", O_RDONLY);
    report("finit_module", syscall(SYS_finit_module, fd, "", 0));
    report("ptrace_host", ptrace(PTRACE_ATTACH, host, 0, 0));
    report("unshare_user", unshare(CLONE_NEWUSER));
    report("keyctl", syscall(SYS_keyctl, 0, -3, 0));
    fflush(stdout);
    return 0;
}
"#;

/// A layout tagged `latest` in `dir`: busybox plus `/bin/probe`.
fn probe_image(dir: &Path) -> PathBuf {
    let src = dir.join("probe.c");
    fs::write(&src, PROBE_C).unwrap();
    let bin = dir.join("probe");
    let out = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("cc (apt-get install gcc libc6-dev)");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe = LayerBuilder::new()
        .add_dir("bin", 0o755)
        .add_file("bin/probe", &fs::read(&bin).unwrap(), 0o755)
        .add_dir("mnt", 0o755)
        .finish();
    let image = dir.join("probe-image");
    let config = serde_json::json!({ "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"] });
    write_layout(&image, "latest", &[busybox_layer().unwrap(), probe], config).unwrap();
    image
}

/// A Workload running `script` once, with `extra` YAML at the container's indentation.
fn workload(name: &str, image: &Path, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  \
         restartPolicy: Never\n  containers:\n    - name: main\n      image: oci:{}:latest\n\
         {extra}      command: [/bin/sh, -c, {script:?}]\n",
        image.display()
    )
}

/// The container's output once it printed `END`.
fn output(a: &TestAgent, wl: &str) -> String {
    let log = a.state.join("logs").join(wl).join("main.log");
    wait_for(&format!("{wl} to finish"), T, || {
        fs::read_to_string(&log).ok().filter(|t| t.contains("END"))
    })
}

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

#[test]
fn a_default_container_is_confined_and_a_privileged_one_is_not() {
    if !require_root("a_default_container_is_confined_and_a_privileged_one_is_not") {
        return;
    }
    let mut a = TestAgent::new("confined");
    let image = probe_image(a.dir.path());
    let secret = a.dir.path().join("host-secret");
    fs::write(&secret, "host only").unwrap();
    a.append_config("[security]\nallow_privileged = true\n");
    a.start();
    let agent_pid = a.pid().unwrap();
    let script = format!(
        "grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status; /bin/probe {agent_pid}; \
         mount -t tmpfs none /mnt; echo busybox_mount=$?; insmod /bin/busybox; \
         echo busybox_insmod=$?; cat {} 2>/dev/null; echo secret=$?; \
         echo timer_list=$(wc -c < /proc/timer_list); \
         touch /sys/x 2>/dev/null && echo sysfs=rw || echo sysfs=ro; \
         for f in memory/memory.limit_in_bytes pids/pids.max cpu/cpu.cfs_quota_us; do \
         [ -e /sys/fs/cgroup/$f ] && {{ echo 999999999 > /sys/fs/cgroup/$f 2>/dev/null \
         && echo cg_$f=rw || echo cg_$f=ro; }}; done; \
         d=/sys/fs/cgroup/systemd/drover-escape-$$; mkdir $d 2>/dev/null \
         && {{ rmdir $d; echo cg_mkdir=rw; }} || echo cg_mkdir=ro; \
         echo END",
        secret.display()
    );
    a.write_manifest("plain.yaml", &workload("plain", &image, &script, ""));
    let privileged = "      securityContext: {privileged: true}\n";
    a.write_manifest("priv.yaml", &workload("priv", &image, &script, privileged));

    let out = output(&a, "plain");
    assert_eq!(line(&out, "Seccomp:"), "Seccomp:\t2", "{out}");
    assert_eq!(line(&out, "NoNewPrivs:"), "NoNewPrivs:\t1", "{out}");
    // Docker's 14 capabilities: bits 0-8 (not 2, DAC_READ_SEARCH), 10, 13, 18, 27, 29, 31.
    assert_eq!(line(&out, "CapEff:"), "CapEff:\t00000000a80425fb", "{out}");
    for denied in [
        "mount",
        "init_module",
        "finit_module",
        "unshare_user",
        "keyctl",
    ] {
        let l = line(&out, &format!("{denied}: "));
        assert_eq!(l, format!("{denied}: Operation not permitted"), "{out}");
    }
    // The agent's pid does not exist in the container's namespace: nothing to trace.
    assert_eq!(
        line(&out, "ptrace_host: "),
        "ptrace_host: No such process",
        "{out}"
    );
    assert_ne!(line(&out, "busybox_mount="), "busybox_mount=0", "{out}");
    assert_ne!(line(&out, "busybox_insmod="), "busybox_insmod=0", "{out}");
    assert_eq!(line(&out, "secret="), "secret=1", "{out}");
    // Masked (/dev/null over it); the host's is kilobytes long.
    assert!(
        fs::metadata("/proc/timer_list").is_ok(),
        "this kernel has no /proc/timer_list"
    );
    assert_eq!(line(&out, "timer_list="), "timer_list=0", "{out}");
    assert_eq!(line(&out, "sysfs="), "sysfs=ro", "{out}");
    // Its own cgroup limits are read-only (libcontainer mounts v1 hierarchies read-write
    // unless the agent asks again): no raising its memory, pids or cpu limit.
    let cg: Vec<&str> = out.lines().filter(|l| l.starts_with("cg_")).collect();
    assert!(cg.len() >= 3, "no cgroup files probed:\n{out}");
    assert!(cg.iter().all(|l| l.ends_with("=ro")), "{out}");

    // The same probe, privileged: the confinement above is what made the difference.
    let out = output(&a, "priv");
    assert_eq!(line(&out, "Seccomp:"), "Seccomp:\t0", "{out}");
    assert_eq!(line(&out, "NoNewPrivs:"), "NoNewPrivs:\t0", "{out}");
    assert_eq!(line(&out, "mount: "), "mount: ok", "{out}");
    assert_eq!(line(&out, "unshare_user: "), "unshare_user: ok", "{out}");
    assert_eq!(line(&out, "secret="), "secret=1", "{out}");
    assert_ne!(line(&out, "timer_list="), "timer_list=0", "{out}");
    assert_eq!(line(&out, "cg_mkdir="), "cg_mkdir=rw", "{out}");
}

#[test]
fn security_context_sets_user_group_and_a_read_only_root() {
    if !require_root("security_context_sets_user_group_and_a_read_only_root") {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("secctx");
    a.start();
    let script = "echo uid=$(id -u) gid=$(id -g); touch /x 2>&1; echo touch=$?; \
                  echo tmp > /tmp/y 2>&1; echo tmp=$?; \
                  grep CapEff /proc/self/status; echo END";
    let ctx = "      securityContext:\n        runAsUser: 1000\n        runAsGroup: 1000\n        \
               readOnlyRootFilesystem: true\n        capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}\n";
    a.write_manifest("ro.yaml", &workload("ro", &image, script, ctx));
    let out = output(&a, "ro");
    assert_eq!(line(&out, "uid="), "uid=1000 gid=1000", "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(line(&out, "touch="), "touch=1", "{out}");
    // Only the rootfs is read-only; the image's /tmp is part of it.
    assert_eq!(line(&out, "tmp="), "tmp=1", "{out}");
    // A non-root user gets no effective capabilities (as with Docker), only a bounding set.
    assert_eq!(line(&out, "CapEff:"), "CapEff:\t0000000000000000", "{out}");

    let (mut b, image) = TestAgent::with_busybox("secctxroot");
    b.start();
    let yaml = workload(
        "caps",
        &image,
        "grep CapEff /proc/self/status; echo END",
        "      securityContext:\n        capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}\n",
    );
    b.write_manifest("caps.yaml", &yaml);
    let out = output(&b, "caps");
    assert_eq!(line(&out, "CapEff:"), "CapEff:\t0000000000000400", "{out}");
}

#[test]
fn the_agent_refuses_what_its_policy_does_not_allow_and_keeps_the_rest_running() {
    if !require_root("the_agent_refuses_what_its_policy_does_not_allow_and_keeps_the_rest_running")
    {
        return;
    }
    let (mut a, image) = TestAgent::with_busybox("policy");
    let data = a.dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    a.append_config(&format!(
        "[security]\nhost_paths = [\"{}\"]\n",
        a.dir.path().display()
    ));
    a.start();
    let sleeper = "echo up; exec sleep 3600";
    let mount = |p: &Path| {
        format!(
            "      mounts: [{{hostPath: {}, mountPath: /host}}]\n",
            p.display()
        )
    };
    let good = workload("good", &image, sleeper, &mount(&data)).replace("Never", "Always");
    a.write_manifest("good.yaml", &good);
    let pid = a.wait_running("good", "main", T);
    let refused = [
        ("root", PathBuf::from("/"), "/ is never allowed"),
        ("state", a.state.join("volumes"), "is never allowed"),
        (
            "etc",
            PathBuf::from("/etc"),
            "not below any allowed host path",
        ),
    ];
    for (wl, path, why) in &refused {
        a.write_manifest(
            &format!("{wl}.yaml"),
            &workload(wl, &image, sleeper, &mount(path)),
        );
        let err = wait_for(&format!("{wl} to be refused"), T, || {
            let e = last_error(&a.ps()?, wl);
            e.contains("[security] policy").then_some(e)
        });
        assert!(err.contains(why), "{wl}: {err}");
    }
    let privileged = "      securityContext: {privileged: true}\n";
    a.write_manifest("priv.yaml", &workload("priv", &image, sleeper, privileged));
    let err = wait_for("priv to be refused", T, || {
        let e = last_error(&a.ps()?, "priv");
        e.contains("[security] policy").then_some(e)
    });
    assert!(err.contains("privileged is not allowed"), "{err}");
    let caps = "      securityContext: {capabilities: {add: [SYS_ADMIN]}}\n";
    a.write_manifest("caps.yaml", &workload("caps", &image, sleeper, caps));
    let err = wait_for("caps to be refused", T, || {
        let e = last_error(&a.ps()?, "caps");
        e.contains("[security] policy").then_some(e)
    });
    assert!(
        err.contains("SYS_ADMIN") && err.contains("allowed_capabilities"),
        "{err}"
    );
    // Nothing of the refused workloads was ever set up; the good one kept running.
    for wl in ["root", "state", "etc", "priv", "caps"] {
        let id = format!("{wl}.main");
        assert!(
            !a.state.join("containers").join(&id).exists(),
            "{wl} was set up"
        );
        assert!(
            !a.run_dir().join("containers").join(&id).exists(),
            "{wl} was set up"
        );
    }
    assert_eq!(a.running_pid("good", "main"), Some(pid));
}

#[test]
fn the_hub_refuses_at_apply_what_its_policy_does_not_allow() {
    let mut hub = TestHub::new();
    hub.append_config("[policy]\nhost_paths = [\"/srv\"]\n");
    hub.start();
    let yaml = |mount: &str| {
        format!(
            "apiVersion: drover.dev/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  \
             selector: {{matchLabels: {{app: web}}}}\n  template:\n    spec:\n      containers:\n\
             \x20       - name: main\n          image: busybox\n          mounts: [{{hostPath: {mount}, mountPath: /host}}]\n"
        )
    };
    let (code, _, err) = hub.apply("fleet.yaml", &yaml("/"));
    assert_ne!(code, 0);
    let want = ":10:18: refused by the hub's [policy]: container main: hostPath \"/\"";
    assert!(err.contains("fleet.yaml") && err.contains(want), "{err}");
    let (code, _, err) = hub.apply("fleet.yaml", &yaml("/etc"));
    assert_ne!(code, 0);
    assert!(err.contains("not below any allowed host path"), "{err}");
    let (code, out, err) = hub.apply("fleet.yaml", &yaml("/srv/data"));
    assert_eq!(code, 0, "{out}{err}");
    // Capabilities beyond Docker's set need `allowed_capabilities` (SYS_ADMIN would give
    // the container the host through cgroup v1's release_agent).
    let caps = yaml("/srv/data").replace(
        "          mounts:",
        "          securityContext: {capabilities: {add: [SYS_ADMIN]}}\n          mounts:",
    );
    let (code, _, err) = hub.apply("fleet.yaml", &caps);
    assert_ne!(code, 0);
    assert!(
        err.contains("SYS_ADMIN") && err.contains("allowed_capabilities"),
        "{err}"
    );
}
