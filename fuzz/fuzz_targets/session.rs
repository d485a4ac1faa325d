//! A whole session fed server bytes after the bind and the start of a sync search, in refreshOnly
//! and refreshAndPersist, with timeouts and a cancel along the way.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use syncrepl_proto::{Session, SessionConfig, SyncMode, SyncRequest};

const BIND_OK: [u8; 14] = [
    0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
];

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mode = if control & 1 == 0 {
        SyncMode::RefreshOnly
    } else {
        SyncMode::RefreshAndPersist
    };
    let chunk = usize::from(control >> 1).max(1) * 16;
    let now = Instant::now();
    let mut session = Session::new(SessionConfig::default());
    let _ = session.bind_simple("", b"", now);
    let _ = session.handle_input(&BIND_OK);
    let _ = session.start_sync(&SyncRequest::new("dc=example,dc=com", mode));
    let mut out = Vec::new();
    for (i, part) in rest.chunks(chunk).enumerate() {
        if session.handle_input(part).is_err() {
            break;
        }
        while session.poll_event().is_some() {}
        if i == 3 {
            let _ = session.cancel(now);
        }
        let _ = session.handle_timeout(now + Duration::from_secs(i as u64));
        out.clear();
        let _ = session.poll_transmit(&mut out);
    }
});
