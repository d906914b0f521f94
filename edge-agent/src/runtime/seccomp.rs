//! Docker's default seccomp profile as data, and its conversion into the OCI runtime
//! config's `linux.seccomp` for one container.
//!
//! The rules are those of moby's `profiles/seccomp/default.json` (Apache-2.0), written
//! here as tables: everything not listed fails with EPERM; what a capability makes
//! useful (mount with SYS_ADMIN, init_module with SYS_MODULE, ptrace with SYS_PTRACE, …)
//! is allowed only when the container holds that capability, and the architecture rules
//! follow the build target. Pure: the caller says which capabilities and kernel apply.
//! This module must never loosen a rule Docker has; tighten only with a reason here.

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator as Op, LinuxSyscall, LinuxSyscallBuilder,
};

mod data;

use data::{ALLOWED, ARCH_ALLOWED, BY_CAPABILITY, FROM_KERNEL_4_8};

/// `CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
/// | CLONE_NEWCGROUP`: without SYS_ADMIN, `clone` may create no namespace.
const CLONE_NAMESPACE_FLAGS: u64 = 2_114_060_288;
/// `AF_VSOCK`: the one socket family Docker refuses.
const AF_VSOCK: u64 = 40;
/// `personality` values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
/// and the query 0xffffffff.
const PERSONALITIES: [u64; 5] = [0, 8, 131_072, 131_080, 4_294_967_295];

/// The seccomp filter of a container holding `caps` (names as in
/// `drover_protocol::security::CAPABILITIES`) on a kernel of at least 4.8 or not.
pub fn default_profile(caps: &[&str], kernel_4_8: bool) -> Result<LinuxSeccomp, OciSpecError> {
    let mut allow: Vec<String> = ALLOWED.iter().map(|s| s.to_string()).collect();
    allow.extend(ARCH_ALLOWED.iter().map(|s| s.to_string()));
    if kernel_4_8 {
        allow.extend(FROM_KERNEL_4_8.iter().map(|s| s.to_string()));
    }
    for (cap, names) in BY_CAPABILITY {
        if caps.contains(&cap) {
            allow.extend(names.iter().map(|s| s.to_string()));
        }
    }
    allow.sort();
    allow.dedup();
    let mut rules = vec![rule(allow, Action::ScmpActAllow, None, vec![])?];
    rules.push(rule(
        vec!["socket".into()],
        Action::ScmpActAllow,
        None,
        vec![arg(0, Op::ScmpCmpNe, AF_VSOCK, None)?],
    )?);
    for p in PERSONALITIES {
        let args = vec![arg(0, Op::ScmpCmpEq, p, None)?];
        rules.push(rule(
            vec!["personality".into()],
            Action::ScmpActAllow,
            None,
            args,
        )?);
    }
    if !caps.contains(&"SYS_ADMIN") {
        rules.extend(without_sys_admin()?);
    }
    LinuxSeccompBuilder::default()
        .default_action(Action::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
        .architectures(architectures())
        .syscalls(rules)
        .build()
}

/// `clone` without namespace flags, and `clone3` failing with ENOSYS so that libcs fall
/// back to `clone`, whose flags the filter can see.
fn without_sys_admin() -> Result<Vec<LinuxSyscall>, OciSpecError> {
    // s390 passes the flags second; the other targets Drover builds for pass them first.
    let index = if cfg!(target_arch = "s390x") { 1 } else { 0 };
    // libcontainer 0.7 reads a masked comparison as `(arg & value_two) == value` (runc
    // reads `(arg & value) == value_two`): the mask goes into `value_two` here. The
    // e2e tests prove that fork works and namespaces cannot be created.
    let no_namespaces = arg(index, Op::ScmpCmpMaskedEq, 0, Some(CLONE_NAMESPACE_FLAGS))?;
    Ok(vec![
        rule(
            vec!["clone".into()],
            Action::ScmpActAllow,
            None,
            vec![no_namespaces],
        )?,
        rule(
            vec!["clone3".into()],
            Action::ScmpActErrno,
            Some(libc::ENOSYS as u32),
            vec![],
        )?,
    ])
}

/// The build target's architecture and those its kernel also runs (moby's `archMap`).
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else if cfg!(target_arch = "arm") {
        vec![Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

fn rule(
    names: Vec<String>,
    action: Action,
    errno: Option<u32>,
    args: Vec<oci_spec::runtime::LinuxSeccompArg>,
) -> Result<LinuxSyscall, OciSpecError> {
    let mut b = LinuxSyscallBuilder::default().names(names).action(action);
    if let Some(e) = errno {
        b = b.errno_ret(e);
    }
    if !args.is_empty() {
        b = b.args(args);
    }
    b.build()
}

fn arg(
    index: usize,
    op: Op,
    value: u64,
    value_two: Option<u64>,
) -> Result<oci_spec::runtime::LinuxSeccompArg, OciSpecError> {
    let mut b = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    if let Some(v) = value_two {
        b = b.value_two(v);
    }
    b.build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn allowed(p: &LinuxSeccomp) -> Vec<String> {
        let all = p.syscalls().as_ref().unwrap();
        let plain = all.iter().filter(|r| r.args().is_none());
        let plain = plain.filter(|r| r.action() == Action::ScmpActAllow);
        plain.flat_map(|r| r.names().clone()).collect()
    }

    #[test]
    fn capability_syscalls_need_the_capability() {
        let docker = drover_protocol::security::DEFAULT_CAPABILITIES;
        let p = default_profile(&docker, true).unwrap();
        let names = allowed(&p);
        for denied in [
            "mount",
            "umount2",
            "init_module",
            "finit_module",
            "unshare",
            "setns",
        ] {
            assert!(!names.iter().any(|n| n == denied), "{denied} allowed");
        }
        for ok in ["read", "execve", "chroot", "ptrace", "openat"] {
            assert!(names.iter().any(|n| n == ok), "{ok} denied");
        }
        let mut caps = docker.to_vec();
        caps.extend(["SYS_ADMIN", "SYS_MODULE"]);
        let names = allowed(&default_profile(&caps, true).unwrap());
        for ok in ["mount", "init_module", "unshare", "clone3"] {
            assert!(names.iter().any(|n| n == ok), "{ok} denied with its cap");
        }
        let no_chroot = allowed(&default_profile(&["KILL"], false).unwrap());
        assert!(!no_chroot.iter().any(|n| n == "chroot" || n == "ptrace"));
    }

    #[test]
    fn clone_without_sys_admin_cannot_create_namespaces() {
        let p = default_profile(&["KILL"], true).unwrap();
        assert_eq!(p.default_action(), Action::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(libc::EPERM as u32));
        let rules = p.syscalls().as_ref().unwrap();
        let clone = rules.iter().find(|r| r.names() == &["clone"]).unwrap();
        let a = &clone.args().as_ref().unwrap()[0];
        assert_eq!(
            (a.op(), a.value(), a.value_two()),
            (Op::ScmpCmpMaskedEq, 0, Some(CLONE_NAMESPACE_FLAGS))
        );
        let clone3 = rules.iter().find(|r| r.names() == &["clone3"]).unwrap();
        assert_eq!(clone3.errno_ret(), Some(libc::ENOSYS as u32));
        let with_admin = default_profile(&["SYS_ADMIN"], true).unwrap();
        let rules = with_admin.syscalls().as_ref().unwrap();
        assert!(
            !rules
                .iter()
                .any(|r| r.args().is_some() && r.names() == &["clone"])
        );
    }
}
