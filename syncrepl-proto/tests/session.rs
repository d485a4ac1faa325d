//! The session's calling protocol, every event it reports, and every rule it enforces on the server.

use std::time::{Duration, Instant};

use rasn::types::{OctetString, SetOf};
use syncrepl_proto::sync::{
    RefreshPhaseValue, StateEnum, SyncIdSetValue, SyncInfoValue, SyncStateValue, SYNC_INFO_OID,
    SYNC_STATE_OID,
};
use syncrepl_proto::wire;
use syncrepl_proto::{
    AttributeList, Cookie, DecodeError, EntryUuid, Error, Event, RefreshPhase, ResultCode, Session,
    SessionConfig, SyncMode, SyncRequest, SyncState, Violation, START_TLS_OID, WHO_AM_I_OID,
};

const SEARCH: u32 = 2;

/// Whether an error is the one a case expects.
type Check = fn(&Error) -> bool;

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A session that is bound and has started a sync search (message id 2).
fn syncing(mode: SyncMode) -> Session {
    let mut s = Session::new(SessionConfig::default());
    s.bind_simple("cn=reader", b"pw", Instant::now())
        .expect("bind");
    assert!(matches!(
        s.start_sync(&SyncRequest::new("dc=x", mode)),
        Err(Error::Busy {
            pending: "bind",
            ..
        })
    ));
    s.handle_input(&wire::bind_response(1, ResultCode::SUCCESS, ""))
        .expect("bind response");
    assert!(matches!(events(&mut s)[..], [Event::BindResult(ref b)] if b.result.is_success()));
    assert_eq!(s.start_sync(&SyncRequest::new("dc=x", mode)), Ok(SEARCH));
    let mut out = Vec::new();
    assert!(s.poll_transmit(&mut out) > 0);
    s
}

fn uuid(n: u8) -> EntryUuid {
    EntryUuid([n; 16])
}

fn cookie(t: &str) -> Cookie {
    Cookie::from(t.as_bytes())
}

fn entry(state: SyncState, n: u8, c: Option<&Cookie>) -> Vec<u8> {
    let attrs = AttributeList::build([("cn", vec![b"x".as_slice()])]);
    wire::sync_entry(SEARCH, &format!("cn={n},dc=x"), &attrs, state, uuid(n), c)
}

fn phase(done: bool) -> RefreshPhaseValue {
    RefreshPhaseValue {
        cookie: Some(OctetString::from_static(b"c1")),
        refresh_done: done,
    }
}

#[test]
fn refresh_only_with_both_phases() {
    let mut s = syncing(SyncMode::RefreshOnly);
    let mut input = entry(SyncState::Present, 1, None);
    input.extend(entry(SyncState::Add, 2, None));
    input.extend(wire::sync_info(
        SEARCH,
        &SyncInfoValue::SyncIdSet(SyncIdSetValue {
            cookie: None,
            refresh_deletes: false,
            sync_uuids: SetOf::from_vec(vec![OctetString::from(vec![3; 16])]),
        }),
    ));
    input.extend(wire::sync_info(
        SEARCH,
        &SyncInfoValue::RefreshPresent(phase(false)),
    ));
    input.extend(entry(SyncState::Delete, 4, None));
    input.extend(wire::sync_info(
        SEARCH,
        &SyncInfoValue::NewCookie(OctetString::from_static(b"c2")),
    ));
    input.extend(wire::search_done(
        SEARCH,
        ResultCode::SUCCESS,
        "",
        Some((Some(&cookie("c3")), true)),
    ));
    s.handle_input(&input).expect("valid stream");
    let ev = events(&mut s);
    assert!(
        matches!(&ev[0], Event::Entry(e) if e.state == SyncState::Present && e.entry_uuid == uuid(1))
    );
    assert!(matches!(&ev[1], Event::Entry(e) if e.state == SyncState::Add && e.dn == "cn=2,dc=x"));
    assert!(
        matches!(&ev[2], Event::SyncIdSet { uuids, refresh_deletes: false, .. } if uuids == &[uuid(3)])
    );
    assert_eq!(
        ev[3],
        Event::RefreshPhaseDone {
            phase: RefreshPhase::Present,
            cookie: Some(cookie("c1"))
        }
    );
    assert!(matches!(&ev[4], Event::Entry(e) if e.state == SyncState::Delete));
    assert_eq!(ev[5], Event::NewCookie(cookie("c2")));
    assert_eq!(
        ev[6],
        Event::RefreshComplete {
            phase: RefreshPhase::Delete,
            cookie: Some(cookie("c3")),
            persist: false
        }
    );
    assert_eq!(s.sync_stage(), None, "the search is over");
}

