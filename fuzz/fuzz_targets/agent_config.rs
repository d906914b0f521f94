//! `agent.toml` through the agent's typed loader (`AgentConfig::parse`: every field, its
//! defaults and checks): never a panic, errors located inside the text; what parses gives
//! the image limits the pull uses.
#![no_main]

use drover_agent::config::AgentConfig;
use drover_agent::image::UnpackLimits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match AgentConfig::parse("agent.toml", text) {
        Ok(c) => {
            let limits = UnpackLimits::new(&c.images);
            assert!(limits.layer_bytes >= 1024, "{limits:?}");
        }
        Err(e) => drover_fuzz::check_config_error(text, &e),
    }
});
