//! End-to-end tests of the `syncrepl` command against a real slapd.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{dump, interrupt, sorted_records, syncrepl, temp_state, wait_line};

use syncrepl_testkit::slapd::{person_ldif, Options, Slapd, BASE};

const FILTER: &str = "(objectClass=inetOrgPerson)";

fn url(slapd: &Slapd) -> String {
    format!("{}/{BASE}??sub?{FILTER}", slapd.ldap_url())
}

fn refresh_only(slapd: &Slapd, state: &Path) -> Output {
    common::refresh_only(&url(slapd), &[], state)
}

fn assert_dump_equals_ldapsearch(slapd: &Slapd, state: &Path) {
    let ours = sorted_records(&dump(state));
    let theirs = sorted_records(&slapd.search_anonymous(BASE, FILTER));
    assert_eq!(ours.len(), theirs.len());
    assert!(ours == theirs, "dump differs from ldapsearch");
}

#[test]
fn full_then_incremental_within_and_beyond_the_session_log() {
    let slapd = Slapd::start(Options {
        people: 2000,
        sessionlog: 100,
        ..Options::default()
    });
    let state = temp_state("incr");
    refresh_only(&slapd, &state);
    assert_dump_equals_ldapsearch(&slapd, &state);

    let mut rng = fastrand::Rng::with_seed(7);
    let mut next_new = 5000;
    let mut changes = |n: usize| {
        for _ in 0..n {
            let i = rng.usize(0..2000);
            let dn = format!("uid=user{i:05},ou=people,{BASE}");
            let ldif = match rng.u8(0..5) {
                0 => format!(
                    "dn: {dn}\nchangetype: modify\nreplace: description\ndescription: changed {}\n",
                    rng.u32(..)
                ),
                1 => format!(
                    "dn: {dn}\nchangetype: modify\nadd: employeeType\nemployeeType: former\n"
                ),
                2 => format!(
                    "dn: {dn}\nchangetype: modrdn\nnewrdn: uid=moved{}\ndeleteoldrdn: 0\n",
                    rng.u32(..)
                ),
                3 => format!("dn: {dn}\nchangetype: delete\n"),
                _ => {
                    next_new += 1;
                    person_ldif(next_new).replacen(
                        "objectClass:",
                        "changetype: add\nobjectClass:",
                        1,
                    )
                }
            };
            // A change may hit an entry that an earlier one renamed or deleted: that is fine.
            let _ = slapd.apply_ldif(&ldif);
        }
    };
    changes(30);
    let out = refresh_only(&slapd, &state);
    assert!(
        !out.stdout.is_empty(),
        "the incremental refresh printed its changes"
    );
    assert_dump_equals_ldapsearch(&slapd, &state);
    changes(300);
    refresh_only(&slapd, &state);
    assert_dump_equals_ldapsearch(&slapd, &state);
    std::fs::remove_dir_all(&state).ok();
}

/// Starts `syncrepl watch` in persist mode and returns the child and a channel of stdout lines.
fn watch(slapd: &Slapd, state: &Path, format: &str) -> (Child, mpsc::Receiver<String>) {
    common::watch(&url(slapd), &[], state, format)
}

