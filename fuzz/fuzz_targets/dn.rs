//! The DN normaliser (RFC 4514) on arbitrary text: never a panic, and normalising a normal form
//! changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncrepl_state::NormalizedDn;

fuzz_target!(|data: &[u8]| {
    let Ok(dn) = std::str::from_utf8(data) else {
        return;
    };
    let once = NormalizedDn::new(dn);
    let twice = NormalizedDn::new(once.as_str());
    assert_eq!(once, twice, "normalizing {dn:?}");
});