#[test]
fn persist_stage_and_its_rules() {
    let mut s = syncing(SyncMode::RefreshAndPersist);
    s.handle_input(&wire::sync_info(
        SEARCH,
        &SyncInfoValue::RefreshDelete(phase(true)),
    ))
    .expect("refresh done");
    assert_eq!(
        events(&mut s),
        [Event::RefreshComplete {
            phase: RefreshPhase::Delete,
            cookie: Some(cookie("c1")),
            persist: true
        }]
    );
    s.handle_input(&entry(SyncState::Modify, 1, Some(&cookie("c2"))))
        .expect("persist entry");
    assert!(matches!(&events(&mut s)[..], [Event::Entry(e)] if e.cookie == Some(cookie("c2"))));
    s.handle_input(&wire::sync_info(
        SEARCH,
        &SyncInfoValue::SyncIdSet(SyncIdSetValue {
            cookie: None,
            refresh_deletes: true,
            sync_uuids: SetOf::from_vec(vec![OctetString::from(vec![5; 16])]),
        }),
    ))
    .expect("deletions may come as a set");
    assert_eq!(events(&mut s).len(), 1);

    for (bad, expected) in [
        (entry(SyncState::Present, 1, None), "present"),
        (
            wire::sync_info(SEARCH, &SyncInfoValue::RefreshPresent(phase(true))),
            "refreshPresent",
        ),
        (
            wire::sync_info(
                SEARCH,
                &SyncInfoValue::SyncIdSet(SyncIdSetValue {
                    cookie: None,
                    refresh_deletes: false,
                    sync_uuids: SetOf::from_vec(vec![]),
                }),
            ),
            "syncIdSet",
        ),
    ] {
        let mut s2 = syncing(SyncMode::RefreshAndPersist);
        s2.handle_input(&wire::sync_info(
            SEARCH,
            &SyncInfoValue::RefreshDelete(phase(true)),
        ))
        .expect("ok");
        let _ = events(&mut s2);
        let err = s2.handle_input(&bad).expect_err("violation");
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        assert!(
            err.to_string().contains(expected) || format!("{err:?}").contains("Present"),
            "{err}"
        );
    }
}

