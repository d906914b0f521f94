//! Image-store policy: when to trim the store to its budget, and which images must stay.

use std::collections::{BTreeMap, BTreeSet};

use drover_protocol::{Name, WorkloadSpec};

use crate::clock::{BootMs, since};
use crate::state::WorkloadRecord;

/// The store is trimmed at least this often.
pub const GC_INTERVAL_MS: u64 = 60_000;

/// True when the image store should be trimmed now: once a minute, or right after a
/// workload went away (`requested`), but never while a pull runs (a pull's layers are not
/// in any record yet). `last` is the boot-clock time of the last trim (`None`: never).
pub fn gc_due(now: BootMs, last: Option<BootMs>, requested: bool, pulls_running: bool) -> bool {
    if pulls_running {
        return false;
    }
    requested || last.is_none_or(|l| since(l, now) >= GC_INTERVAL_MS)
}

/// Manifest digests that must stay: those the desired workloads' images resolved to this
/// generation (`prepared`: reference → digest) and those of every created container.
pub fn images_in_use(
    desired: &[WorkloadSpec],
    prepared: &BTreeMap<String, String>,
    records: &BTreeMap<Name, WorkloadRecord>,
) -> BTreeSet<String> {
    let mut in_use: BTreeSet<String> = desired
        .iter()
        .flat_map(|w| &w.containers)
        .filter_map(|c| prepared.get(c.image.as_str()).cloned())
        .collect();
    in_use.extend(
        records
            .values()
            .flat_map(|r| r.containers.values())
            .filter_map(|c| c.image_digest.clone()),
    );
    in_use
}

/// The image references of the fallback revisions signed with `given` workloads: never
/// trimmed while their workload is on trial (the device may have to go back offline).
pub fn fallback_images(given: &[WorkloadSpec]) -> impl Iterator<Item = &str> {
    given
        .iter()
        .filter_map(|w| w.fallback.as_deref())
        .flat_map(|f| &f.containers)
        .map(|c| c.image.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_minute_or_when_asked_and_never_during_a_pull() {
        assert!(gc_due(5, None, false, false), "first pass");
        assert!(!gc_due(30_000, Some(0), false, false));
        assert!(gc_due(60_000, Some(0), false, false));
        assert!(gc_due(1, Some(0), true, false), "a workload went away");
        assert!(!gc_due(60_000, Some(0), true, true), "a pull runs");
        assert!(!gc_due(999_999, None, true, true), "a pull runs");
    }

    #[test]
    fn a_trim_stamp_from_before_a_reboot_does_not_stop_trimming() {
        assert!(!gc_due(1_000, Some(5_000_000), false, false));
        assert!(gc_due(61_000, Some(5_000_000), false, false));
    }

    #[test]
    fn the_fallbacks_images_are_listed_for_the_trim_to_keep() {
        use drover_protocol::{ContainerSpec, ImageRef, Name};
        let spec = |image: &str| {
            let c = ContainerSpec::new(Name::new("main").unwrap(), ImageRef::new(image).unwrap());
            WorkloadSpec::new(Name::new("web").unwrap(), vec![c])
        };
        let mut new = spec("oci:/new");
        new.fallback = Some(Box::new(spec("oci:/old")));
        let plain = spec("oci:/plain");
        let given = [new, plain];
        let listed: Vec<&str> = fallback_images(&given).collect();
        assert_eq!(listed, ["oci:/old"]);
    }
}
