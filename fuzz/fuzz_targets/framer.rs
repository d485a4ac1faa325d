//! Arbitrary bytes, in arbitrary chunks, through a fresh session's framer and decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncrepl_proto::{Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut session = Session::new(SessionConfig {
        max_message_size: 1 << 16,
        ..SessionConfig::default()
    });
    for part in rest.chunks(usize::from(chunk).max(1)) {
        if session.handle_input(part).is_err() {
            break;
        }
        while session.poll_event().is_some() {}
    }
});
