//! What a registry answers the agent (`image/pull.rs`): a manifest or image index body and
//! an image config blob (the input split at the first NUL), resolved for the host picked
//! by byte 0 (amd64, arm64, arm v7/v6/v5). Never a panic; an image's layers are digests.
#![no_main]

use drover_agent::image::fuzzing::{Resolved, resolve_manifest};
use libfuzzer_sys::fuzz_target;

const HOSTS: [(&str, u32); 5] = [
    ("x86_64", 0),
    ("aarch64", 8),
    ("arm", 7),
    ("arm", 6),
    ("arm", 5),
];

fuzz_target!(|data: &[u8]| {
    let Some((&b, rest)) = data.split_first() else {
        return;
    };
    let host = HOSTS[usize::from(b) % HOSTS.len()];
    let (body, config) = match rest.iter().position(|&c| c == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    match resolve_manifest(body, config, host) {
        Ok(Resolved::Index(_)) => {}
        Ok(Resolved::Image(image)) => {
            assert!(
                image
                    .layers
                    .iter()
                    .all(|l| l.blob.as_str().starts_with("sha256:"))
            );
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
