//! End-to-end tests of the `syncrepl` command against 389 Directory Server's Content
//! Synchronization plugin: the scenarios of the slapd tests, on one throwaway instance (creating
//! one takes about 8 s), plus the server's own ways: entryUUIDs derived from nsUniqueId, its
//! `host:port#bind DN:base:filter#changenumber` cookie, and refreshes that end with
//! refreshDeletes FALSE without presenting anything.

mod common;

use std::path::Path;

use common::{dump, interrupt, refresh_only, sorted_records, temp_state, wait_line, watch};
use syncrepl_testkit::dirsrv::{DirSrv, READER_DN, READER_PW};
use syncrepl_testkit::slapd::{person_ldif, BASE};

const FILTER: &str = "(objectClass=inetOrgPerson)";
const PEOPLE: usize = 300;

struct Client {
    url: String,
    password_file: String,
}

impl Client {
    fn new(ds: &DirSrv, dir: &Path) -> Client {
        let file = dir.join("reader.pw");
        std::fs::write(&file, READER_PW).expect("write the password file");
        Client {
            url: format!("{}/{BASE}??sub?{FILTER}", ds.ldap_url()),
            password_file: file.display().to_string(),
        }
    }

    fn args(&self) -> [&str; 5] {
        [
            "-D",
            READER_DN,
            "--password-file",
            &self.password_file,
            "--allow-cleartext-password",
        ]
    }

    /// One refreshOnly sync into `state`: what it printed (LDIF change records).
    fn refresh(&self, state: &Path) -> String {
        let out = refresh_only(&self.url, &self.args(), state);
        String::from_utf8(out.stdout).expect("UTF-8")
    }
}

fn assert_dump_equals_ldapsearch(ds: &DirSrv, state: &Path) {
    let ours = sorted_records(&dump(state));
    let theirs = sorted_records(&ds.search(BASE, FILTER, &[]).expect("ldapsearch"));
    assert_eq!(ours.len(), theirs.len(), "entry count");
    let differ: Vec<_> = ours
        .iter()
        .filter(|r| !theirs.contains(r))
        .take(3)
        .collect();
    assert!(
        differ.is_empty(),
        "dump differs from ldapsearch: {differ:#?}"
    );
}

