//! The small validated strings every manifest and message carries: names, label keys
//! and values, image references, digests, quantities. Each parser must refuse or accept
//! without panicking, and what it accepts must print back to something it accepts again.
#![no_main]

use drover_protocol::labels::{check_label_key, check_label_value};
use drover_protocol::quantity::{ByteSize, CpuMillis, DurationMs};
use drover_protocol::{Digest, ImageRef, ImageSource, Name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = Name::new(s) {
        assert_eq!(Name::new(n.as_str()).ok(), Some(n.clone()));
    }
    let _ = check_label_key(s);
    let _ = check_label_value(s);
    if let Ok(r) = ImageRef::new(s) {
        let again = ImageRef::new(r.as_str()).unwrap_or_else(|e| panic!("{r:?}: {e}"));
        assert_eq!(again, r);
        let _ = r.selector().manifest_ref();
        if let ImageSource::Registry(reg) = r.source() {
            let _ = reg.api_host();
        }
        // The hub pins every reference to a digest at apply: the pinned text must parse
        // back to the same reference.
        let pinned = r.with_digest(&Digest::of(data));
        let again = ImageRef::new(pinned.as_str()).unwrap_or_else(|e| panic!("{pinned:?}: {e}"));
        assert_eq!(again, pinned);
    }
    if let Ok(d) = Digest::parse(s) {
        let again = Digest::parse(d.as_str()).unwrap_or_else(|e| panic!("{d:?}: {e}"));
        assert_eq!(again, d);
    }
    let _ = s.parse::<ByteSize>();
    let _ = s.parse::<CpuMillis>();
    let _ = s.parse::<DurationMs>();
});
