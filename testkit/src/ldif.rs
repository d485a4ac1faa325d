//! Deterministic sample data: the directory tree a [`Slapd`](crate::slapd::Slapd) starts with,
//! as LDIF content records that `slapadd` loads, and single people as records that tests add later.
//!
//! Everything is a pure function of its arguments (no randomness), so a test can predict any
//! value: person `i` is always `uid=user{i:05}`, with the same names, mail, telephone number and
//! so on. Values are plain ASCII that never needs base64 in LDIF, so `ldapsearch` output can be
//! compared line by line with what a client decoded.

use std::io::{self, Write};

use crate::slapd::Options;

const GIVEN_NAMES: [&str; 32] = [
    "Alice", "Bruno", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jamal", "Kiri",
    "Lena", "Marco", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Samir", "Tanya", "Ulrich",
    "Vera", "Wei", "Ximena", "Yusuf", "Zoe", "Anders", "Beatriz", "Chen", "Dolores", "Elif",
    "Femi",
];

const SURNAMES: [&str; 29] = [
    "Martin",
    "Okafor",
    "Schmidt",
    "Nguyen",
    "Garcia",
    "Kowalski",
    "Rossi",
    "Tanaka",
    "Dubois",
    "Haddad",
    "Larsen",
    "Murphy",
    "Novak",
    "Oliveira",
    "Petrov",
    "Quinn",
    "Ramirez",
    "Singh",
    "Takahashi",
    "Umarov",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zimmermann",
    "Abebe",
    "Becker",
    "Costa",
    "Dunn",
];

const DEPARTMENTS: [(&str, &str); 7] = [
    ("Engineering", "Software Engineer"),
    ("Sales", "Account Manager"),
    ("Finance", "Accountant"),
    ("Support", "Support Specialist"),
    ("Research", "Research Scientist"),
    ("Operations", "Site Reliability Engineer"),
    ("Legal", "Counsel"),
];

const CITIES: [(&str, &str); 5] = [
    ("Springfield", "62701"),
    ("Riverton", "82501"),
    ("Lakewood", "80226"),
    ("Fairview", "97024"),
    ("Greenville", "29601"),
];

/// The DN of generated person `i` under `suffix`: `uid=user{i:05},ou=people,{suffix}`.
pub fn person_dn(i: usize, suffix: &str) -> String {
    format!("uid=user{i:05},ou=people,{suffix}")
}

/// The password generated person `i` gets when [`Options::passwords`] is on (every tenth person,
/// `i % 10 == 0`): `pw-user{i:05}`, stored in clear so that a test can bind with it.
pub fn person_password(i: usize) -> String {
    format!("pw-user{i:05}")
}

/// Person `i` under the default suffix `dc=example,dc=com`, as an LDIF content record ending
/// with a blank line, without a password.
///
/// The first line is `dn:` and the second `objectClass: inetOrgPerson` (the only objectClass
/// line), so inserting `changetype: add` after the DN turns it into a change record for
/// `ldapmodify`.
pub fn person_ldif(i: usize) -> String {
    let mut out = Vec::with_capacity(1024);
    // Writing to a Vec cannot fail.
    write_person(&mut out, i, crate::slapd::BASE, "example.com", false)
        .expect("writing to a Vec cannot fail");
    // Every piece written is a `&str` or formatted text.
    String::from_utf8(out).expect("the LDIF is UTF-8")
}

/// The LDIF of the default tree with `n` people, exactly what [`Slapd`](crate::slapd::Slapd)
/// loads with `Options { people: n, ..Options::default() }` (suffix, `ou=people`, the reader
/// account and the people), for benchmarks that need N realistic entries.
pub fn generate_ldif(n: usize) -> String {
    Options {
        people: n,
        ..Options::default()
    }
    .ldif()
}

/// Writes person `i` as an LDIF content record.
pub(crate) fn write_person(
    out: &mut impl Write,
    i: usize,
    suffix: &str,
    domain: &str,
    password: bool,
) -> io::Result<()> {
    let given = GIVEN_NAMES[i % GIVEN_NAMES.len()];
    let sn = SURNAMES[(i / GIVEN_NAMES.len() + i * 7) % SURNAMES.len()];
    let (department, title) = DEPARTMENTS[i % DEPARTMENTS.len()];
    let (city, postcode) = CITIES[(i / 3) % CITIES.len()];
    let initial_given = &given[..1];
    let initial_sn = &sn[..1];
    writeln!(out, "dn: {}", person_dn(i, suffix))?;
    // One objectClass line (the superclasses are implied): tests turn the record into an add by
    // putting `changetype: add` before `objectClass: inetOrgPerson`.
    out.write_all(b"objectClass: inetOrgPerson\n")?;
    writeln!(out, "uid: user{i:05}")?;
    writeln!(out, "cn: {given} {sn}")?;
    if i.is_multiple_of(4) {
        // A second value for cn, as directories often have.
        writeln!(out, "cn: {initial_given}. {sn}")?;
    }
    writeln!(out, "sn: {sn}")?;
    writeln!(out, "givenName: {given}")?;
    writeln!(out, "displayName: {given} {sn}")?;
    writeln!(out, "initials: {initial_given}{initial_sn}")?;
    writeln!(out, "mail: user{i:05}@{domain}")?;
    writeln!(
        out,
        "telephoneNumber: +1 555 {:03} {:04}",
        (i / 10_000) % 1000,
        i % 10_000
    )?;
    if i.is_multiple_of(3) {
        writeln!(
            out,
            "mobile: +1 555 9{:02} {:04}",
            (i / 10_000) % 100,
            i % 10_000
        )?;
    }
    writeln!(out, "employeeNumber: {}", 100_000 + i)?;
    writeln!(out, "departmentNumber: {}", 10 + i % DEPARTMENTS.len())?;
    writeln!(out, "ou: {department}")?;
    writeln!(out, "title: {title}")?;
    writeln!(out, "l: {city}")?;
    writeln!(out, "postalCode: {postcode}")?;
    writeln!(
        out,
        "postalAddress: {} Main Street$ {city} {postcode}",
        1 + i % 997
    )?;
    writeln!(out, "roomNumber: {}{:02}", 1 + i % 9, i % 50)?;
    if i >= 10 {
        writeln!(out, "manager: {}", person_dn(i / 10, suffix))?;
    }
    writeln!(out, "description: person {i} of the syncrepl tests")?;
    if password && i.is_multiple_of(10) {
        writeln!(out, "userPassword: {}", person_password(i))?;
    }
    out.write_all(b"\n")
}

