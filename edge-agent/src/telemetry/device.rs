//! Reads the whole device's usage: CPU, load, memory, state-folder disk, SoC temperature,
//! Raspberry Pi throttling, network bytes, uptime and the agent's own RSS.
//!
//! One `sysinfo::System` and one `Networks` live as long as the sampler, so CPU % is over
//! the interval between two samples; each sample refreshes only what it reads (CPU usage,
//! RAM, this process's memory, the interfaces' counters) and nothing runs between
//! samples. sysinfo's `Components` read only hwmon sensors, not thermal zones, so the
//! temperature comes from `/sys/class/thermal/thermal_zone*/temp` directly (zone 0 is
//! the SoC on a Raspberry Pi). Disk free is the same `statvfs` the status's `Capacity`
//! uses. Never fails: what cannot be read is 0 or `None`.

use std::fs;
use std::path::{Path, PathBuf};

use sysinfo::{MemoryRefreshKind, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::units::RawDevice;

const THERMAL_ROOT: &str = "/sys/class/thermal";
/// Where the Raspberry Pi firmware driver exposes its throttling bits.
const PI_THROTTLED: &str = "/sys/devices/platform/soc/soc:firmware/get_throttled";
/// Thermal zones tried when looking for the SoC's (the lowest readable one).
const MAX_ZONES: u32 = 16;

pub struct DeviceReader {
    system: System,
    networks: Networks,
    me: Option<Pid>,
    state_dir: PathBuf,
    thermal: Option<PathBuf>,
    throttled: Option<PathBuf>,
}

/// Why the readers could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot read device usage: {0}")]
pub struct DeviceError(#[from] sysinfo::Error);

impl DeviceReader {
    /// Sets up the readers and takes the first CPU reading (the base of the first
    /// sample's CPU %). `state_dir` is the folder whose filesystem's free space is sent.
    pub fn new(state_dir: &Path) -> Result<Self, DeviceError> {
        let mut system = System::new()?;
        system.refresh_cpu_usage();
        Ok(DeviceReader {
            system,
            networks: Networks::new_with_refreshed_list()?,
            me: sysinfo::get_current_pid().ok(),
            state_dir: state_dir.to_path_buf(),
            thermal: soc_thermal_zone(Path::new(THERMAL_ROOT)),
            throttled: Some(PathBuf::from(PI_THROTTLED)).filter(|p| p.exists()),
        })
    }

    /// Which thermal zone's `temp` file is read, if any (for the log at start).
    pub fn thermal_zone(&self) -> Option<&Path> {
        self.thermal.as_deref()
    }

    /// Refreshes what a sample needs and reads it.
    pub fn read(&mut self) -> RawDevice {
        self.system.refresh_cpu_usage();
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let (net_rx_bytes, net_tx_bytes) = self.network_bytes();
        RawDevice {
            cpu_percent: self.system.global_cpu_usage(),
            load1: System::load_average().map_or(0.0, |l| l.one),
            memory_used_bytes: self.system.used_memory(),
            memory_available_bytes: self.system.available_memory(),
            disk_free_bytes: crate::fsutil::disk_free_bytes(&self.state_dir).unwrap_or(0),
            thermal: self.thermal.as_deref().and_then(read_text),
            throttled: self.throttled.as_deref().and_then(read_text),
            net_rx_bytes,
            net_tx_bytes,
            uptime_s: System::uptime().unwrap_or(0),
            agent_rss_bytes: self.own_rss(),
        }
    }

    /// Bytes in and out since boot on every interface but loopback (interfaces that
    /// appeared since the last sample included, vanished ones forgotten).
    fn network_bytes(&mut self) -> (u64, u64) {
        self.networks.refresh(true);
        self.networks
            .iter()
            .filter(|(name, _)| name.as_encoded_bytes() != b"lo")
            .fold((0, 0), |(rx, tx), (_, n)| {
                (
                    rx.saturating_add(n.total_received()),
                    tx.saturating_add(n.total_transmitted()),
                )
            })
    }

    fn own_rss(&mut self) -> u64 {
        let Some(me) = self.me else { return 0 };
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[me]),
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        self.system.process(me).map_or(0, |p| p.memory())
    }
}

fn read_text(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// The lowest-numbered thermal zone below `root` whose `temp` reads as a number.
fn soc_thermal_zone(root: &Path) -> Option<PathBuf> {
    (0..MAX_ZONES)
        .map(|i| root.join(format!("thermal_zone{i}/temp")))
        .find(|p| read_text(p).is_some_and(|t| t.trim().parse::<i64>().is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soc_zone_is_the_lowest_readable_one() {
        let root = tempfile::tempdir().unwrap();
        let zone = |i: u32, text: &str| {
            let d = root.path().join(format!("thermal_zone{i}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("temp"), text).unwrap();
        };
        assert_eq!(soc_thermal_zone(root.path()), None);
        zone(2, "51000\n");
        zone(1, "unreadable\n");
        assert_eq!(
            soc_thermal_zone(root.path()),
            Some(root.path().join("thermal_zone2/temp"))
        );
        zone(0, "47000\n");
        assert_eq!(
            soc_thermal_zone(root.path()),
            Some(root.path().join("thermal_zone0/temp"))
        );
    }

    #[test]
    fn this_device_reads_plausibly() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = DeviceReader::new(dir.path()).unwrap();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let d = r.read();
        assert!((0.0..=100.0).contains(&d.cpu_percent), "{d:?}");
        assert!(
            d.memory_used_bytes > 0 && d.memory_available_bytes > 0,
            "{d:?}"
        );
        assert!(d.disk_free_bytes > 0 && d.uptime_s > 0, "{d:?}");
        // This test process: at least a MiB resident, less than a GiB.
        assert!((1 << 20..1 << 30).contains(&d.agent_rss_bytes), "{d:?}");
    }
}
