#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn exit_codes_keep_2_for_usage_errors() {
    let codes: Vec<u8> = [
        WaitOutcome::Complete,
        WaitOutcome::TimedOut,
        WaitOutcome::RolledBack,
    ]
    .iter()
    .map(WaitOutcome::exit_code)
    .collect();
    assert_eq!(codes, [0, 3, 4], "1 is any error, 2 clap's usage error");
}