#[test]
fn violations_are_typed_sticky_and_reported_once() {
    let mut s = syncing(SyncMode::RefreshOnly);
    s.abandon().expect("abandon queues bytes");
    let mut s = syncing(SyncMode::RefreshOnly);
    let err = s
        .handle_input(&wire::bind_response(9, ResultCode::SUCCESS, ""))
        .expect_err("unknown id");
    assert_eq!(err, Error::Protocol(Violation::UnknownMessageId { id: 9 }));
    assert_eq!(
        s.handle_input(&entry(SyncState::Add, 1, None)),
        Err(err.clone())
    );
    assert_eq!(s.cancel(Instant::now()), Err(err.clone()));
    assert!(
        events(&mut s).is_empty(),
        "the error is returned, not queued"
    );
    assert_eq!(s.handle_timeout(Instant::now()), Err(err.clone()));
    assert!(s.is_closed());

    let attrs = AttributeList::default();
    let state = |len: usize| {
        syncrepl_proto::sync::encode(&SyncStateValue {
            state: StateEnum::Add,
            entry_uuid: OctetString::from(vec![1; len]),
            cookie: None,
        })
    };
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (wire::search_entry(SEARCH, "cn=a", &attrs, &[]), |e| {
            matches!(
                e,
                Error::Protocol(Violation::SyncStateControlCount { count: 0, .. })
            )
        }),
        (
            wire::search_entry(
                SEARCH,
                "cn=a",
                &attrs,
                &[(SYNC_STATE_OID, state(16)), (SYNC_STATE_OID, state(16))],
            ),
            |e| {
                matches!(
                    e,
                    Error::Protocol(Violation::SyncStateControlCount { count: 2, .. })
                )
            },
        ),
        (
            wire::search_entry(SEARCH, "cn=a", &attrs, &[(SYNC_STATE_OID, state(15))]),
            |e| *e == Error::Protocol(Violation::BadUuidLength { len: 15 }),
        ),
        (
            wire::search_entry(
                SEARCH,
                "cn=a",
                &attrs,
                &[(SYNC_STATE_OID, vec![0x30, 0x03, 0x0a, 0x01, 0x07])],
            ),
            |e| matches!(e, Error::Decode(_)),
        ),
        (wire::intermediate(SEARCH, Some("1.2.3"), None), |e| {
            matches!(e, Error::Protocol(Violation::UnknownIntermediate { .. }))
        }),
        (
            wire::intermediate(SEARCH, Some(SYNC_INFO_OID), Some(&[0x84, 0x00])),
            |e| matches!(e, Error::Decode(_)),
        ),
        (wire::bind_response(SEARCH, ResultCode::SUCCESS, ""), |e| {
            matches!(e, Error::Protocol(Violation::UnexpectedResponse { .. }))
        }),
        (vec![0x30, 0x80, 0, 0], |e| {
            matches!(e, Error::Decode(DecodeError::IndefiniteLength))
        }),
        (vec![0x04, 0x01, 0x00], |e| {
            matches!(e, Error::Decode(DecodeError::UnexpectedTag { .. }))
        }),
        (vec![0x30, 0x05, 0x02, 0x01, 0x02, 0x00, 0x00], |e| {
            *e == Error::Protocol(Violation::UnexpectedOperation { tag: 0 })
        }),
        (
            {
                let mut m = wire::bind_response(SEARCH, ResultCode::SUCCESS, "");
                m[1] += 1;
                m.push(0);
                m
            },
            |e| matches!(e, Error::Decode(DecodeError::TrailingBytes { .. })),
        ),
    ];
    for (bytes, ok) in cases {
        let mut s = syncing(SyncMode::RefreshOnly);
        let err = s.handle_input(&bytes).expect_err("refused");
        assert!(ok(&err), "{err:?} for {bytes:02x?}");
    }
}

#[test]
fn oversized_messages_are_refused_before_their_body_arrives() {
    let mut s = Session::new(SessionConfig {
        max_message_size: 1000,
        ..SessionConfig::default()
    });
    let err = s
        .handle_input(&[0x30, 0x84, 0x00, 0x01, 0x00, 0x00])
        .expect_err("too large");
    assert_eq!(
        err,
        Error::MessageTooLarge {
            length: 65542,
            max: 1000
        }
    );
    let mut s = Session::new(SessionConfig::default());
    let err = s
        .handle_input(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff])
        .expect_err("too large");
    assert!(matches!(err, Error::MessageTooLarge { .. }));
}

#[test]
fn result_codes_become_events() {
    let mut s = syncing(SyncMode::RefreshOnly);
    s.handle_input(&wire::search_done(
        SEARCH,
        ResultCode::SYNC_REFRESH_REQUIRED,
        "",
        Some((Some(&cookie("c")), false)),
    ))
    .expect("ok");
    assert!(
        matches!(&events(&mut s)[..], [Event::RefreshRequired { cookie: Some(c), .. }] if c == &cookie("c"))
    );
    let mut s = syncing(SyncMode::RefreshOnly);
    s.handle_input(&wire::search_done(
        SEARCH,
        ResultCode::UNAVAILABLE_CRITICAL_EXTENSION,
        "no syncprov",
        None,
    ))
    .expect("ok");
    assert!(
        matches!(&events(&mut s)[..], [Event::SearchDone { result, .. }] if result.diagnostic_message == "no syncprov")
    );
    let mut s = syncing(SyncMode::RefreshOnly);
    s.handle_input(&wire::notice_of_disconnection(ResultCode::UNAVAILABLE))
        .expect("ok");
    assert!(matches!(&events(&mut s)[..], [Event::Disconnect(_)]));
    assert!(s.is_closed());
}

