//! The one size limit of a Drover message, and every limit derived from it.
//!
//! The codec's bound, the hub's and the agents' MQTT client limits and the embedded
//! broker's all come from [`MAX_MESSAGE_BYTES`]: when they disagree, a message that one
//! side accepts makes the other side drop the connection, and the device reconnects and is
//! dropped again, forever. Nothing here may do IO; change the limit here or nowhere.

use crate::Name;

/// Largest message payload, in bytes: a sealed status or a signed desired state, envelope
/// included. The codec refuses to encode or decode anything larger. A desired state with
/// dozens of workloads is a few KiB; the bound leaves room for hundreds.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Room, in bytes, that MQTT adds around a payload: the fixed header (1 byte + at most 4
/// of remaining length), the topic (2-byte length + at most ~100 bytes for Drover's
/// topics with a 63-character device name), the packet id (2 bytes) and MQTT 5
/// properties should a client send some. 4 KiB is far more than all of it.
pub const MQTT_OVERHEAD_BYTES: usize = 4 * 1024;

/// Largest MQTT packet, in bytes, that every Drover client (hub, agent, tools) and the
/// embedded broker must accept in both directions: one message of [`MAX_MESSAGE_BYTES`]
/// plus [`MQTT_OVERHEAD_BYTES`]. rumqttc checks outgoing packets by their full size and
/// incoming ones (like rumqttd) by their remaining length; this bound covers both.
pub const MAX_MQTT_PACKET_BYTES: usize = MAX_MESSAGE_BYTES + MQTT_OVERHEAD_BYTES;

/// A desired state that would not fit in one MQTT message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "desired state for device {device} would be {} bytes, over the {}-byte limit of one MQTT message: place fewer workloads on this device (narrow a Deployment's selector) or shorten long env values, commands and args",
    grouped(*.bytes),
    grouped(*.limit)
)]
pub struct SizeError {
    pub device: Name,
    /// Size of the signed payload, in bytes.
    pub bytes: usize,
    /// The limit it exceeds ([`MAX_MESSAGE_BYTES`]).
    pub limit: usize,
}

/// Checks that a signed desired state of `signed_len` bytes fits in one message for
/// `device`. The hub calls it after signing, before it commits anything; when the codec
/// already refused the state (`CodecError::TooLarge(n)`), pass `n`.
pub fn check_desired_size(device: &Name, signed_len: usize) -> Result<(), SizeError> {
    if signed_len <= MAX_MESSAGE_BYTES {
        return Ok(());
    }
    Err(SizeError {
        device: device.clone(),
        bytes: signed_len,
        limit: MAX_MESSAGE_BYTES,
    })
}

/// `301220` → `301,220`: sizes people read in an error message.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::MAX_NAME_LEN;
    use crate::topics;

    #[test]
    fn a_desired_state_over_the_limit_is_refused_naming_device_and_size() {
        let dev = Name::new("pi-7").unwrap();
        assert_eq!(check_desired_size(&dev, MAX_MESSAGE_BYTES), Ok(()));
        let err = check_desired_size(&dev, 301_220).unwrap_err();
        assert_eq!(err.bytes, 301_220);
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "desired state for device pi-7 would be 301,220 bytes, over the 262,144-byte limit of one MQTT message:"
            ),
            "{msg}"
        );
    }

    #[test]
    fn sizes_are_grouped_by_thousands() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (262_144, "262,144"),
        ];
        for (n, s) in cases {
            assert_eq!(grouped(n), s);
        }
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn the_mqtt_overhead_covers_the_longest_topic_and_headers() {
        let longest = Name::new("a".repeat(MAX_NAME_LEN)).unwrap();
        let topic = [
            topics::desired(&longest),
            topics::status(&longest),
            topics::telemetry(&longest),
            topics::online(&longest),
        ]
        .into_iter()
        .map(|t| t.len())
        .max()
        .unwrap();
        // Fixed header (1 + 4), topic length (2) + topic, packet id (2), and the
        // `…/json` mirror suffix the hub may add.
        let mqtt = 1 + 4 + 2 + topic + "/json".len() + 2;
        assert!(mqtt * 4 < MQTT_OVERHEAD_BYTES, "{mqtt}");
        assert_eq!(
            MAX_MQTT_PACKET_BYTES,
            MAX_MESSAGE_BYTES + MQTT_OVERHEAD_BYTES
        );
    }
}
