//! Config text (`agent.toml`, `hub.toml`) through `config_text::parse`, the shared path
//! of both binaries, into a generic table (their config types live in the binaries):
//! errors must carry a line and column inside the text, never panic.
#![no_main]

use drover_protocol::config_text::{ConfigError, check_log_level, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse::<toml::Table>("fuzz.toml", text) {
        Ok(table) => {
            if let Some(toml::Value::String(level)) = table.get("log_level") {
                let _ = check_log_level(level);
            }
        }
        Err(ConfigError::Parse { line, column, .. }) => {
            let lines = text.split('\n').count();
            assert!(line >= 1 && line <= lines, "line {line} of {lines}");
            assert!(column >= 1, "column {column}");
        }
        Err(e) => panic!("parse of text gave {e}"),
    }
    let _ = check_log_level(text);
});