#[test]
fn cancel_then_timeout_abandons_and_unbinds() {
    let now = Instant::now();
    let mut s = syncing(SyncMode::RefreshAndPersist);
    s.handle_input(&wire::sync_info(
        SEARCH,
        &SyncInfoValue::RefreshDelete(phase(true)),
    ))
    .expect("ok");
    let _ = events(&mut s);
    let cancel_id = s.cancel(now).expect("cancel");
    let mut out = Vec::new();
    assert!(s.poll_transmit(&mut out) > 0);
    let deadline = s.poll_timeout().expect("a deadline");
    assert_eq!(deadline, now + SessionConfig::default().cancel_timeout);
    assert_eq!(s.handle_timeout(now + Duration::from_millis(10)), Ok(()));
    assert!(events(&mut s).is_empty(), "early timeouts do nothing");
    assert_eq!(s.handle_timeout(deadline), Ok(()));
    assert_eq!(events(&mut s), [Event::CancelTimedOut]);
    out.clear();
    assert!(s.poll_transmit(&mut out) > 0);
    assert!(
        out.windows(3).any(|w| w == [0x50, 0x01, SEARCH as u8]),
        "abandon of the search: {out:02x?}"
    );
    assert!(out.windows(2).any(|w| w == [0x42, 0x00]), "unbind");
    assert!(s.is_closed());

    let mut s = syncing(SyncMode::RefreshAndPersist);
    let id = s.cancel(now).expect("cancel");
    let mut input = wire::extended_response(id, ResultCode::SUCCESS, None, None);
    input.extend(wire::search_done(SEARCH, ResultCode::CANCELED, "", None));
    s.handle_input(&input).expect("ok");
    assert_eq!(events(&mut s), [Event::Cancelled]);
    assert_eq!(s.poll_timeout(), None);
    let _ = cancel_id;

    // slapd's order: the search ends with canceled first, then the Cancel is answered (found by
    // the runtime's scripted-server tests: the late answer failed the session).
    let mut s = syncing(SyncMode::RefreshAndPersist);
    let id = s.cancel(now).expect("cancel");
    let mut input = wire::search_done(SEARCH, ResultCode::CANCELED, "", None);
    input.extend(wire::extended_response(id, ResultCode::SUCCESS, None, None));
    s.handle_input(&input)
        .expect("the Cancel's late answer is expected");
    assert_eq!(events(&mut s), [Event::Cancelled]);
    assert!(!s.is_closed());
    s.unbind().expect("an unbind can still be sent");
}

#[test]
fn start_tls_who_am_i_and_request_timeouts() {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    let id = s.start_tls(now).expect("StartTLS");
    assert!(matches!(
        s.who_am_i(now),
        Err(Error::Busy {
            pending: "StartTLS",
            ..
        })
    ));
    s.handle_input(&wire::extended_response(
        id,
        ResultCode::SUCCESS,
        Some(START_TLS_OID),
        None,
    ))
    .expect("ok");
    assert_eq!(events(&mut s), [Event::TlsReady]);
    let id = s.who_am_i(now).expect("who am i");
    s.handle_input(&wire::extended_response(
        id,
        ResultCode::SUCCESS,
        None,
        Some(b"dn:cn=reader"),
    ))
    .expect("ok");
    assert!(
        matches!(&events(&mut s)[..], [Event::WhoAmI { authz_id: Some(a), .. }] if a == "dn:cn=reader")
    );
    let _ = WHO_AM_I_OID;

    let mut s = Session::new(SessionConfig::default());
    let id = s.start_tls(now).expect("StartTLS");
    let mut input = wire::extended_response(id, ResultCode::SUCCESS, None, None);
    input.extend(wire::bind_response(7, ResultCode::SUCCESS, ""));
    assert_eq!(
        s.handle_input(&input),
        Err(Error::Protocol(Violation::DataAfterStartTls))
    );

    let mut s = Session::new(SessionConfig::default());
    let id = s.start_tls(now).expect("StartTLS");
    s.handle_input(&wire::extended_response(
        id,
        ResultCode::UNAVAILABLE,
        None,
        None,
    ))
    .expect("ok");
    assert!(matches!(&events(&mut s)[..], [Event::StartTlsRefused(_)]));

    let mut s = Session::new(SessionConfig::default());
    s.bind_simple("", b"", now).expect("bind");
    let deadline = s.poll_timeout().expect("deadline");
    assert_eq!(
        s.handle_timeout(deadline - Duration::from_millis(1)),
        Ok(())
    );
    assert!(events(&mut s).is_empty());
    let err = Error::Timeout { operation: "bind" };
    assert_eq!(s.handle_timeout(deadline), Err(err.clone()));
    assert!(events(&mut s).is_empty());
    assert_eq!(s.handle_input(&[]), Err(err.clone()));
    assert_eq!(s.who_am_i(now), Err(err));
}
