//! `hub.toml` through the hub's typed loader (`HubConfig::parse`: every field, its
//! defaults and checks): never a panic, errors located inside the text.
#![no_main]

use drover_hub::config::HubConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match HubConfig::parse("hub.toml", text) {
        Ok(c) => {
            let _ = (c.device_broker_address(), c.device_registry_url());
            let _ = c.client_broker_address();
        }
        Err(e) => drover_fuzz::check_config_error(text, &e),
    }
});
