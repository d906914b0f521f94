#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::*;
use crate::manifest::parse_workloads;
use crate::{ContainerSpec, HostDevice, ImageRef, Mount};

fn workload(yaml_container: &str) -> WorkloadSpec {
    let text = format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {{name: web}}\nspec:\n  containers:\n    - name: main\n      image: x\n{yaml_container}"
    );
    parse_workloads("web.yaml", &text).unwrap().remove(0)
}

fn parse_err(yaml_container: &str) -> String {
    let text = format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata: {{name: web}}\nspec:\n  containers:\n    - name: main\n      image: x\n{yaml_container}"
    );
    parse_workloads("web.yaml", &text).unwrap_err().to_string()
}

fn with_host_path(path: &str) -> WorkloadSpec {
    let mut c = ContainerSpec::new(Name::new("main").unwrap(), ImageRef::new("x").unwrap());
    c.mounts.push(Mount {
        source: MountSource::HostPath(path.into()),
        target: "/mnt".into(),
        read_only: false,
    });
    WorkloadSpec::new(Name::new("web").unwrap(), vec![c])
}

fn same(p: &str) -> String {
    p.to_owned()
}

fn policy(paths: &[&str]) -> SecurityPolicy {
    SecurityPolicy {
        host_paths: paths.iter().map(|p| p.to_string()).collect(),
        devices: vec!["/dev/i2c-1".into(), "/dev/ttyUSB*".into()],
        allow_privileged: false,
        allowed_capabilities: vec![],
    }
}

#[test]
fn security_context_parses_with_kubernetes_names() {
    let w = workload(
        "      securityContext:\n        runAsUser: 1000\n        runAsGroup: 100\n        readOnlyRootFilesystem: true\n        capabilities: {add: [net_admin, CAP_SYS_TIME], drop: [ALL]}\n",
    );
    let s = &w.containers[0].security;
    assert_eq!(s.run_as_user, Some(1000));
    assert_eq!(s.run_as_group, Some(100));
    assert!(s.read_only_root_filesystem && !s.privileged);
    assert_eq!(s.cap_add, ["NET_ADMIN", "SYS_TIME"]);
    assert_eq!(s.cap_drop, ["ALL"]);
    assert_eq!(s.capabilities(), ["NET_ADMIN", "SYS_TIME"]);
}

#[test]
fn security_context_errors_are_located() {
    let e = parse_err("      securityContext:\n        capabilities: {add: [NET_ADMIN, FLY]}\n");
    assert!(
        e.starts_with("web.yaml:9:41: unknown capability \"FLY\""),
        "{e}"
    );
    let e = parse_err("      securityContext: {runAsUser: -1}\n");
    assert!(e.starts_with("web.yaml:8:"), "{e}");
    let e = parse_err("      securityContext: {runAsUsr: 1}\n");
    assert!(
        e.starts_with("web.yaml:8:") && e.contains("runAsUsr"),
        "{e}"
    );
}

#[test]
fn default_capabilities_are_dockers_and_privileged_gets_all() {
    let none = SecurityContext::default();
    let mut want: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    want.sort();
    let mut got = none.capabilities();
    got.sort();
    assert_eq!(got, want);
    let dropped = SecurityContext {
        cap_drop: vec!["NET_RAW".into()],
        ..Default::default()
    };
    assert!(!dropped.capabilities().contains(&"NET_RAW"));
    let privileged = SecurityContext {
        privileged: true,
        cap_drop: vec!["ALL".into()],
        ..Default::default()
    };
    assert_eq!(privileged.capabilities().len(), CAPABILITIES.len());
}

#[test]
fn root_and_never_paths_are_refused_whatever_the_allow_list() {
    let p = policy(&["/"]);
    let state = Path::new("/var/lib/drover");
    let never = [state];
    for bad in [
        "/",
        "/var",
        "/var/lib",
        "/var/lib/drover",
        "/var/lib/drover/keys",
    ] {
        let e = p.check(&with_host_path(bad), &never, &same).unwrap_err();
        assert!(e.what.contains("never allowed"), "{bad}: {e}");
    }
    assert!(p.check(&with_host_path("/srv/data"), &never, &same).is_ok());
    assert!(
        p.check(&with_host_path("/var/lib/other"), &never, &same)
            .is_ok()
    );
}