fn status(state: &Path) -> String {
    let out = common::syncrepl()
        .args(["status", "--state"])
        .arg(state)
        .output()
        .expect("status");
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn person(i: usize) -> String {
    person_ldif(i).replacen("objectClass:", "changetype: add\nobjectClass:", 1)
}

#[test]
fn syncrepl_mirrors_389_directory_server() {
    let ds = DirSrv::start(PEOPLE).unwrap_or_else(|e| panic!("389 Directory Server: {e}"));
    let work = temp_state("389");
    std::fs::create_dir_all(&work).expect("work directory");
    let client = Client::new(&ds, &work);
    let state = work.join("state");

    // A full refresh equals ldapsearch, and the cookie is 389's.
    let printed = client.refresh(&state);
    assert_eq!(printed.matches("changetype: add").count(), PEOPLE);
    assert_dump_equals_ldapsearch(&ds, &state);
    let cookie = status(&state);
    assert!(
        cookie.contains(&format!("127.0.0.1:{}#", ds.port()))
            || cookie.contains(&format!(":{}#{READER_DN}:", ds.port())),
        "389's cookie form: {cookie}"
    );

    // entryUUIDs are 389's nsUniqueIds: the same 128 bits, written differently.
    let unique_id = ds
        .search(
            &format!("uid=user00001,ou=people,{BASE}"),
            FILTER,
            &["nsUniqueId"],
        )
        .expect("nsUniqueId");
    let unique_id: String = unique_id
        .lines()
        .find_map(|l| {
            l.strip_prefix("nsuniqueid: ")
                .or(l.strip_prefix("nsUniqueId: "))
        })
        .expect("an nsUniqueId")
        .replace('-', "");
    let entries = common::syncrepl()
        .args(["dump", "--format", "json", "--state"])
        .arg(&state)
        .output()
        .expect("dump");
    let entries = String::from_utf8(entries.stdout).expect("UTF-8");
    let first: serde_json::Value = entries
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["dn"] == format!("uid=user00001,ou=people,{BASE}"))
        .expect("user00001 in the mirror");
    let uuid = first["entryUUID"]
        .as_str()
        .expect("entryUUID")
        .replace('-', "");
    assert_eq!(uuid, unique_id.to_ascii_lowercase());

    // An incremental refresh with a single modify: 389 ends it with refreshDeletes FALSE and no
    // present message, which must not delete the entries it did not send.
    ds.modify(&format!(
        "dn: uid=user00010,ou=people,{BASE}\nchangetype: modify\nreplace: sn\nsn: Ten\n"
    ))
    .expect("modify");
    let printed = client.refresh(&state);
    assert!(printed.contains("sn: Ten"), "{printed}");
    assert!(!printed.contains("changetype: delete"), "{printed}");
    assert_dump_equals_ldapsearch(&ds, &state);
    let printed = client.refresh(&state);
    assert!(printed.trim().is_empty(), "nothing changed: {printed}");
    assert_dump_equals_ldapsearch(&ds, &state);

    // Mixed changes: modify, rename, delete, add.
    let mut ldif = String::new();
    for i in 20..40 {
        ldif += &format!(
            "dn: uid=user{i:05},ou=people,{BASE}\nchangetype: modify\nreplace: description\ndescription: changed {i}\n\n"
        );
    }
    for i in 40..45 {
        ldif += &format!(
            "dn: uid=user{i:05},ou=people,{BASE}\nchangetype: modrdn\nnewrdn: uid=renamed{i:05}\ndeleteoldrdn: 1\n\n"
        );
    }
    for i in 45..50 {
        ldif += &format!("dn: uid=user{i:05},ou=people,{BASE}\nchangetype: delete\n\n");
    }
    for i in 1000..1010 {
        ldif += &person(i);
        ldif.push('\n');
    }
    ds.modify(&ldif).expect("mixed changes");
    let printed = client.refresh(&state);
    assert_eq!(
        printed.matches("changetype: delete").count(),
        5,
        "{printed}"
    );
    assert_eq!(
        printed.matches("changetype: modrdn").count(),
        5,
        "{printed}"
    );
    assert_dump_equals_ldapsearch(&ds, &state);

    // Persist: every change is printed as it happens.
    let (child, rx) = watch(&client.url, &client.args(), &state, "text");
    ds.modify(&person(2000)).expect("add");
    wait_line(&rx, "add     uid=user02000");
    ds.modify(&format!(
        "dn: uid=user00060,ou=people,{BASE}\nchangetype: modify\nreplace: sn\nsn: Persisted\n"
    ))
    .expect("modify");
    wait_line(&rx, "sn = [Persisted]");
    ds.modify(&format!(
        "dn: uid=user00061,ou=people,{BASE}\nchangetype: modrdn\nnewrdn: uid=moved00061\ndeleteoldrdn: 1\n"
    ))
    .expect("modrdn");
    wait_line(&rx, "-> uid=moved00061");
    ds.modify(&format!(
        "dn: uid=user00062,ou=people,{BASE}\nchangetype: delete\n"
    ))
    .expect("delete");
    wait_line(&rx, "delete  uid=user00062");
    assert_eq!(interrupt(child).code(), Some(0), "a clean stop exits 0");
    assert_dump_equals_ldapsearch(&ds, &state);

    // Restart from the state: what changed while nothing ran is caught up.
    ds.modify(&format!(
        "dn: uid=user00070,ou=people,{BASE}\nchangetype: delete\n\ndn: uid=user00071,ou=people,{BASE}\nchangetype: modify\nreplace: sn\nsn: Offline\n"
    ))
    .expect("changes while stopped");
    let (child, rx) = watch(&client.url, &client.args(), &state, "text");
    let _ = rx.try_iter().count();
    assert_eq!(interrupt(child).code(), Some(0));
    let mirrored = dump(&state);
    assert!(mirrored.contains("sn: Offline"));
    assert!(!mirrored.contains("uid=user00070,"));
    assert_dump_equals_ldapsearch(&ds, &state);

    // An entry that stops matching the filter: whether or not 389 reports it, `--reload` brings
    // the mirror back to exactly what the search sees, printing only the differences.
    let filtered = Client {
        url: format!(
            "{}/{BASE}??sub?(&{FILTER}(!(description=retired)))",
            ds.ldap_url()
        ),
        password_file: client.password_file.clone(),
    };
    let narrow = work.join("narrow");
    filtered.refresh(&narrow);
    ds.modify(&format!(
        "dn: uid=user00080,ou=people,{BASE}\nchangetype: modify\nreplace: description\ndescription: retired\n"
    ))
    .expect("retire");
    filtered.refresh(&narrow);
    let reloaded = refresh_only(
        &filtered.url,
        &[&filtered.args()[..], &["--reload"]].concat(),
        &narrow,
    );
    let reloaded = String::from_utf8(reloaded.stdout).expect("UTF-8");
    let records: Vec<&str> = reloaded
        .lines()
        .filter(|l| l.starts_with("changetype:"))
        .collect();
    assert!(
        records.is_empty()
            || (records == ["changetype: delete"]
                && reloaded.contains(&format!("dn: uid=user00080,ou=people,{BASE}"))),
        "a reload prints only differences: {reloaded}"
    );
    let ours = sorted_records(&dump(&narrow));
    let theirs = sorted_records(
        &ds.search(BASE, &format!("(&{FILTER}(!(description=retired)))"), &[])
            .expect("ldapsearch"),
    );
    assert_eq!(ours, theirs);

    std::fs::remove_dir_all(&work).ok();
}
