//! The LDAP URL parser (RFC 4516 with its extensions, several servers) on arbitrary text: never
//! a panic; a URL that parses parses the same again from its parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncrepl_mio::LdapUrl;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((url, others)) = LdapUrl::parse_many(text) {
        assert!(!others.contains(&url.endpoint));
        let first = text.split_whitespace().next().expect("a first URL");
        assert_eq!(LdapUrl::parse(first).expect("the first parses alone"), url);
    }
    let _ = LdapUrl::parse(text);
});