#[test]
fn host_paths_must_be_below_an_allowed_prefix() {
    let p = policy(&["/srv/data"]);
    assert!(p.check(&with_host_path("/srv/data"), &[], &same).is_ok());
    assert!(p.check(&with_host_path("/srv/data/a"), &[], &same).is_ok());
    let e = p
        .check(&with_host_path("/srv/database"), &[], &same)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "container main: hostPath \"/srv/database\" (mountPath /mnt): not below any allowed host path"
    );
    assert!(
        SecurityPolicy::default()
            .check(&with_host_path("/srv/data"), &[], &same)
            .is_err()
    );
}

#[test]
fn a_symlink_to_a_forbidden_path_is_refused() {
    let p = policy(&["/srv"]);
    let resolve = |h: &str| {
        if h == "/srv/link" {
            "/".to_owned()
        } else {
            h.to_owned()
        }
    };
    let e = p
        .check(&with_host_path("/srv/link"), &[], &resolve)
        .unwrap_err();
    assert!(e.what.contains("/ is never allowed"), "{e}");
}

#[test]
fn devices_and_privileged_follow_the_policy() {
    let p = policy(&[]);
    let mut w = with_host_path("/x");
    w.containers[0].mounts.clear();
    for (dev, ok) in [
        ("/dev/i2c-1", true),
        ("/dev/ttyUSB3", true),
        ("/dev/mem", false),
    ] {
        w.containers[0].devices = vec![HostDevice {
            host_path: dev.into(),
            container_path: None,
            permissions: "rw".into(),
        }];
        assert_eq!(p.check(&w, &[], &same).is_ok(), ok, "{dev}");
    }
    w.containers[0].devices.clear();
    w.containers[0].security.privileged = true;
    assert!(p.check(&w, &[], &same).is_err());
    let allow = SecurityPolicy {
        allow_privileged: true,
        ..p
    };
    assert!(allow.check(&w, &[], &same).is_ok());
}

#[test]
fn the_fallback_revision_is_checked_too() {
    let p = policy(&["/srv"]);
    let mut w = with_host_path("/srv/a");
    w.fallback = Some(Box::new(with_host_path("/etc")));
    assert!(p.check(&w, &[], &same).is_err());
}

#[test]
fn capabilities_beyond_dockers_set_need_the_policy() {
    let p = policy(&[]);
    let mut w = with_host_path("/x");
    w.containers[0].mounts.clear();
    // Re-adding a default one, or dropping, needs nothing.
    w.containers[0].security.cap_drop = vec!["ALL".into()];
    w.containers[0].security.cap_add = vec!["NET_BIND_SERVICE".into()];
    assert!(p.check(&w, &[], &same).is_ok());
    for add in ["SYS_ADMIN", "ALL"] {
        w.containers[0].security.cap_add = vec![add.into()];
        let e = p.check(&w, &[], &same).unwrap_err();
        assert!(e.what.contains("SYS_ADMIN"), "{e}");
        assert!(e.what.contains("allowed_capabilities"), "{e}");
    }
    let net = SecurityPolicy {
        allowed_capabilities: vec!["NET_ADMIN".into()],
        ..p.clone()
    };
    w.containers[0].security.cap_add = vec!["NET_ADMIN".into()];
    assert!(net.check(&w, &[], &same).is_ok());
    w.containers[0].security.cap_add = vec!["NET_ADMIN".into(), "SYS_PTRACE".into()];
    let e = net.check(&w, &[], &same).unwrap_err();
    assert!(
        e.what.contains("SYS_PTRACE") && !e.what.contains("NET_ADMIN,"),
        "{e}"
    );
    let all = SecurityPolicy {
        allowed_capabilities: vec!["ALL".into()],
        ..p
    };
    assert!(all.check(&w, &[], &same).is_ok());
}

#[test]
fn allowed_capabilities_are_normalised_and_unknown_ones_refused() {
    let p: SecurityPolicy =
        toml::from_str("allowed_capabilities = [\"cap_net_admin\", \"SYS_TIME\"]").unwrap();
    assert_eq!(p.allowed_capabilities, ["NET_ADMIN", "SYS_TIME"]);
    let e = toml::from_str::<SecurityPolicy>("allowed_capabilities = [\"SYS_WIZARD\"]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown capability \"SYS_WIZARD\""), "{e}");
}
