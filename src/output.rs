//! How `syncrepl watch` prints changes: readable text, LDIF change records, or JSON lines.

use std::io::{self, Write};

use base64::Engine;
use serde_json::{json, Map, Value};
use syncrepl_proto::{AttributeList, EntryUuid};

use crate::cli::Format;
use crate::ldif::{self, ModOp, Modification, LDIF_WRAP};

/// What happened to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// It entered the mirror.
    Add,
    /// Its attributes changed.
    Modify,
    /// Its DN changed (and perhaps its attributes).
    Rename,
    /// It left the mirror.
    Delete,
}

impl ChangeKind {
    fn name(self) -> &'static str {
        match self {
            ChangeKind::Add => "add",
            ChangeKind::Modify => "modify",
            ChangeKind::Rename => "rename",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One change to print.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The event's sequence number (monotonic across restarts).
    pub seq: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The entryUUID.
    pub uuid: EntryUuid,
    /// The entry's DN now (for a delete: its last DN).
    pub dn: &'a str,
    /// The DN before a rename.
    pub old_dn: Option<&'a str>,
    /// Attributes before (modify, rename, delete).
    pub old: Option<&'a AttributeList>,
    /// Attributes after (add, modify, rename).
    pub new: Option<&'a AttributeList>,
    /// Attributes to leave out of LDIF and text modify records: those a preceding modrdn already
    /// changed through the RDN.
    pub skip: &'a [String],
}

impl Change<'_> {
    fn modifications(&self) -> Vec<Modification> {
        modifications(self.old, self.new)
            .into_iter()
            .filter(|m| {
                !self
                    .skip
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&m.attribute))
            })
            .collect()
    }
}

/// Values of an attribute, found case-insensitively.
fn values<'a>(list: Option<&'a AttributeList>, name: &str) -> Vec<&'a [u8]> {
    list.and_then(|l| l.get(name))
        .map(Iterator::collect)
        .unwrap_or_default()
}

fn names(list: Option<&AttributeList>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for attribute in list.into_iter().flatten() {
        if !out.iter().any(|n| n.eq_ignore_ascii_case(attribute.name)) {
            out.push(attribute.name.to_owned());
        }
    }
    out
}

/// The LDIF modifications that turn `old` into `new`: `delete` for values that went, `add` for
/// values that came, `replace` when every old value went and new ones came.
pub fn modifications(
    old: Option<&AttributeList>,
    new: Option<&AttributeList>,
) -> Vec<Modification> {
    let mut all = names(old);
    for n in names(new) {
        if !all.iter().any(|a| a.eq_ignore_ascii_case(&n)) {
            all.push(n);
        }
    }
    let mut out = Vec::new();
    for name in all {
        let before = values(old, &name);
        let after = values(new, &name);
        let removed: Vec<Vec<u8>> = before
            .iter()
            .filter(|v| !after.contains(v))
            .map(|v| v.to_vec())
            .collect();
        let added: Vec<Vec<u8>> = after
            .iter()
            .filter(|v| !before.contains(v))
            .map(|v| v.to_vec())
            .collect();
        if removed.is_empty() && added.is_empty() {
            continue;
        }
        if after.is_empty() {
            out.push(Modification {
                op: ModOp::Delete,
                attribute: name,
                values: Vec::new(),
            });
        } else if removed.len() == before.len() && !before.is_empty() {
            out.push(Modification {
                op: ModOp::Replace,
                attribute: name,
                values: after.iter().map(|v| v.to_vec()).collect(),
            });
        } else {
            if !removed.is_empty() {
                out.push(Modification {
                    op: ModOp::Delete,
                    attribute: name.clone(),
                    values: removed,
                });
            }
            if !added.is_empty() {
                out.push(Modification {
                    op: ModOp::Add,
                    attribute: name,
                    values: added,
                });
            }
        }
    }
    out
}

/// Whether the values of the old DN's first RDN are gone from the new attributes, which is what
/// `deleteoldrdn: 1` would have done.
fn old_rdn_deleted(old_dn: &str, new: Option<&AttributeList>) -> bool {
    let (rdn, _) = ldif::split_rdn(old_dn);
    rdn.split('+').all(|ava| match ava.split_once('=') {
        Some((attr, value)) => !values(new, attr.trim())
            .iter()
            .any(|v| v.eq_ignore_ascii_case(value.trim().as_bytes())),
        None => true,
    })
}

