//! One message, whole, to a session waiting for a bind, a StartTLS, a Who am I? or search results.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use syncrepl_proto::{Session, SessionConfig, SyncMode, SyncRequest};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    for setup in 0..3 {
        let mut session = Session::new(SessionConfig::default());
        let _ = match setup {
            0 => session.bind_simple("", b"", now),
            1 => session.start_tls(now),
            _ => session.start_sync(&SyncRequest::new("dc=x", SyncMode::RefreshAndPersist)),
        };
        let _ = session.handle_input(data);
        while session.poll_event().is_some() {}
    }
});
