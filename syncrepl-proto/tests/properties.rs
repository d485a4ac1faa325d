//! Property tests: every sync type round-trips, filters print and parse back, and no input — random
//! or a mutated real stream — makes a session panic.

use std::path::PathBuf;
use std::time::Instant;

use proptest::prelude::*;
use rasn::types::{OctetString, SetOf};
use syncrepl_proto::sync::{
    decode, encode, RefreshPhaseValue, RequestMode, StateEnum, SyncDoneValue, SyncIdSetValue,
    SyncInfoValue, SyncRequestValue, SyncStateValue,
};
use syncrepl_proto::{check_filter, Event, Session, SessionConfig, SyncMode, SyncRequest};

fn octets() -> impl Strategy<Value = OctetString> {
    prop::collection::vec(any::<u8>(), 0..40).prop_map(OctetString::from)
}

fn uuid() -> impl Strategy<Value = OctetString> {
    prop::collection::vec(any::<u8>(), 16).prop_map(OctetString::from)
}

fn info() -> impl Strategy<Value = SyncInfoValue> {
    let phase = || {
        (prop::option::of(octets()), any::<bool>()).prop_map(|(cookie, refresh_done)| {
            RefreshPhaseValue {
                cookie,
                refresh_done,
            }
        })
    };
    prop_oneof![
        octets().prop_map(SyncInfoValue::NewCookie),
        phase().prop_map(SyncInfoValue::RefreshDelete),
        phase().prop_map(SyncInfoValue::RefreshPresent),
        (
            prop::option::of(octets()),
            any::<bool>(),
            prop::collection::vec(uuid(), 0..20)
        )
            .prop_map(|(cookie, refresh_deletes, uuids)| SyncInfoValue::SyncIdSet(
                SyncIdSetValue {
                    cookie,
                    refresh_deletes,
                    sync_uuids: SetOf::from_vec(uuids),
                }
            )),
    ]
}

fn round_trip<T: rasn::Encode + rasn::Decode + PartialEq + std::fmt::Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let bytes = encode(value);
    prop_assert_eq!(&decode::<T>(&bytes, "round trip").expect("decodes"), value);
    Ok(())
}

/// An RFC 4515 filter as text, built from parts that need escaping.
fn filter_text() -> impl Strategy<Value = String> {
    let value = "[a-zA-Z0-9 *()\\\\é]{0,8}".prop_map(|v| {
        v.chars()
            .map(|c| match c {
                '*' => "\\2a".to_owned(),
                '(' => "\\28".to_owned(),
                ')' => "\\29".to_owned(),
                '\\' => "\\5c".to_owned(),
                c => c.to_string(),
            })
            .collect::<String>()
    });
    let item = (
        "[a-zA-Z][a-zA-Z0-9-]{0,6}",
        prop_oneof!["=", ">=", "<=", "~="],
        value,
    )
        .prop_map(|(a, op, v)| format!("({a}{op}{v})"));
    let leaf = prop_oneof![item, "[a-z]{1,5}".prop_map(|a| format!("({a}=*)"))];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("(&{})", v.concat())),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("(|{})", v.concat())),
            inner.prop_map(|f| format!("(!{f})")),
        ]
    })
}

/// Feeds `bytes` to a bound session with a running sync search: only events or errors may result.
fn feed(bytes: &[u8], mode: SyncMode, chunk: usize) {
    let mut session = Session::new(SessionConfig {
        max_message_size: 1 << 16,
        ..SessionConfig::default()
    });
    let now = Instant::now();
    let _ = session.bind_simple("", b"", now);
    let _ = session.handle_input(&[
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
    ]);
    let _ = session.start_sync(&SyncRequest::new("dc=x", mode));
    for part in bytes.chunks(chunk.max(1)) {
        let result = session.handle_input(part);
        while session.poll_event().is_some() {}
        let mut out = Vec::new();
        let _ = session.poll_transmit(&mut out);
        if let Err(e) = result {
            assert!(session.is_closed(), "a failed session is closed");
            assert_eq!(session.handle_timeout(now), Err(e), "and says so again");
            break;
        }
        let _ = session.handle_timeout(now);
    }
}

