//! An Active Directory sync fed server bytes: the session in the DirSync dialect (notification
//! search, passes, cookies) and the mirror's DirSync rules applied to what it reports (merges,
//! incremental values, tombstones, renames with the links and descendants that follow them, the
//! base, scope and filter applied on this side). Neither may panic; the mirror stays consistent.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use syncrepl_proto::{Dialect, DirSyncFlags, Scope, Session, SessionConfig, SyncMode, SyncRequest};
use syncrepl_state::{FnConsumer, Mirror, SearchSpec};

const BIND_OK: [u8; 14] = [
    0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
];

const FILTERS: [&str; 4] = [
    "(objectClass=*)",
    "(objectClass=user)",
    "(&(description=a*)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
    "(|(cn=x)(member=CN=u1,OU=People,DC=example,DC=test))",
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
    let spec = SearchSpec {
        base: "OU=People,DC=example,DC=test".into(),
        scope: if control & 2 == 0 { Scope::Subtree } else { Scope::One },
        filter: FILTERS[usize::from(control >> 2) & 3].into(),
        attributes: if control & 16 == 0 {
            Vec::new()
        } else {
            vec!["cn".into(), "member".into(), "description".into()]
        },
    };
    let chunk = usize::from(control >> 5).max(1) * 64;
    let mut request = SyncRequest::new(spec.base.clone(), mode);
    request.scope = spec.scope;
    request.filter = spec.filter.clone();
    request.attributes = spec.attributes.clone();
    request.dialect = Dialect::ActiveDirectory {
        naming_context: "DC=example,DC=test".into(),
        flags: DirSyncFlags::DEFAULT,
    };
    let mut mirror = Mirror::in_memory(spec);
    let mut session = Session::new(SessionConfig::default());
    let _ = session.bind_simple("", b"", Instant::now());
    let _ = session.handle_input(&BIND_OK);
    while session.poll_event().is_some() {}
    if session.start_sync(&request).is_err() || mirror.begin_refresh(&request).is_err() {
        return;
    }
    let mut consumer = FnConsumer(|_: &syncrepl_state::Change| Ok::<(), std::io::Error>(()));
    let mut out = Vec::new();
    for part in rest.chunks(chunk) {
        let failed = session.handle_input(part).is_err();
        while let Some(event) = session.poll_event() {
            if let Ok(content) = event.into_content() {
                if mirror.apply_content(content).is_err() {
                    return;
                }
            }
        }
        let _ = mirror.deliver(&mut consumer, false);
        out.clear();
        let _ = session.poll_transmit(&mut out);
        if failed {
            break;
        }
    }
    let _ = mirror.deliver(&mut consumer, true);
    for (uuid, entry) in mirror.iter() {
        let by_dn = mirror.get_by_dn(&entry.dn).map(|(u, _)| u);
        assert_eq!(by_dn, Some(*uuid), "the DN index holds every entry");
    }
});