/// Writes group `g` of `groups`: a groupOfNames with every person `i` where `i % groups == g`
/// (or the reader account when that leaves it empty, since groupOfNames needs a member).
pub(crate) fn write_group(
    out: &mut impl Write,
    g: usize,
    groups: usize,
    people: usize,
    suffix: &str,
) -> io::Result<()> {
    writeln!(out, "dn: cn=group{g:03},ou=groups,{suffix}")?;
    out.write_all(b"objectClass: top\nobjectClass: groupOfNames\n")?;
    writeln!(out, "cn: group{g:03}")?;
    writeln!(out, "description: every person i with i % {groups} == {g}")?;
    if g >= people {
        writeln!(out, "member: cn=reader,{suffix}")?;
    }
    for i in (g..people).step_by(groups) {
        writeln!(out, "member: {}", person_dn(i, suffix))?;
    }
    out.write_all(b"\n")
}

/// The mail domain for a suffix: its `dc=` components joined with dots (`example.com` for
/// `dc=example,dc=com`), or `example.com` when it has none.
pub(crate) fn mail_domain(suffix: &str) -> String {
    let parts: Vec<&str> = suffix
        .split(',')
        .filter_map(|rdn| {
            let (attr, value) = rdn.trim().split_once('=')?;
            attr.trim()
                .eq_ignore_ascii_case("dc")
                .then_some(value.trim())
        })
        .collect();
    if parts.is_empty() {
        "example.com".into()
    } else {
        parts.join(".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_records_are_deterministic_and_turn_into_adds() {
        let a = person_ldif(42);
        assert_eq!(a, person_ldif(42));
        let mut lines = a.lines();
        assert_eq!(
            lines.next(),
            Some("dn: uid=user00042,ou=people,dc=example,dc=com")
        );
        assert_eq!(lines.next(), Some("objectClass: inetOrgPerson"));
        assert_eq!(a.matches("objectClass:").count(), 1);
        assert!(a.ends_with("\n\n"));
        assert!(a.contains("mail: user00042@example.com\n"));
        assert!(a.contains("manager: uid=user00004,ou=people,dc=example,dc=com\n"));
        assert!(!a.contains("userPassword"));
        // No value needs base64: no leading space, colon or '<', ASCII only.
        for line in a.lines().filter(|l| !l.is_empty()) {
            let (_, value) = line.split_once(": ").expect("attr: value");
            assert!(value.is_ascii() && !value.starts_with([' ', ':', '<']));
            assert!(!value.ends_with(' '), "{line}");
        }
    }

    #[test]
    fn passwords_go_to_every_tenth_person() {
        let mut out = Vec::new();
        write_person(&mut out, 20, "o=test", "test.org", true).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("userPassword: pw-user00020\n"));
        assert!(text.contains("mail: user00020@test.org\n"));
        let mut out = Vec::new();
        write_person(&mut out, 21, "o=test", "test.org", true).expect("write");
        assert!(!String::from_utf8_lossy(&out).contains("userPassword"));
    }

    #[test]
    fn groups_share_out_people() {
        let mut out = Vec::new();
        write_group(&mut out, 1, 3, 7, "dc=x").expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let members: Vec<&str> = text.lines().filter(|l| l.starts_with("member:")).collect();
        assert_eq!(
            members,
            [
                "member: uid=user00001,ou=people,dc=x",
                "member: uid=user00004,ou=people,dc=x"
            ]
        );
        let mut out = Vec::new();
        write_group(&mut out, 5, 6, 2, "dc=x").expect("write");
        assert!(String::from_utf8_lossy(&out).contains("member: cn=reader,dc=x\n"));
    }

    #[test]
    fn mail_domains() {
        assert_eq!(mail_domain("dc=example,dc=com"), "example.com");
        assert_eq!(mail_domain("ou=x, DC=corp ,dc=test"), "corp.test");
        assert_eq!(mail_domain("o=acme"), "example.com");
    }

    #[test]
    fn the_generated_tree_has_every_person_once() {
        let ldif = generate_ldif(25);
        assert_eq!(ldif.matches("\ndn: uid=user").count(), 25);
        assert!(ldif.starts_with("dn: dc=example,dc=com\n"));
        assert!(ldif.contains("dn: cn=reader,dc=example,dc=com\n"));
    }
}
