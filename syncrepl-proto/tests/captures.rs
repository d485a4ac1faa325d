//! Replays of real server byte streams: the decoded events must match what `ldapsearch` printed for
//! the same session, whatever the chunking, and the hand-written entry reader must agree with
//! rasn-ldap on every entry.

use std::path::PathBuf;
use std::time::Instant;

use base64::Engine;
use syncrepl_proto::sync::{decode, SyncStateValue, SYNC_STATE_OID};
use syncrepl_proto::{Event, Session, SessionConfig, SyncMode, SyncRequest, SyncState};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shared(name: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/captures")
        .join(name);
    let data = std::fs::read(&path).ok();
    if data.is_none() {
        eprintln!(
            "skipped: {} is not here (not part of a clone)",
            path.display()
        );
    }
    data
}

/// One entry as ldapsearch printed it.
#[derive(Debug, PartialEq, Eq)]
struct Printed {
    dn: String,
    uuid: String,
    state: SyncState,
    cookie: Option<String>,
    attributes: Vec<(String, Vec<u8>)>,
}

fn unfold(ldif: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in ldif.lines() {
        if let (Some(rest), Some(last)) = (line.strip_prefix(' '), lines.last_mut()) {
            last.push_str(rest);
        } else {
            lines.push(line.to_owned());
        }
    }
    lines
}

fn value(line: &str) -> (String, Vec<u8>) {
    if let Some((name, b64)) = line.split_once(":: ") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("valid base64 in the LDIF");
        (name.to_owned(), bytes)
    } else {
        let (name, text) = line
            .split_once(": ")
            .or_else(|| line.split_once(':'))
            .expect("an attribute line");
        (name.to_owned(), text.as_bytes().to_vec())
    }
}

/// The entries of an ldapsearch LDIF view, and the last cookie it printed.
fn printed(ldif: &str) -> (Vec<Printed>, Option<String>) {
    let mut entries = Vec::new();
    let mut last_cookie = None;
    let lines = unfold(ldif);
    let mut current: Option<Printed> = None;
    for line in lines.iter().chain(std::iter::once(&String::new())) {
        if line.is_empty() {
            entries.extend(current.take());
            continue;
        }
        if let Some(cookie) = line.strip_prefix("# cookie: ") {
            last_cookie = Some(cookie.to_owned());
            if let Some(p) = current.as_mut() {
                p.cookie = Some(cookie.to_owned());
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# SyncState control, UUID ") {
            let (uuid, word) = rest.split_once(' ').expect("UUID and state");
            if let Some(p) = current.as_mut() {
                p.uuid = uuid.to_owned();
                p.state = match word {
                    "added" => SyncState::Add,
                    "modified" => SyncState::Modify,
                    "deleted" => SyncState::Delete,
                    _ => SyncState::Present,
                };
            }
            continue;
        }
        if line.starts_with('#') || line.starts_with("control:") {
            continue;
        }
        let (name, v) = value(line);
        if name == "dn" {
            current = Some(Printed {
                dn: String::from_utf8(v).expect("UTF-8 DN"),
                uuid: String::new(),
                state: SyncState::Present,
                cookie: None,
                attributes: Vec::new(),
            });
        } else if let Some(p) = current.as_mut() {
            p.attributes.push((name, v));
        }
    }
    (entries, last_cookie)
}

/// Runs a capture through a session, feeding it in chunks whose sizes come from `chunk`.
fn decode_capture(bytes: &[u8], mode: SyncMode, mut chunk: impl FnMut() -> usize) -> Vec<Event> {
    let mut session = Session::new(SessionConfig::default());
    session.bind_simple("", b"", Instant::now()).expect("bind");
    let first = 2 + usize::from(bytes[1]);
    session
        .handle_input(&bytes[..first])
        .expect("bind response");
    assert!(matches!(session.poll_event(), Some(Event::BindResult(b)) if b.result.is_success()));
    session
        .start_sync(&SyncRequest::new("dc=example,dc=com", mode))
        .expect("start");
    let mut rest = &bytes[first..];
    let mut events = Vec::new();
    while !rest.is_empty() {
        let n = chunk().clamp(1, rest.len());
        session
            .handle_input(&rest[..n])
            .expect("the capture decodes");
        rest = &rest[n..];
        events.extend(std::iter::from_fn(|| session.poll_event()));
    }
    events
}

fn check(name: &str, bin: &[u8], ldif: &str, mode: SyncMode) {
    let (expected, last_cookie) = printed(ldif);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        1 + (seed >> 53) as usize
    };
    let mut small = 0usize;
    let chunkings: [&mut dyn FnMut() -> usize; 3] = [&mut || usize::MAX, &mut random, &mut || {
        small = small % 7 + 1;
        small
    }];
    for chunk in chunkings {
        let events = decode_capture(bin, mode, chunk);
        let got: Vec<Printed> = events
            .iter()
            .filter_map(|e| match e {
                Event::Entry(e) => Some(Printed {
                    dn: e.dn.clone(),
                    uuid: e.entry_uuid.to_string(),
                    state: e.state,
                    cookie: e.cookie.as_ref().map(|c| c.to_string()),
                    attributes: e
                        .attributes
                        .iter()
                        .flat_map(|a| a.values.map(move |v| (a.name.to_owned(), v.to_vec())))
                        .collect(),
                }),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), expected.len(), "{name}: entry count");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g, e, "{name}");
        }
        let complete = events.iter().find_map(|e| match e {
            Event::RefreshComplete { cookie, .. } => Some(cookie.as_ref().map(|c| c.to_string())),
            _ => None,
        });
        assert!(complete.is_some(), "{name}: the refresh completes");
        if mode == SyncMode::RefreshOnly {
            assert_eq!(complete.flatten(), last_cookie, "{name}: final cookie");
        }
    }
}

