//! Fitting a status snapshot into one MQTT message: a pure function of the snapshot and a
//! byte budget.
//!
//! A status that does not fit would either never be sent (the codec refuses it) or make
//! the MQTT client drop the connection on every attempt; the hub would see the device
//! offline forever. So an oversize snapshot is shrunk instead, least useful detail first:
//! long `last_error` texts are cut (ever shorter), then healthy workloads lose their
//! per-container detail, then the others, and only then are workloads left out. The
//! device-level fields (device, generation, time, capacity) are never touched, and the
//! order of what is kept never changes. A snapshot that fits is never modified.

use drover_protocol::{DeviceStatus, MAX_MESSAGE_BYTES, Phase, WorkloadStatus};

/// Bytes the seal adds around the encoded status: the two envelopes (version and kind),
/// the length prefix of the status bytes and the 32-byte MAC with its own. That is 40
/// bytes today; 64 leaves room for a wider envelope version and a later heartbeat time.
pub const SEAL_OVERHEAD_BYTES: usize = 64;

/// Largest encoded status (postcard, without envelope) that still seals into one message.
pub const STATUS_BUDGET_BYTES: usize = MAX_MESSAGE_BYTES - SEAL_OVERHEAD_BYTES;

/// Lengths `last_error` texts are cut to, in bytes, tried in turn.
const ERROR_CAPS: [usize; 3] = [1024, 256, 64];

/// What `fit` had to do to a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Encoded size before and after, in bytes.
    pub bytes_before: usize,
    pub bytes_after: usize,
    /// `last_error` texts shortened.
    pub errors_cut: u32,
    /// Workloads reported without their containers.
    pub details_dropped: u32,
    /// Workloads left out of the snapshot.
    pub workloads_dropped: u32,
}

/// The postcard size of `v`, in bytes. Status types always serialize; if one ever did
/// not, it counts as too large, so that `fit` shrinks rather than sends it.
fn size<T: serde::Serialize>(v: &T) -> usize {
    postcard::experimental::serialized_size(v).unwrap_or(usize::MAX)
}

/// Shrinks `status` until it encodes in at most `budget` bytes. Returns `None`, with the
/// snapshot untouched, when it already fits.
pub fn fit(status: &mut DeviceStatus, budget: usize) -> Option<Trimmed> {
    let before = size(status);
    if before <= budget {
        return None;
    }
    let mut t = Trimmed {
        bytes_before: before,
        ..Trimmed::default()
    };
    let mut now = before;
    // The longest cap that fits (or the shortest), so that each text is cut once and its
    // marker says how much of the original is missing.
    for (n, cap) in ERROR_CAPS.into_iter().enumerate() {
        let mut trial = status.clone();
        let cut = cut_errors(&mut trial, cap);
        let trial_size = size(&trial);
        if trial_size <= budget || n == ERROR_CAPS.len() - 1 {
            (*status, now, t.errors_cut) = (trial, trial_size, cut);
            break;
        }
    }
    let order = drop_order(&status.workloads);
    for &i in &order {
        if now <= budget {
            break;
        }
        let containers = std::mem::take(&mut status.workloads[i].containers);
        if !containers.is_empty() {
            // An empty Vec encodes as one byte (its length).
            now = now.saturating_sub(size(&containers) - 1);
            t.details_dropped += 1;
        }
    }
    let mut gone = vec![false; status.workloads.len()];
    for &i in &order {
        if now <= budget {
            break;
        }
        // The Vec's length prefix may shrink too: `now` stays an upper bound.
        now = now.saturating_sub(size(&status.workloads[i]));
        gone[i] = true;
        t.workloads_dropped += 1;
    }
    let mut keep = gone.iter().map(|g| !g);
    status.workloads.retain(|_| keep.next().unwrap_or(true));
    t.bytes_after = size(status);
    Some(t)
}

/// Cuts every `last_error` longer than `cap` bytes; returns how many were cut.
fn cut_errors(status: &mut DeviceStatus, cap: usize) -> u32 {
    let mut cut = 0;
    for w in &mut status.workloads {
        let container_errors = w.containers.iter_mut().map(|c| &mut c.last_error);
        for e in std::iter::once(&mut w.last_error).chain(container_errors) {
            if let Some(text) = e.as_mut().filter(|t| t.len() > cap) {
                *text = shorten(text, cap);
                cut += 1;
            }
        }
    }
    cut
}

/// The first `cap` bytes of `text` (at a character boundary) and how much was cut.
fn shorten(text: &str, cap: usize) -> String {
    let end = (0..=cap)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… [{} bytes cut]", &text[..end], text.len() - end)
}

/// Workload indices in the order their detail is given up: healthy ones first (their
/// containers say least), then the rest; within each group the last listed first.
fn drop_order(workloads: &[WorkloadStatus]) -> Vec<usize> {
    let healthy = |w: &WorkloadStatus| matches!(w.phase, Phase::Running | Phase::Succeeded);
    let mut order: Vec<usize> = (0..workloads.len()).rev().collect();
    order.sort_by_key(|&i| !healthy(&workloads[i]));
    order
}

#[cfg(test)]
#[path = "trim_tests.rs"]
mod tests;