fn json_values<'a>(vals: impl Iterator<Item = &'a [u8]>) -> Value {
    Value::Array(
        vals.map(|v| match std::str::from_utf8(v) {
            Ok(text) => Value::String(text.to_owned()),
            Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(v) }),
        })
        .collect(),
    )
}

/// An attribute list as a JSON object of arrays; values that are not UTF-8 become
/// `{"base64": "…"}`.
pub fn json_attributes(list: &AttributeList) -> Value {
    let mut map = Map::new();
    for attribute in list {
        let vals = json_values(attribute.values.clone());
        match map.get_mut(attribute.name) {
            Some(Value::Array(existing)) => {
                if let Value::Array(more) = vals {
                    existing.extend(more);
                }
            }
            _ => {
                map.insert(attribute.name.to_owned(), vals);
            }
        }
    }
    Value::Object(map)
}

fn text_value(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(t) if !t.chars().any(char::is_control) => t.to_owned(),
        _ => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(v)
        ),
    }
}

/// Writes one change in the chosen format.
pub fn write_change(out: &mut impl Write, format: Format, change: &Change<'_>) -> io::Result<()> {
    match format {
        Format::Ldif => write_ldif(out, change),
        Format::Json => write_json(out, change),
        Format::Text => write_text(out, change),
    }
}

fn write_ldif(out: &mut impl Write, c: &Change<'_>) -> io::Result<()> {
    writeln!(out, "# {} {} entryUUID={}", c.seq, c.kind.name(), c.uuid)?;
    match c.kind {
        ChangeKind::Add => match c.new {
            Some(attrs) => ldif::write_add(out, c.dn, attrs, LDIF_WRAP),
            None => ldif::write_add(out, c.dn, &AttributeList::default(), LDIF_WRAP),
        },
        ChangeKind::Delete => ldif::write_delete(out, c.dn, LDIF_WRAP),
        ChangeKind::Modify => ldif::write_modify(out, c.dn, &c.modifications(), LDIF_WRAP),
        ChangeKind::Rename => {
            let old_dn = c.old_dn.unwrap_or(c.dn);
            ldif::write_modrdn(out, old_dn, c.dn, old_rdn_deleted(old_dn, c.new), LDIF_WRAP)?;
            let (rdn, _) = ldif::split_rdn(c.dn);
            let old_rdn = ldif::split_rdn(old_dn).0;
            let rdn_attrs: Vec<&str> = [rdn, old_rdn]
                .iter()
                .flat_map(|r| r.split('+'))
                .filter_map(|ava| ava.split_once('=').map(|(a, _)| a.trim()))
                .collect();
            let rest: Vec<Modification> = modifications(c.old, c.new)
                .into_iter()
                .filter(|m| {
                    !rdn_attrs
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(&m.attribute))
                })
                .collect();
            ldif::write_modify(out, c.dn, &rest, LDIF_WRAP)
        }
    }
}

fn write_json(out: &mut impl Write, c: &Change<'_>) -> io::Result<()> {
    let mut object = Map::new();
    object.insert("seq".into(), json!(c.seq));
    object.insert("kind".into(), json!(c.kind.name()));
    object.insert("dn".into(), json!(c.dn));
    if let Some(old_dn) = c.old_dn {
        object.insert("old_dn".into(), json!(old_dn));
    }
    object.insert("entryUUID".into(), json!(c.uuid.to_string()));
    if let Some(new) = c.new {
        object.insert("attributes".into(), json_attributes(new));
    }
    if matches!(c.kind, ChangeKind::Modify | ChangeKind::Rename) {
        let mut added = Map::new();
        let mut removed = Map::new();
        for name in names(c.old).into_iter().chain(names(c.new)) {
            if added.contains_key(&name) || removed.contains_key(&name) {
                continue;
            }
            let before = values(c.old, &name);
            let after = values(c.new, &name);
            let plus: Vec<&[u8]> = after
                .iter()
                .filter(|v| !before.contains(v))
                .copied()
                .collect();
            let minus: Vec<&[u8]> = before
                .iter()
                .filter(|v| !after.contains(v))
                .copied()
                .collect();
            if !plus.is_empty() {
                added.insert(name.clone(), json_values(plus.into_iter()));
            }
            if !minus.is_empty() {
                removed.insert(name, json_values(minus.into_iter()));
            }
        }
        object.insert("added".into(), Value::Object(added));
        object.insert("removed".into(), Value::Object(removed));
    }
    serde_json::to_writer(&mut *out, &Value::Object(object))?;
    out.write_all(b"\n")
}