#[test]
fn persist_prints_every_change_in_each_format_and_the_ldif_replays() {
    let slapd = Slapd::start(Options {
        people: 20,
        ..Options::default()
    });
    let replica = Slapd::start(Options {
        people: 0,
        ..Options::default()
    });
    let mut ldif_stream = String::new();
    for format in ["text", "json", "ldif"] {
        let state = temp_state(format);
        let (child, rx) = watch(&slapd, &state, format);
        let tag = format!("{format}x");
        slapd.modify(
            &person_ldif(700)
                .replace("user00700", &format!("{tag}a"))
                .replacen("objectClass:", "changetype: add\nobjectClass:", 1),
        );
        let add = wait_line(&rx, &format!("{tag}a"));
        slapd.modify(&format!(
            "dn: uid={tag}a,ou=people,{BASE}\nchangetype: modify\nreplace: sn\nsn: Modified\n"
        ));
        let modify = wait_line(&rx, "Modified");
        slapd.modify(&format!("dn: uid={tag}a,ou=people,{BASE}\nchangetype: modrdn\nnewrdn: uid={tag}b\ndeleteoldrdn: 1\n"));
        let rename = wait_line(&rx, &format!("uid={tag}b"));
        slapd.modify(&format!(
            "dn: uid={tag}b,ou=people,{BASE}\nchangetype: delete\n"
        ));
        let delete = wait_line(
            &rx,
            if format == "json" {
                "\"delete\""
            } else {
                "delete"
            },
        );
        assert_eq!(interrupt(child).code(), Some(0), "a clean stop exits 0");
        let rest: Vec<String> = rx.try_iter().collect();
        match format {
            "text" => {
                assert!(add
                    .iter()
                    .any(|l| l.starts_with("add ") && l.contains("textxa")));
                assert!(modify
                    .iter()
                    .any(|l| l.starts_with("modify ") && l.contains("sn = [Modified]")));
                assert!(rename
                    .iter()
                    .any(|l| l.starts_with("rename ") && l.contains("-> uid=textxb")));
                assert!(
                    delete.iter().any(|l| l.starts_with("delete  uid=textxb")),
                    "{delete:?}"
                );
            }
            "json" => {
                for (lines, kind) in [
                    (&add, "add"),
                    (&modify, "modify"),
                    (&rename, "rename"),
                    (&delete, "delete"),
                ] {
                    let line = lines
                        .iter()
                        .rev()
                        .find(|l| l.starts_with('{'))
                        .expect("a JSON line");
                    let value: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
                    assert_eq!(value["kind"], kind, "{line}");
                    assert!(value["seq"].as_u64().is_some() && value["entryUUID"].is_string());
                }
            }
            _ => {
                assert!(
                    !dump(&state).contains("ldifxb"),
                    "the deleted entry left the mirror"
                );
                ldif_stream = [add, modify, rename, delete, rest].concat().join("\n");
            }
        }
        std::fs::remove_dir_all(&state).ok();
    }
    // The whole LDIF stream of the last run — the first refresh's adds, then every change —
    // replayed on an empty server reproduces the source.
    let errors = replica.apply_ldif(&ldif_stream);
    assert!(errors.trim().is_empty(), "{errors}");
    assert!(ldif_stream.contains("changetype: modrdn"));
    assert_eq!(
        sorted_records(&replica.search_anonymous(BASE, FILTER)),
        sorted_records(&slapd.search_anonymous(BASE, FILTER))
    );
}

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    let slapd = Slapd::start(Options {
        people: 1500,
        ..Options::default()
    });
    let state = temp_state("kill9");
    let mut rng = fastrand::Rng::with_seed(42);
    let rounds = std::env::var("SYNCREPL_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    for round in 0..rounds {
        let mut child = syncrepl()
            .args(["watch", &url(&slapd), "--state"])
            .arg(&state)
            .args(["--format", "ldif", "--retry", "0.1 100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start");
        for k in 0..rng.usize(0..6) {
            let i = rng.usize(0..1500);
            let _ = slapd.apply_ldif(&format!(
                "dn: uid=user{i:05},ou=people,{BASE}\nchangetype: modify\nreplace: description\ndescription: round {round} change {k}\n"
            ));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..400)));
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }
    refresh_only(&slapd, &state);
    assert_dump_equals_ldapsearch(&slapd, &state);
    std::fs::remove_dir_all(&state).ok();
}

#[test]
fn bad_input_gets_clear_errors_and_loses_nothing() {
    let slapd = Slapd::start(Options {
        people: 30,
        ..Options::default()
    });
    let state = temp_state("bad");

    let out = syncrepl()
        .args(["watch", "ldap://127.0.0.1/dc=x??subtree", "--state"])
        .arg(&state)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid LDAP URL at byte") && err.contains("subtree"),
        "{err}"
    );

    refresh_only(&slapd, &state);
    let before = dump(&state);

    let other = syncrepl()
        .args([
            "watch",
            &format!("{}/{BASE}??sub?(uid=*)", slapd.ldap_url()),
            "--state",
        ])
        .arg(&state)
        .args(["--refresh-only"])
        .output()
        .expect("run");
    assert_eq!(other.status.code(), Some(8));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("different search"),
        "{:?}",
        other
    );
    assert_eq!(dump(&state), before);

    let (child, _rx) = watch(&slapd, &state, "text");
    let second = syncrepl()
        .args(["watch", &url(&slapd), "--state"])
        .arg(&state)
        .output()
        .expect("run");
    assert_eq!(second.status.code(), Some(8));
    assert!(String::from_utf8_lossy(&second.stderr).contains("locked by another process"));
    assert_eq!(interrupt(child).code(), Some(0));

    let log = state.join("state.log");
    let mut bytes = std::fs::read(&log).expect("log");
    let len = bytes.len();
    bytes.extend_from_slice(&[0x40, 0, 0, 0, 2, 1, 2, 3]);
    std::fs::write(&log, &bytes).expect("write a torn tail");
    assert_eq!(dump(&state), before, "a torn tail is ignored");
    refresh_only(&slapd, &state);
    let after = std::fs::read(&log).expect("log");
    assert_ne!(
        after.get(len..len + 8),
        Some(&bytes[len..]),
        "and truncated"
    );

    let mut damaged = std::fs::read(&log).expect("log");
    damaged[30] ^= 0xff;
    std::fs::write(&log, &damaged).expect("damage");
    let out = syncrepl()
        .args(["status", "--state"])
        .arg(&state)
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(8));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("damaged at offset"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read(&log).expect("log"),
        damaged,
        "nothing was wiped"
    );

    let mut child = syncrepl()
        .args(["status", "--state", "/nonexistent/state"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert_eq!(child.wait().expect("wait").code(), Some(8));
    assert!(err.contains("/nonexistent/state"), "{err}");
    std::fs::remove_dir_all(&state).ok();
}

#[test]
fn status_describes_the_state() {
    let slapd = Slapd::start(Options {
        people: 10,
        ..Options::default()
    });
    let state = temp_state("status");
    refresh_only(&slapd, &state);
    let out = syncrepl()
        .args(["status", "--state"])
        .arg(&state)
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains(&format!("search:       {BASE}??sub?{FILTER}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("server:       {}", slapd.ldap_url())),
        "{text}"
    );
    assert!(text.contains("cookie:       rid="), "{text}");
    assert!(text.contains("entries:      10"), "{text}");
    std::fs::remove_dir_all(&state).ok();
}
