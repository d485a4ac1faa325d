//! LDIF output (RFC 2849): content records for dumps, change records for the change stream.
//!
//! Values are written the way OpenLDAP's `ldapsearch` writes them, so that a dump compares byte for
//! byte with `ldapsearch -LLL` after sorting: base64 (`::`) when RFC 2849 requires it or for
//! `userPassword`, and lines folded at 78 columns as ldapsearch folds them.

use std::io::{self, Write};

use base64::Engine;
use syncrepl_proto::AttributeList;

/// Width at which `ldapsearch` folds LDIF lines.
pub const LDIF_WRAP: usize = 78;

/// How to write one attribute's values in a change record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModOp {
    /// `add:` these values.
    Add,
    /// `delete:` these values (or the whole attribute when no values are given).
    Delete,
    /// `replace:` with these values.
    Replace,
}

/// One `add:`/`delete:`/`replace:` block of an LDIF modify record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modification {
    /// What to do.
    pub op: ModOp,
    /// The attribute description.
    pub attribute: String,
    /// The values concerned.
    pub values: Vec<Vec<u8>>,
}

/// Whether RFC 2849 (or ldapsearch's habit) wants this value base64-encoded.
fn needs_base64(attribute: &str, value: &[u8]) -> bool {
    if attribute.eq_ignore_ascii_case("userPassword") || attribute.ends_with(";binary") {
        return true;
    }
    match value.first() {
        None => return false,
        Some(b' ' | b':' | b'<') => return true,
        Some(_) => {}
    }
    if value.last() == Some(&b' ') {
        return true;
    }
    value.iter().any(|&b| !(0x20..0x7f).contains(&b))
}

/// Writes `name: value` (or `name:: base64`), folded at `wrap` columns (0: no folding).
pub fn write_line(
    out: &mut (impl Write + ?Sized),
    name: &str,
    value: &[u8],
    wrap: usize,
) -> io::Result<()> {
    let mut line = Vec::with_capacity(name.len() + value.len() + 4);
    line.extend_from_slice(name.as_bytes());
    if needs_base64(name, value) {
        line.extend_from_slice(b":: ");
        line.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(value)
                .as_bytes(),
        );
    } else {
        line.extend_from_slice(b": ");
        line.extend_from_slice(value);
    }
    write_folded(out, &line, wrap)
}

fn write_folded(out: &mut (impl Write + ?Sized), line: &[u8], wrap: usize) -> io::Result<()> {
    if wrap < 2 || line.len() <= wrap {
        out.write_all(line)?;
        return out.write_all(b"\n");
    }
    let (first, mut rest) = line.split_at(wrap);
    out.write_all(first)?;
    out.write_all(b"\n")?;
    while !rest.is_empty() {
        let take = rest.len().min(wrap - 1);
        out.write_all(b" ")?;
        out.write_all(&rest[..take])?;
        out.write_all(b"\n")?;
        rest = &rest[take..];
    }
    Ok(())
}

/// Writes an entry as an LDIF content record followed by a blank line.
pub fn write_entry(
    out: &mut (impl Write + ?Sized),
    dn: &str,
    attributes: &AttributeList,
    wrap: usize,
) -> io::Result<()> {
    write_record(out, dn, None, attributes, wrap)
}

/// Writes a `changetype: add` record.
pub fn write_add(
    out: &mut (impl Write + ?Sized),
    dn: &str,
    attributes: &AttributeList,
    wrap: usize,
) -> io::Result<()> {
    write_record(out, dn, Some("changetype: add\n"), attributes, wrap)
}

/// The DN, an optional changetype line, every value, and the blank line that ends a record.
fn write_record(
    out: &mut (impl Write + ?Sized),
    dn: &str,
    changetype: Option<&str>,
    attributes: &AttributeList,
    wrap: usize,
) -> io::Result<()> {
    write_line(out, "dn", dn.as_bytes(), wrap)?;
    if let Some(line) = changetype {
        out.write_all(line.as_bytes())?;
    }
    for attribute in attributes {
        for value in attribute.values {
            write_line(out, attribute.name, value, wrap)?;
        }
    }
    out.write_all(b"\n")
}

/// Writes a `changetype: delete` record.
pub fn write_delete(out: &mut (impl Write + ?Sized), dn: &str, wrap: usize) -> io::Result<()> {
    write_line(out, "dn", dn.as_bytes(), wrap)?;
    out.write_all(b"changetype: delete\n\n")
}

/// Writes a `changetype: modify` record; nothing when there are no modifications.
pub fn write_modify(
    out: &mut (impl Write + ?Sized),
    dn: &str,
    modifications: &[Modification],
    wrap: usize,
) -> io::Result<()> {
    if modifications.is_empty() {
        return Ok(());
    }
    write_line(out, "dn", dn.as_bytes(), wrap)?;
    out.write_all(b"changetype: modify\n")?;
    for m in modifications {
        let op = match m.op {
            ModOp::Add => "add",
            ModOp::Delete => "delete",
            ModOp::Replace => "replace",
        };
        write_line(out, op, m.attribute.as_bytes(), wrap)?;
        for value in &m.values {
            write_line(out, &m.attribute, value, wrap)?;
        }
        out.write_all(b"-\n")?;
    }
    out.write_all(b"\n")
}

