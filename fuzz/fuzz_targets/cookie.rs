//! slapd's cookie parser and the per-serverID merge on arbitrary bytes: never a panic, a merged
//! slapd cookie never carries a sid, and merging it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncrepl_proto::{Cookie, SlapdCookie};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (held, next) = data.split_at(split);
    let held = Cookie::from(held);
    let next = Cookie::from(next);
    let merged = Cookie::merge(Some(&held), next.clone());
    if let Some(parsed) = SlapdCookie::parse(&merged) {
        assert!(parsed.sid.is_none());
        assert_eq!(Cookie::merge(Some(&merged), merged.clone()), merged);
    }
});
