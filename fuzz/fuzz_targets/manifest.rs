//! Workload manifest YAML (`drover-agent apply`, the hub's `apply`): any text must give
//! specs or a located error, never a panic, and whatever parses must encode as a
//! desired state (the hub signs exactly that).
#![no_main]

use drover_protocol::manifest::parse_workloads;
use drover_protocol::{DesiredState, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_workloads("fuzz.yaml", text) {
        Ok(workloads) => {
            let desired = DesiredState {
                device: drover_fuzz::device(),
                generation: 1,
                workloads,
            };
            let _ = encode(&desired);
        }
        Err(e) => {
            assert!(
                e.line >= 1 && e.column >= 1,
                "error without a location: {e}"
            );
        }
    }
});
