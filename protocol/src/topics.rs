//! MQTT topic names (see DESIGN.md, "Protocol"). Built here only, so that hub and agent
//! can never disagree on a spelling.

use crate::Name;

/// Root of every Drover topic.
pub const ROOT: &str = "drover/v1";

/// `drover/v1/dev/{device}/desired`: signed desired state, hub → agent, retained.
pub fn desired(device: &Name) -> String {
    format!("{ROOT}/dev/{device}/desired")
}

/// `drover/v1/dev/{device}/status`: full status snapshot, agent → hub.
pub fn status(device: &Name) -> String {
    format!("{ROOT}/dev/{device}/status")
}

/// `drover/v1/dev/{device}/telemetry`: compact metrics, agent → hub.
pub fn telemetry(device: &Name) -> String {
    format!("{ROOT}/dev/{device}/telemetry")
}

/// `drover/v1/dev/{device}/online`: presence (the agent's last will).
pub fn online(device: &Name) -> String {
    format!("{ROOT}/dev/{device}/online")
}

/// `drover/v1/dev/{device}/cmd`: signed commands, hub → agent (QoS 1, never retained).
pub fn cmd(device: &Name) -> String {
    format!("{ROOT}/dev/{device}/cmd")
}

/// `drover/v1/dev/{device}/cmd/resp`: answers to commands, agent → hub.
pub fn cmd_resp(device: &Name) -> String {
    format!("{ROOT}/dev/{device}/cmd/resp")
}

/// `drover/v1/dev/{device}/status/json`: the device's status as JSON, republished by the
/// hub for dashboards (retained).
pub fn status_json(device: &Name) -> String {
    format!("{ROOT}/dev/{device}/status/json")
}

/// `drover/v1/dev/{device}/telemetry/json`: each telemetry sample as JSON, republished
/// by the hub for dashboards.
pub fn telemetry_json(device: &Name) -> String {
    format!("{ROOT}/dev/{device}/telemetry/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_spelled_as_designed() {
        let d = Name::new("pi-1").unwrap();
        assert_eq!(desired(&d), "drover/v1/dev/pi-1/desired");
        assert_eq!(status(&d), "drover/v1/dev/pi-1/status");
        assert_eq!(telemetry(&d), "drover/v1/dev/pi-1/telemetry");
        assert_eq!(online(&d), "drover/v1/dev/pi-1/online");
        assert_eq!(cmd(&d), "drover/v1/dev/pi-1/cmd");
        assert_eq!(cmd_resp(&d), "drover/v1/dev/pi-1/cmd/resp");
        assert_eq!(status_json(&d), "drover/v1/dev/pi-1/status/json");
        assert_eq!(telemetry_json(&d), "drover/v1/dev/pi-1/telemetry/json");
    }
}