#[test]
fn slapd_full_refresh() {
    check(
        "refresh-1k",
        &fixture("refresh-1k.bin"),
        &String::from_utf8(fixture("refresh-1k.ldif")).expect("UTF-8"),
        SyncMode::RefreshOnly,
    );
}

#[test]
fn slapd_refresh_and_persist() {
    check(
        "persist-1k",
        &fixture("persist-1k.bin"),
        &String::from_utf8(fixture("persist-1k.ldif")).expect("UTF-8"),
        SyncMode::RefreshAndPersist,
    );
}

#[test]
fn ds389_full_refresh() {
    check(
        "ds389-refresh-1k",
        &fixture("ds389-refresh-1k.bin"),
        &String::from_utf8(fixture("ds389-refresh-1k.ldif")).expect("UTF-8"),
        SyncMode::RefreshOnly,
    );
}

#[test]
fn larger_captures_when_present() {
    for name in [
        "refresh-10k",
        "refresh-10k-userattrs",
        "incr-sessionlog-10k",
        "incr-present-10k",
    ] {
        let (Some(bin), Some(ldif)) = (
            shared(&format!("{name}.bin")),
            shared(&format!("{name}.ldif")),
        ) else {
            continue;
        };
        check(
            name,
            &bin,
            &String::from_utf8(ldif).expect("UTF-8"),
            SyncMode::RefreshOnly,
        );
    }
}

/// Splits a capture into its LDAP messages.
fn messages(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() > 2 {
        let first = rest[1];
        let (header, len) = if first < 0x80 {
            (2, usize::from(first))
        } else {
            let n = usize::from(first & 0x7f);
            (
                2 + n,
                rest[2..2 + n]
                    .iter()
                    .fold(0, |a, &b| (a << 8) | usize::from(b)),
            )
        };
        out.push(&rest[..header + len]);
        rest = &rest[header + len..];
    }
    out
}

#[test]
fn hand_written_entry_reader_agrees_with_rasn_ldap() {
    for name in ["refresh-1k.bin", "persist-1k.bin", "ds389-refresh-1k.bin"] {
        let bytes = fixture(name);
        let events = decode_capture(&bytes, SyncMode::RefreshAndPersist, || usize::MAX);
        let mut entries = events.iter().filter_map(|e| match e {
            Event::Entry(e) => Some(e),
            _ => None,
        });
        let mut compared = 0;
        for message in messages(&bytes) {
            let decoded: rasn_ldap::LdapMessage =
                rasn::ber::decode(message).expect("rasn-ldap decodes it");
            let rasn_ldap::ProtocolOp::SearchResEntry(entry) = decoded.protocol_op else {
                continue;
            };
            let ours = entries.next().expect("as many entries");
            assert_eq!(ours.dn, entry.object_name.0);
            let theirs: Vec<(String, Vec<u8>)> = entry
                .attributes
                .iter()
                .flat_map(|a| a.vals.iter().map(move |v| (a.r#type.0.clone(), v.to_vec())))
                .collect();
            let mine: Vec<(String, Vec<u8>)> = ours
                .attributes
                .iter()
                .flat_map(|a| a.values.map(move |v| (a.name.to_owned(), v.to_vec())))
                .collect();
            assert_eq!(mine, theirs);
            let controls = decoded.controls.expect("a sync state control");
            let control = controls
                .iter()
                .find(|c| c.control_type.as_ref() == SYNC_STATE_OID.as_bytes())
                .expect("sync state");
            let value: SyncStateValue =
                decode(control.control_value.as_deref().expect("a value"), "oracle")
                    .expect("decodes");
            assert_eq!(SyncState::from(value.state), ours.state);
            assert_eq!(value.entry_uuid.as_ref(), ours.entry_uuid.as_bytes());
            assert_eq!(
                value.cookie.as_deref(),
                ours.cookie.as_ref().map(|c| c.as_bytes())
            );
            compared += 1;
        }
        assert!(compared > 1000, "{name}: {compared} entries compared");
    }
}
