//! The low-disk warning: when the state disk runs low, the report says so and names the
//! volumes holding the space, largest first, with their sizes — in the agent's warnings
//! (`ps`) and, for the hub, in each such workload's `last_error` (a free-text field the
//! wire already has). Pure: the caller measures, and only when the disk is low.

use std::collections::BTreeMap;

use crate::state::VolumeUsage;

/// Volumes named in the warning.
pub const LISTED: usize = 3;

/// What the report adds while the disk is low.
#[derive(Debug, PartialEq, Eq)]
pub struct DiskPressure {
    /// For the agent's warnings (`ps`).
    pub warning: String,
    /// Workload → note for its status, for each listed volume of 1 MiB or more.
    pub notes: BTreeMap<String, String>,
}

/// `None` while `free` is at or above `floor`; else the warning and the notes.
pub fn disk_pressure(free: u64, floor: u64, usage: &[VolumeUsage]) -> Option<DiskPressure> {
    if free >= floor {
        return None;
    }
    let mut listed: Vec<&VolumeUsage> = usage.iter().filter(|v| v.bytes >= 1 << 20).collect();
    listed.sort_by_key(|v| std::cmp::Reverse(v.bytes));
    listed.truncate(LISTED);
    let mut warning = format!(
        "low disk: {} free on the state disk (images.min_free_disk is {})",
        size(free),
        size(floor)
    );
    if listed.is_empty() {
        warning.push_str("; no volume holds 1 MiB or more (see images and logs)");
    } else {
        let names: Vec<String> = listed
            .iter()
            .map(|v| format!("{}/{} {}", v.workload, v.volume, amount(v)))
            .collect();
        warning.push_str(&format!("; largest volumes: {}", names.join(", ")));
    }
    let mut notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in &listed {
        notes.entry(v.workload.clone()).or_default().push(format!(
            "volume {} holds {}",
            v.volume,
            amount(v)
        ));
    }
    let notes = notes
        .into_iter()
        .map(|(wl, parts)| {
            let text = format!("low disk: {} of the state disk", parts.join(", "));
            (wl, text)
        })
        .collect();
    Some(DiskPressure { warning, notes })
}

fn amount(v: &VolumeUsage) -> String {
    let at_least = if v.partial { "at least " } else { "" };
    format!("{at_least}{}", size(v.bytes))
}

/// Whole MiB from 1 MiB up (so the report changes rarely), else KiB.
fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", (bytes + (1 << 19)) >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(wl: &str, vol: &str, bytes: u64) -> VolumeUsage {
        VolumeUsage {
            workload: wl.into(),
            volume: vol.into(),
            bytes,
            partial: false,
        }
    }

    #[test]
    fn nothing_while_the_disk_has_room() {
        assert_eq!(
            disk_pressure(5 << 20, 5 << 20, &[v("a", "d", 9 << 30)]),
            None
        );
    }

    #[test]
    fn the_largest_volumes_are_named_with_their_sizes() {
        let mut usage = vec![
            v("filler", "data", 23 << 20),
            v("filler", "cache", 3 << 20),
            v("db", "pg", (5 << 20) + 1),
            v("log", "x", 2 << 20),
            v("tiny", "t", 4 << 10),
        ];
        usage[2].partial = true;
        let p = disk_pressure(12 << 10, 1 << 20, &usage).expect("low");
        assert_eq!(
            p.warning,
            "low disk: 12 KiB free on the state disk (images.min_free_disk is 1 MiB); \
             largest volumes: filler/data 23 MiB, db/pg at least 5 MiB, filler/cache 3 MiB"
        );
        assert_eq!(
            p.notes["filler"],
            "low disk: volume data holds 23 MiB, volume cache holds 3 MiB of the state disk"
        );
        assert!(p.notes.contains_key("db") && !p.notes.contains_key("log"));
    }

    #[test]
    fn a_low_disk_without_big_volumes_says_so() {
        let p = disk_pressure(0, 1 << 20, &[v("tiny", "t", 4 << 10)]).expect("low");
        assert!(p.warning.contains("no volume holds"), "{}", p.warning);
        assert!(p.notes.is_empty());
    }
}
