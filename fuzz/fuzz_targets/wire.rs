//! Every MQTT payload decoder: the first byte picks the message kind, the rest is the
//! payload. Decoding must never panic, and whatever decodes must survive re-encoding
//! (current envelope) and decode back to the same value. The keyed checks
//! (`verify_desired`, `open_status`, …) run on the same bytes with the fixed keys of
//! `drover_fuzz`, so seeds made by `seeds` reach the inner decoders.
#![no_main]

use std::fmt::Debug;

use drover_fuzz::{CREDENTIAL, Kind, device, hub_key};
use drover_protocol::auth::{AuthedStatus, SignedDesired, open_status, verify_desired};
use drover_protocol::codec::{CodecError, Wire, decode, encode};
use drover_protocol::command::{
    Command, CommandResponse, SignedCommand, open_response, verify_command,
};
use drover_protocol::compat::{Compat, decode_any};
use drover_protocol::freshness::{SealedPresence, SequencedStatus, open_presence, open_status_seq};
use drover_protocol::keys::{SealSecret, StatusKey};
use drover_protocol::sealed::{SealedDesired, open_desired};
use drover_protocol::telemetry::open_telemetry;
use drover_protocol::{DesiredState, DeviceStatus, Telemetry};
use libfuzzer_sys::fuzz_target;

/// A decoded value re-encodes, and decodes back to itself.
fn round_trip<T: Wire + PartialEq + Debug>(value: T) {
    let bytes = match encode(&value) {
        Ok(b) => b,
        // An old envelope may grow by a few bytes when its new fields are added.
        Err(CodecError::TooLarge(_)) => return,
        Err(e) => panic!("decoded {value:?} does not re-encode: {e}"),
    };
    let again: T = decode(&bytes).unwrap_or_else(|e| panic!("re-encoded {value:?}: {e}"));
    assert_eq!(again, value, "value changed in a round trip");
}

fn current<T: Wire + PartialEq + Debug>(bytes: &[u8]) {
    if let Ok(v) = decode::<T>(bytes) {
        round_trip(v);
    }
}

fn any_version<T: Compat + PartialEq + Debug>(bytes: &[u8]) {
    if let Ok(v) = decode_any::<T>(bytes) {
        round_trip(v);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, payload)) = data.split_first() else {
        return;
    };
    let dev = device();
    let hub = hub_key().verifying_key();
    match Kind::from_byte(first) {
        Kind::Desired => any_version::<DesiredState>(payload),
        Kind::Status => any_version::<DeviceStatus>(payload),
        Kind::Telemetry => {
            current::<Telemetry>(payload);
            let _ = open_telemetry(payload, &dev, &StatusKey::derive(CREDENTIAL), 0);
        }
        Kind::Command => current::<Command>(payload),
        Kind::Response => {
            current::<CommandResponse>(payload);
            let _ = open_response(payload, &dev, &StatusKey::derive(CREDENTIAL));
        }
        Kind::SignedDesired => {
            any_version::<SignedDesired>(payload);
            if let Ok(d) = verify_desired(payload, &hub, &dev, 0) {
                round_trip(d);
            }
        }
        Kind::AuthedStatus => {
            any_version::<AuthedStatus>(payload);
            if let Ok(s) = open_status(payload, &dev, &StatusKey::derive(CREDENTIAL)) {
                round_trip(s);
            }
        }
        Kind::SealedDesired => {
            any_version::<SealedDesired>(payload);
            let seal = SealSecret::derive(CREDENTIAL);
            if let Ok(d) = open_desired(payload, &hub, &dev, 0, &seal) {
                round_trip(d);
            }
        }
        Kind::SealedPresence => {
            any_version::<SealedPresence>(payload);
            let _ = open_presence(payload, &dev, &StatusKey::derive(CREDENTIAL));
        }
        Kind::SequencedStatus => {
            any_version::<SequencedStatus>(payload);
            if let Ok((s, _)) = open_status_seq(payload, &dev, &StatusKey::derive(CREDENTIAL)) {
                round_trip(s);
            }
        }
        Kind::SignedCommand => {
            current::<SignedCommand>(payload);
            if let Ok(c) = verify_command(payload, &hub, &dev, 0) {
                round_trip::<Command>(c);
            }
        }
    }
});
