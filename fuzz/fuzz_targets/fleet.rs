//! Fleet manifests (the hub's `apply`): `parse_set` over up to three files (the input
//! split at NUL bytes). Any text must give objects or an error located inside one of the
//! files, never a panic.
#![no_main]

use drover_hub::fleet::parse_set;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files: Vec<(String, String)> = text
        .splitn(3, '\0')
        .enumerate()
        .map(|(i, t)| (format!("f{i}.yaml"), t.to_owned()))
        .collect();
    match parse_set(&files) {
        Ok(objects) => {
            for o in &objects {
                assert!(!o.name().as_str().is_empty());
            }
        }
        Err(e) => {
            let Some((_, t)) = files.iter().find(|(f, _)| *f == e.file) else {
                panic!("error names no input file: {e}");
            };
            // YAML line breaks: LF, CR LF and a lone CR.
            let lines = t.replace("\r\n", "\n").split(['\n', '\r']).count() as u64;
            assert!(
                e.line >= 1 && e.column >= 1,
                "error without a location: {e}"
            );
            assert!(e.line <= lines, "line {} of {lines}: {e}", e.line);
            assert!(!e.message.is_empty(), "error without a message: {e}");
        }
    }
});