fn capture() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/persist-1k.bin");
    let bytes = std::fs::read(path).expect("fixture");
    bytes[14..60_000].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sync_request_round_trips(mode in prop_oneof![Just(RequestMode::RefreshOnly), Just(RequestMode::RefreshAndPersist)],
                                cookie in prop::option::of(octets()), reload_hint in any::<bool>()) {
        round_trip(&SyncRequestValue { mode, cookie, reload_hint })?;
    }

    #[test]
    fn sync_state_round_trips(state in 0u8..4, entry_uuid in uuid(), cookie in prop::option::of(octets())) {
        let state = [StateEnum::Present, StateEnum::Add, StateEnum::Modify, StateEnum::Delete][usize::from(state)];
        round_trip(&SyncStateValue { state, entry_uuid, cookie })?;
    }

    #[test]
    fn sync_done_round_trips(cookie in prop::option::of(octets()), refresh_deletes in any::<bool>()) {
        round_trip(&SyncDoneValue { cookie, refresh_deletes })?;
    }

    #[test]
    fn sync_info_round_trips(value in info()) {
        round_trip(&value)?;
    }

    #[test]
    fn defaults_are_accepted_explicit(cookie in prop::option::of(octets()), flag in any::<bool>()) {
        // Encode with the DEFAULT written out, as some servers do; decoding must give the same value.
        let mut content = Vec::new();
        if let Some(c) = &cookie {
            content.push(0x04);
            content.push(c.len() as u8);
            content.extend_from_slice(c);
        }
        content.extend_from_slice(&[0x01, 0x01, if flag { 0xff } else { 0x00 }]);
        let mut done = vec![0x30, content.len() as u8];
        done.extend_from_slice(&content);
        prop_assert_eq!(decode::<SyncDoneValue>(&done, "t").expect("decodes"), SyncDoneValue { cookie: cookie.clone(), refresh_deletes: flag });
        let mut present = vec![0xa2, content.len() as u8];
        present.extend_from_slice(&content);
        prop_assert_eq!(
            decode::<SyncInfoValue>(&present, "t").expect("decodes"),
            SyncInfoValue::RefreshPresent(RefreshPhaseValue { cookie, refresh_done: flag })
        );
    }

    #[test]
    fn filters_parse_back(text in filter_text()) {
        let filter = check_filter(&text);
        prop_assert!(filter.is_ok(), "{} did not parse: {:?}", text, filter);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
        feed(&bytes, SyncMode::RefreshOnly, chunk);
        feed(&bytes, SyncMode::RefreshAndPersist, chunk);
    }

    #[test]
    fn framed_garbage_never_panics(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = vec![0x30, 0x82, (body.len() >> 8) as u8, body.len() as u8];
        bytes.extend_from_slice(&body);
        feed(&bytes, SyncMode::RefreshAndPersist, 7);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mutated_real_streams_never_panic(flips in prop::collection::vec((0usize..59_986, any::<u8>()), 1..8), chunk in 1usize..5000) {
        let mut bytes = capture();
        for (at, value) in flips {
            bytes[at] = value;
        }
        feed(&bytes, SyncMode::RefreshAndPersist, chunk);
    }
}

fn attribute_list() -> impl Strategy<Value = Vec<(String, Vec<Vec<u8>>)>> {
    prop::collection::vec(
        (
            "[a-zA-Z][a-zA-Z0-9;-]{0,12}",
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..4),
        ),
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_entries_decode_as_rasn_ldap_decodes_them(
        attrs in attribute_list(),
        dn in "[a-z]{1,8}=[a-zA-Z0-9 é]{0,20},dc=x",
        state in 0u8..4,
        uuid in prop::collection::vec(any::<u8>(), 16),
        cookie in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
    ) {
        let list = syncrepl_proto::AttributeList::build(
            attrs.iter().map(|(n, vs)| (n.as_str(), vs.iter().map(Vec::as_slice).collect::<Vec<_>>())),
        );
        let state = [syncrepl_proto::SyncState::Present, syncrepl_proto::SyncState::Add, syncrepl_proto::SyncState::Modify, syncrepl_proto::SyncState::Delete][usize::from(state)];
        let uuid = syncrepl_proto::EntryUuid::from_slice(&uuid).expect("16 bytes");
        let cookie = cookie.map(|c| syncrepl_proto::Cookie::from(c.as_slice()));
        let bytes = syncrepl_proto::wire::sync_entry(1, &dn, &list, state, uuid, cookie.as_ref());

        let oracle: rasn_ldap::LdapMessage = rasn::ber::decode(&bytes).expect("rasn-ldap decodes it");
        let rasn_ldap::ProtocolOp::SearchResEntry(entry) = oracle.protocol_op else {
            panic!("not an entry");
        };
        let mut session = Session::new(SessionConfig::default());
        let _ = session.start_sync(&SyncRequest::new("dc=x", SyncMode::RefreshOnly));
        session.handle_input(&bytes).expect("decodes");
        let Some(Event::Entry(ours)) = session.poll_event() else {
            panic!("no entry event");
        };
        prop_assert_eq!(&ours.dn, &entry.object_name.0);
        let theirs: Vec<(String, Vec<u8>)> = entry.attributes.iter()
            .flat_map(|a| a.vals.iter().map(move |v| (a.r#type.0.clone(), v.to_vec()))).collect();
        let mine: Vec<(String, Vec<u8>)> = ours.attributes.iter()
            .flat_map(|a| a.values.map(move |v| (a.name.to_owned(), v.to_vec()))).collect();
        prop_assert_eq!(mine, theirs);
        prop_assert_eq!(ours.state, state);
        prop_assert_eq!(ours.entry_uuid, uuid);
        prop_assert_eq!(ours.cookie, cookie);
    }
}
