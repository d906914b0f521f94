//! The `linux.resources` part of a runtime config: memory, CPU quota, pids and the device
//! allow-list. Pure.

use drover_protocol::Resources;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::SpecError;

/// CFS period in microseconds; `cpu_millis` × 100 is the quota within it.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Standard character devices every container may use (type, major, minor), as runc.
const STANDARD_DEVICES: [(i64, i64); 8] = [
    (1, 3),    // null
    (1, 5),    // zero
    (1, 7),    // full
    (1, 8),    // random
    (1, 9),    // urandom
    (5, 0),    // tty
    (5, 2),    // ptmx
    (136, -1), // pts/* (any minor)
];

pub fn resources(
    r: &Resources,
    swap_accounting: bool,
    devices: Vec<LinuxDeviceCgroup>,
) -> Result<LinuxResources, SpecError> {
    let mut b = LinuxResourcesBuilder::default().devices(devices);
    if let Some(bytes) = r.memory_bytes {
        let limit = i64::try_from(bytes)
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| SpecError::Resource(format!("memory limit {bytes} bytes")))?;
        let mut m = LinuxMemoryBuilder::default().limit(limit);
        // Swap in the runtime spec is memory+swap: equal to the limit means "no swap", so
        // the limit holds even on hosts with swap. Without swap accounting the file to write
        // does not exist and libcgroups would fail, so leave it out there.
        if swap_accounting {
            m = m.swap(limit);
        }
        b = b.memory(m.build()?);
    }
    if let Some(millis) = r.cpu_millis {
        if millis == 0 {
            return Err(SpecError::Resource(
                "cpu_millis must be above 0".to_string(),
            ));
        }
        let quota = i64::from(millis) * 100;
        b = b.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_US)
                .build()?,
        );
    }
    if let Some(pids) = r.pids {
        if pids == 0 {
            // libcgroups writes "max" for 0: refuse instead of silently lifting the limit.
            return Err(SpecError::Resource(
                "pids limit must be above 0".to_string(),
            ));
        }
        b = b.pids(LinuxPidsBuilder::default().limit(i64::from(pids)).build()?);
    }
    Ok(b.build()?)
}

/// Deny everything, then allow the standard devices.
pub fn default_device_rules() -> Result<Vec<LinuxDeviceCgroup>, SpecError> {
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .typ(LinuxDeviceType::A);
    let mut out = vec![deny_all.access("rwm").build()?];
    for (major, minor) in STANDARD_DEVICES {
        let minor = (minor >= 0).then_some(minor);
        out.push(device_rule(LinuxDeviceType::C, Some(major), minor, "rwm")?);
    }
    Ok(out)
}

/// An allow rule; `None` major/minor means any (`*`).
pub fn device_rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup, SpecError> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .access(access);
    if let Some(major) = major {
        b = b.major(major);
    }
    if let Some(minor) = minor {
        b = b.minor(minor);
    }
    Ok(b.build()?)
}