fn write_text(out: &mut impl Write, c: &Change<'_>) -> io::Result<()> {
    match c.kind {
        ChangeKind::Add | ChangeKind::Delete => writeln!(out, "{:<7} {}", c.kind.name(), c.dn),
        ChangeKind::Rename => writeln!(out, "rename  {} -> {}", c.old_dn.unwrap_or_default(), c.dn),
        ChangeKind::Modify => {
            let parts: Vec<String> = c
                .modifications()
                .iter()
                .map(|m| {
                    let vals: Vec<String> = m.values.iter().map(|v| text_value(v)).collect();
                    match m.op {
                        ModOp::Add => format!("{} +[{}]", m.attribute, vals.join(", ")),
                        ModOp::Delete if vals.is_empty() => format!("{} removed", m.attribute),
                        ModOp::Delete => format!("{} -[{}]", m.attribute, vals.join(", ")),
                        ModOp::Replace => format!("{} = [{}]", m.attribute, vals.join(", ")),
                    }
                })
                .collect();
            if parts.is_empty() {
                return Ok(());
            }
            writeln!(out, "modify  {}: {}", c.dn, parts.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(pairs: &[(&str, &[&str])]) -> AttributeList {
        AttributeList::build(
            pairs
                .iter()
                .map(|(n, vs)| (*n, vs.iter().map(|v| v.as_bytes()).collect::<Vec<_>>())),
        )
    }

    fn render(format: Format, change: &Change<'_>) -> String {
        let mut out = Vec::new();
        write_change(&mut out, format, change).expect("write to a Vec");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn modify_in_every_format() {
        let old = list(&[
            ("cn", &["Ann"]),
            ("mail", &["a@x", "b@x"]),
            ("title", &["t"]),
        ]);
        let new = list(&[("cn", &["Ann"]), ("mail", &["b@x", "c@x"]), ("sn", &["S"])]);
        let change = Change {
            seq: 7,
            kind: ChangeKind::Modify,
            uuid: EntryUuid([1; 16]),
            dn: "uid=a,dc=x",
            old_dn: None,
            old: Some(&old),
            new: Some(&new),
            skip: &[],
        };
        assert_eq!(
            render(Format::Ldif, &change),
            "# 7 modify entryUUID=01010101-0101-0101-0101-010101010101\n\
             dn: uid=a,dc=x\nchangetype: modify\n\
             delete: mail\nmail: a@x\n-\nadd: mail\nmail: c@x\n-\n\
             delete: title\n-\nadd: sn\nsn: S\n-\n\n"
        );
        assert_eq!(
            render(Format::Text, &change),
            "modify  uid=a,dc=x: mail -[a@x]; mail +[c@x]; title removed; sn +[S]\n"
        );
        let json: Value = serde_json::from_str(&render(Format::Json, &change)).expect("valid JSON");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["added"]["mail"], json!(["c@x"]));
        assert_eq!(json["removed"]["mail"], json!(["a@x"]));
        assert_eq!(json["removed"]["title"], json!(["t"]));
        assert_eq!(json["attributes"]["sn"], json!(["S"]));
    }

    #[test]
    fn rename_keeps_rdn_changes_out_of_the_modify() {
        let old = list(&[("uid", &["a"]), ("cn", &["A"])]);
        let new = list(&[("uid", &["b"]), ("cn", &["B"])]);
        let change = Change {
            seq: 1,
            kind: ChangeKind::Rename,
            uuid: EntryUuid([2; 16]),
            dn: "uid=b,ou=q,dc=x",
            old_dn: Some("uid=a,ou=p,dc=x"),
            old: Some(&old),
            new: Some(&new),
            skip: &[],
        };
        let ldif = render(Format::Ldif, &change);
        assert!(ldif.contains(
            "dn: uid=a,ou=p,dc=x\nchangetype: modrdn\nnewrdn: uid=b\ndeleteoldrdn: 1\nnewsuperior: ou=q,dc=x\n\n"
        ));
        assert!(ldif.contains("dn: uid=b,ou=q,dc=x\nchangetype: modify\nreplace: cn\ncn: B\n-\n\n"));
        assert!(!ldif.contains("replace: uid"));
        assert_eq!(
            render(Format::Text, &change),
            "rename  uid=a,ou=p,dc=x -> uid=b,ou=q,dc=x\n"
        );
    }

    #[test]
    fn binary_values_in_json() {
        let attrs = AttributeList::build([("jpegPhoto", vec![[0xff, 0xd8].as_slice()])]);
        let value = json_attributes(&attrs);
        assert_eq!(value["jpegPhoto"], json!([{ "base64": "/9g=" }]));
    }
}