/// Writes a `changetype: modrdn` record moving `old_dn` to `new_dn` (RFC 2849 §4).
///
/// `deleteoldrdn: 1` is written when the old RDN's values are gone from the entry, which is what
/// happened on the server; `newsuperior` when the parent changed.
pub fn write_modrdn(
    out: &mut (impl Write + ?Sized),
    old_dn: &str,
    new_dn: &str,
    delete_old_rdn: bool,
    wrap: usize,
) -> io::Result<()> {
    let (new_rdn, new_parent) = split_rdn(new_dn);
    let (_, old_parent) = split_rdn(old_dn);
    write_line(out, "dn", old_dn.as_bytes(), wrap)?;
    out.write_all(b"changetype: modrdn\n")?;
    write_line(out, "newrdn", new_rdn.as_bytes(), wrap)?;
    writeln!(out, "deleteoldrdn: {}", u8::from(delete_old_rdn))?;
    if !new_parent.eq_ignore_ascii_case(old_parent) {
        write_line(out, "newsuperior", new_parent.as_bytes(), wrap)?;
    }
    out.write_all(b"\n")
}

/// Splits a DN into its first RDN and its parent at the first unescaped comma.
pub fn split_rdn(dn: &str) -> (&str, &str) {
    let bytes = dn.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => return (&dn[..i], dn[i + 1..].trim_start()),
            _ => i += 1,
        }
    }
    (dn, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).expect("write to a Vec");
        String::from_utf8(out).expect("LDIF is ASCII here")
    }

    #[test]
    fn values_and_base64() {
        assert_eq!(text(|o| write_line(o, "cn", b"Ann", 76)), "cn: Ann\n");
        assert_eq!(text(|o| write_line(o, "cn", b" x", 76)), "cn:: IHg=\n");
        assert_eq!(text(|o| write_line(o, "cn", b":x", 76)), "cn:: Ong=\n");
        assert_eq!(text(|o| write_line(o, "cn", b"x ", 76)), "cn:: eCA=\n");
        assert_eq!(
            text(|o| write_line(o, "cn", "é".as_bytes(), 76)),
            "cn:: w6k=\n"
        );
        assert_eq!(
            text(|o| write_line(o, "userPassword", b"secret", 76)),
            "userPassword:: c2VjcmV0\n"
        );
        assert_eq!(
            text(|o| write_line(o, "description", b"", 76)),
            "description: \n"
        );
    }

    #[test]
    fn folding_like_ldapsearch() {
        let value = "x".repeat(200);
        let out = text(|o| write_line(o, "description", value.as_bytes(), LDIF_WRAP));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0].len(), 78);
        assert_eq!(lines[1].len(), 78);
        assert!(lines[1..]
            .iter()
            .all(|l| l.starts_with(' ') && l.len() <= 78));
        let unfolded: String = lines
            .iter()
            .enumerate()
            .map(|(i, l)| if i == 0 { *l } else { &l[1..] })
            .collect();
        assert_eq!(unfolded, format!("description: {value}"));
        let unwrapped = text(|o| write_line(o, "description", value.as_bytes(), 0));
        assert_eq!(unwrapped.lines().count(), 1);
    }

    #[test]
    fn change_records() {
        let attrs = AttributeList::build([("cn", vec![b"Ann".as_slice()])]);
        assert_eq!(
            text(|o| write_add(o, "uid=a,dc=x", &attrs, 76)),
            "dn: uid=a,dc=x\nchangetype: add\ncn: Ann\n\n"
        );
        assert_eq!(
            text(|o| write_delete(o, "uid=a,dc=x", 76)),
            "dn: uid=a,dc=x\nchangetype: delete\n\n"
        );
        let mods = [
            Modification {
                op: ModOp::Delete,
                attribute: "mail".into(),
                values: vec![b"a@x".to_vec()],
            },
            Modification {
                op: ModOp::Add,
                attribute: "mail".into(),
                values: vec![b"b@x".to_vec()],
            },
        ];
        assert_eq!(
            text(|o| write_modify(o, "uid=a,dc=x", &mods, 76)),
            "dn: uid=a,dc=x\nchangetype: modify\ndelete: mail\nmail: a@x\n-\nadd: mail\nmail: b@x\n-\n\n"
        );
        assert_eq!(
            text(|o| write_modrdn(o, "uid=a,ou=p,dc=x", "uid=b,ou=q,dc=x", true, 76)),
            "dn: uid=a,ou=p,dc=x\nchangetype: modrdn\nnewrdn: uid=b\ndeleteoldrdn: 1\nnewsuperior: ou=q,dc=x\n\n"
        );
        assert_eq!(split_rdn("cn=a\\,b,dc=x"), ("cn=a\\,b", "dc=x"));
        assert_eq!(split_rdn("dc=x"), ("dc=x", ""));
    }
}
