//! The Active Directory dialect of the session: DirSync passes replayed from a real Samba 4.17
//! capture, and the notification-driven passes of refreshAndPersist against scripted messages.

use std::path::PathBuf;
use std::time::Instant;

use syncrepl_proto::wire::{dirsync_done, search_done, search_entry};
use syncrepl_proto::{
    object_guid, AttributeList, Cookie, Dialect, DirSyncFlags, Event, RefreshPhase, ResultCode,
    Session, SessionConfig, Stage, SyncMode, SyncRequest,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn request(mode: SyncMode, cookie: Option<Cookie>) -> SyncRequest {
    let mut request = SyncRequest::new("OU=People,DC=example,DC=test", mode);
    request.cookie = cookie;
    request.dialect = Dialect::ActiveDirectory {
        naming_context: "DC=example,DC=test".into(),
        flags: DirSyncFlags::DEFAULT,
    };
    request
}

fn events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

/// The cookie the incremental capture's request carried: 108 octets starting with `MSDS`.
fn incr_cookie() -> Cookie {
    let req = fixture("ad-dirsync-incr.req.bin");
    let at = req
        .windows(4)
        .position(|w| w == b"MSDS")
        .expect("the request holds a cookie");
    Cookie::from(&req[at..at + 108])
}

fn replay(name: &str, cookie: Option<Cookie>) -> Vec<Event> {
    let now = Instant::now();
    let mut session = Session::new(SessionConfig::default());
    session
        .bind_simple("Administrator@EXAMPLE.TEST", b"x", now)
        .expect("bind");
    let data = fixture(name);
    let bind_len = match syncrepl_proto::message_length(&data, 1 << 20).expect("framed") {
        syncrepl_proto::Frame::Complete(n) => n,
        other => panic!("{other:?}"),
    };
    session
        .handle_input(&data[..bind_len])
        .expect("bind answer");
    assert!(matches!(events(&mut session)[..], [Event::BindResult(_)]));
    let mut out = Vec::new();
    let _ = session.poll_transmit(&mut out);
    let id = session
        .start_sync(&request(SyncMode::RefreshOnly, cookie))
        .expect("starts");
    assert_eq!(id, 2, "the capture's search id");
    for chunk in data[bind_len..].chunks(977) {
        session.handle_input(chunk).expect("valid DirSync stream");
    }
    events(&mut session)
}

#[test]
fn full_pass_from_samba() {
    let events = replay("ad-dirsync-full.bin", None);
    let entries: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::DirSyncEntry(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(entries.len(), 275);
    let u1 = entries
        .iter()
        .find(|e| e.dn == "CN=u1,OU=People,DC=example,DC=test")
        .expect("u1 is there");
    // objectGUID:: 3HtWeR2IxESyXxQ5LTntcw== in Microsoft's string form.
    assert_eq!(
        u1.object_guid.to_string(),
        "79567bdc-881d-44c4-b25f-14392d39ed73"
    );
    match events.last() {
        Some(Event::RefreshComplete {
            phase: RefreshPhase::Present,
            cookie: Some(cookie),
            persist: false,
        }) => assert!(cookie.as_bytes().starts_with(b"MSDS")),
        other => panic!("ends with {other:?}"),
    }
}

#[test]
fn incremental_pass_from_samba() {
    let events = replay("ad-dirsync-incr.bin", Some(incr_cookie()));
    let dns: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::DirSyncEntry(e) => Some(e.dn.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(dns.len(), 7, "{dns:?}");
    assert!(dns.iter().any(|d| d.contains("Deleted Objects")));
    assert!(matches!(
        events.last(),
        Some(Event::RefreshComplete {
            cookie: Some(_),
            ..
        })
    ));
}

fn entry(id: u32, dn: &str, guid: u8) -> Vec<u8> {
    let attrs = AttributeList::build([
        ("objectGUID", vec![[guid; 16].as_slice()]),
        ("description", vec![b"x".as_slice()]),
    ]);
    search_entry(id, dn, &attrs, &[])
}

#[test]
fn notifications_start_passes_one_at_a_time() {
    let mut session = Session::new(SessionConfig::default());
    let first = session
        .start_sync(&request(SyncMode::RefreshAndPersist, None))
        .expect("starts");
    // The notification search (1) goes out before the first pass (2), whose id is returned.
    assert_eq!(first, 2);
    assert_eq!(session.sync_message_id(), Some(2));
    assert_eq!(session.sync_stage(), Some(Stage::Refresh));
    let mut out = Vec::new();
    assert!(session.poll_transmit(&mut out) > 0);
    session
        .handle_input(&entry(2, "CN=a,OU=People,DC=example,DC=test", 1))
        .expect("entry");
    // A change during the refresh pass: another pass follows it.
    session
        .handle_input(&entry(1, "CN=a,OU=People,DC=example,DC=test", 1))
        .expect("notification");
    session
        .handle_input(&dirsync_done(2, ResultCode::SUCCESS, false, b"c1"))
        .expect("done");
    let got = events(&mut session);
    assert!(matches!(got[0], Event::DirSyncEntry(_)));
    assert!(matches!(
        &got[1],
        Event::RefreshComplete { phase: RefreshPhase::Present, cookie: Some(c), persist: true }
            if c.as_bytes() == b"c1"
    ));
    assert_eq!(session.sync_stage(), Some(Stage::Persist));
    assert_eq!(session.sync_message_id(), Some(3), "the next pass");
    // Notifications during that pass are folded into one more pass.
    for _ in 0..3 {
        session
            .handle_input(&entry(1, "CN=b,OU=People,DC=example,DC=test", 2))
            .expect("notification");
    }
    session
        .handle_input(&entry(3, "CN=b,OU=People,DC=example,DC=test", 2))
        .expect("entry");
    session
        .handle_input(&dirsync_done(3, ResultCode::SUCCESS, false, b"c2"))
        .expect("done");
    let got = events(&mut session);
    assert!(
        matches!(&got[..], [Event::DirSyncEntry(_), Event::NewCookie(c)] if c.as_bytes() == b"c2")
    );
    assert_eq!(session.sync_message_id(), Some(4));
    session
        .handle_input(&dirsync_done(4, ResultCode::SUCCESS, false, b"c3"))
        .expect("done");
    assert!(matches!(&events(&mut session)[..], [Event::NewCookie(_)]));
    // Idle: only the notification search runs, and the next notification starts a pass.
    assert_eq!(session.sync_message_id(), Some(1));
    session
        .handle_input(&entry(1, "CN=c,OU=People,DC=example,DC=test", 3))
        .expect("notification");
    assert_eq!(session.sync_message_id(), Some(5));
    // Stopping abandons both searches at once.
    session.cancel(Instant::now()).expect("cancel");
    assert!(matches!(&events(&mut session)[..], [Event::Cancelled]));
    assert_eq!(session.sync_stage(), None);
    out.clear();
    let _ = session.poll_transmit(&mut out);
    // Late answers to the abandoned searches are dropped.
    session
        .handle_input(&dirsync_done(5, ResultCode::SUCCESS, false, b"c4"))
        .expect("dropped");
    assert!(events(&mut session).is_empty());
}

#[test]
fn more_data_continues_the_refresh() {
    let mut session = Session::new(SessionConfig::default());
    session
        .start_sync(&request(SyncMode::RefreshOnly, None))
        .expect("starts");
    session
        .handle_input(&dirsync_done(1, ResultCode::SUCCESS, true, b"page1"))
        .expect("done");
    assert!(matches!(&events(&mut session)[..], [Event::NewCookie(c)] if c.as_bytes() == b"page1"));
    assert_eq!(session.sync_message_id(), Some(2));
    session
        .handle_input(&dirsync_done(2, ResultCode::SUCCESS, false, b"page2"))
        .expect("done");
    assert!(matches!(
        &events(&mut session)[..],
        [Event::RefreshComplete { persist: false, .. }]
    ));
    assert_eq!(session.sync_stage(), None);
}

#[test]
fn a_refused_cookie_asks_for_a_reload() {
    let mut session = Session::new(SessionConfig::default());
    session
        .start_sync(&request(
            SyncMode::RefreshOnly,
            Some(Cookie::from(b"garbage".as_slice())),
        ))
        .expect("starts");
    session
        .handle_input(&search_done(
            1,
            ResultCode::UNAVAILABLE_CRITICAL_EXTENSION,
            "",
            None,
        ))
        .expect("done");
    assert!(matches!(
        &events(&mut session)[..],
        [Event::RefreshRequired { .. }]
    ));
    // Without a cookie the same answer means no DirSync at all.
    let mut session = Session::new(SessionConfig::default());
    session
        .start_sync(&request(SyncMode::RefreshAndPersist, None))
        .expect("starts");
    session
        .handle_input(&search_done(
            2,
            ResultCode::UNAVAILABLE_CRITICAL_EXTENSION,
            "",
            None,
        ))
        .expect("done");
    assert!(matches!(
        &events(&mut session)[..],
        [Event::SearchDone { .. }]
    ));
    assert_eq!(session.sync_stage(), None);
}

#[test]
fn the_server_must_send_a_guid_and_the_control() {
    let mut session = Session::new(SessionConfig::default());
    session
        .start_sync(&request(SyncMode::RefreshOnly, None))
        .expect("starts");
    let attrs = AttributeList::build([("objectGUID", vec![[1u8; 15].as_slice()])]);
    assert!(session
        .handle_input(&search_entry(1, "CN=x", &attrs, &[]))
        .is_err());
    let mut session = Session::new(SessionConfig::default());
    session
        .start_sync(&request(SyncMode::RefreshOnly, None))
        .expect("starts");
    assert!(session
        .handle_input(&search_done(1, ResultCode::SUCCESS, "", None))
        .is_err());
}

#[test]
fn guid_conversion_round_trips() {
    let raw: [u8; 16] = std::array::from_fn(|i| i as u8);
    let guid = object_guid(raw);
    assert_eq!(guid.to_string(), "03020100-0504-0706-0809-0a0b0c0d0e0f");
}
