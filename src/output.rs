//! How `syncrepl watch` prints changes: readable text, LDIF change records, or JSON lines.

use std::io::{self, Write};

use base64::Engine;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{json, Map, Value};
use syncrepl_proto::AttributeList;
use syncrepl_state::{Change, ChangeKind};

use crate::cli::Format;
use crate::ldif::{self, ModOp, Modification, LDIF_WRAP};

/// Values of an attribute, found case-insensitively.
fn values<'a>(list: &'a AttributeList, name: &str) -> Vec<&'a [u8]> {
    list.get(name).map(Iterator::collect).unwrap_or_default()
}

/// The LDIF modifications (RFC 2849) of a modify's delta: `delete` of the whole attribute when
/// none of its values is left, `replace` when every old value went and new ones came, else
/// `delete` of the values that went and `add` of those that came. `skip` names attributes to
/// leave out (those a modrdn already changed through the RDN).
pub fn modifications(change: &Change, skip: &[&str]) -> Vec<Modification> {
    let new = &change.entry.attributes;
    let mut out = Vec::new();
    for delta in &change.delta {
        if skip.iter().any(|s| s.eq_ignore_ascii_case(&delta.name)) {
            continue;
        }
        let now = values(new, &delta.name);
        if now.is_empty() {
            out.push(Modification {
                op: ModOp::Delete,
                attribute: delta.name.clone(),
                values: Vec::new(),
            });
        } else if !delta.removed.is_empty() && now.len() == delta.added.len() {
            out.push(Modification {
                op: ModOp::Replace,
                attribute: delta.name.clone(),
                values: now.iter().map(|v| v.to_vec()).collect(),
            });
        } else {
            if !delta.removed.is_empty() {
                out.push(Modification {
                    op: ModOp::Delete,
                    attribute: delta.name.clone(),
                    values: delta.removed.clone(),
                });
            }
            if !delta.added.is_empty() {
                out.push(Modification {
                    op: ModOp::Add,
                    attribute: delta.name.clone(),
                    values: delta.added.clone(),
                });
            }
        }
    }
    out
}

/// The attribute types named in the first RDN of `dn`.
fn rdn_attributes(dn: &str) -> Vec<&str> {
    ldif::split_rdn(dn)
        .0
        .split('+')
        .filter_map(|ava| ava.split_once('=').map(|(a, _)| a.trim()))
        .collect()
}

/// The attributes a rename changes through the RDN, old and new: a modify after a modrdn leaves
/// them out.
fn renamed_attributes(change: &Change) -> Vec<&str> {
    let mut out = rdn_attributes(change.dn());
    if let Some(old_dn) = &change.old_dn {
        out.extend(rdn_attributes(old_dn));
    }
    out
}

/// Whether the values of the old DN's first RDN are gone from the new attributes, which is what
/// `deleteoldrdn: 1` would have done.
fn old_rdn_deleted(old_dn: &str, new: &AttributeList) -> bool {
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
pub fn write_change(out: &mut dyn Write, format: Format, change: &Change) -> io::Result<()> {
    match format {
        Format::Ldif => write_ldif(out, change),
        Format::Json => {
            write_json(&mut *out, change)?;
            out.write_all(b"\n")
        }
        Format::Text => write_text(out, change),
    }
}

fn write_ldif(out: &mut dyn Write, c: &Change) -> io::Result<()> {
    writeln!(out, "# {} {} entryUUID={}", c.seq, c.label(), c.uuid)?;
    match (c.kind, &c.old_dn) {
        (ChangeKind::Add, _) => ldif::write_add(out, c.dn(), &c.entry.attributes, LDIF_WRAP),
        (ChangeKind::Delete, _) => ldif::write_delete(out, c.dn(), LDIF_WRAP),
        (ChangeKind::Modify, None) => {
            ldif::write_modify(out, c.dn(), &modifications(c, &[]), LDIF_WRAP)
        }
        (ChangeKind::Modify, Some(old_dn)) => {
            let delete_old = old_rdn_deleted(old_dn, &c.entry.attributes);
            ldif::write_modrdn(out, old_dn, c.dn(), delete_old, LDIF_WRAP)?;
            let rest = modifications(c, &renamed_attributes(c));
            ldif::write_modify(out, c.dn(), &rest, LDIF_WRAP)
        }
    }
}

/// One change as `--format json` prints it, without the newline. Generic over the writer so
/// that serde's many small writes are inlined: the publishers write one such body per change.
pub fn write_json<W: Write>(out: W, change: &Change) -> io::Result<()> {
    let mut ser = serde_json::Serializer::new(out);
    JsonChange(change).serialize(&mut ser)?;
    Ok(())
}

/// A change as `--format json` writes it, serialized as it goes rather than built as a
/// [`Value`] first (the publishers write one per change).
struct JsonChange<'a>(&'a Change);

impl Serialize for JsonChange<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut object = serializer.serialize_map(None)?;
        object.serialize_entry("seq", &c.seq)?;
        object.serialize_entry("kind", c.label())?;
        object.serialize_entry("dn", c.dn())?;
        if let Some(old_dn) = &c.old_dn {
            object.serialize_entry("old_dn", old_dn)?;
        }
        object.serialize_entry("entryUUID", &c.uuid.to_string())?;
        if c.kind != ChangeKind::Delete {
            if has_repeated_names(&c.entry.attributes) {
                object.serialize_entry("attributes", &json_attributes(&c.entry.attributes))?;
            } else {
                object.serialize_entry("attributes", &JsonAttributes(&c.entry.attributes))?;
            }
        }
        if c.kind == ChangeKind::Modify {
            let side = |added: bool| JsonDelta { change: c, added };
            object.serialize_entry("added", &side(true))?;
            object.serialize_entry("removed", &side(false))?;
        }
        object.end()
    }
}

/// Whether an attribute may appear twice in the list (which one JSON object cannot hold apart):
/// checked without allocating for up to 32 attributes, assumed beyond.
fn has_repeated_names(list: &AttributeList) -> bool {
    let mut seen = [""; 32];
    for (count, attribute) in list.into_iter().enumerate() {
        if count == seen.len() || seen[..count].contains(&attribute.name) {
            return true;
        }
        seen[count] = attribute.name;
    }
    false
}

/// An attribute list without repeated names as a JSON object of arrays.
struct JsonAttributes<'a>(&'a AttributeList);

impl Serialize for JsonAttributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for attribute in self.0 {
            map.serialize_entry(attribute.name, &JsonValues(attribute.values.clone()))?;
        }
        map.end()
    }
}

/// The values that a modify added (or removed), by attribute.
struct JsonDelta<'a> {
    change: &'a Change,
    added: bool,
}

impl Serialize for JsonDelta<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for delta in &self.change.delta {
            let values = if self.added {
                &delta.added
            } else {
                &delta.removed
            };
            if !values.is_empty() {
                map.serialize_entry(&delta.name, &JsonValues(values.iter().map(Vec::as_slice)))?;
            }
        }
        map.end()
    }
}

/// Values as a JSON array: strings, or `{"base64": …}` for values that are not UTF-8.
struct JsonValues<I>(I);

impl<'v, I: Iterator<Item = &'v [u8]> + Clone> Serialize for JsonValues<I> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for value in self.0.clone() {
            match std::str::from_utf8(value) {
                Ok(text) => seq.serialize_element(text)?,
                Err(_) => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
                    seq.serialize_element(&json!({ "base64": encoded }))?;
                }
            }
        }
        seq.end()
    }
}

fn text_modifications(mods: &[Modification]) -> String {
    let parts: Vec<String> = mods
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
    parts.join("; ")
}

fn write_text(out: &mut dyn Write, c: &Change) -> io::Result<()> {
    match (c.kind, &c.old_dn) {
        (ChangeKind::Add | ChangeKind::Delete, _) => {
            writeln!(out, "{:<7} {}", c.kind.name(), c.dn())
        }
        (ChangeKind::Modify, None) => {
            let mods = modifications(c, &[]);
            if mods.is_empty() {
                return Ok(());
            }
            writeln!(out, "modify  {}: {}", c.dn(), text_modifications(&mods))
        }
        (ChangeKind::Modify, Some(old_dn)) => {
            let mods = modifications(c, &renamed_attributes(c));
            if mods.is_empty() {
                writeln!(out, "rename  {old_dn} -> {}", c.dn())
            } else {
                writeln!(
                    out,
                    "rename  {old_dn} -> {}; {}",
                    c.dn(),
                    text_modifications(&mods)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncrepl_proto::EntryUuid;
    use syncrepl_state::{diff, Entry};

    fn modify(
        seq: u64,
        old_dn: Option<&str>,
        dn: &str,
        old: &AttributeList,
        new: &AttributeList,
    ) -> Change {
        Change {
            seq,
            kind: ChangeKind::Modify,
            uuid: EntryUuid([seq as u8; 16]),
            entry: Entry {
                dn: dn.into(),
                attributes: new.clone(),
            },
            old_dn: old_dn.map(str::to_owned),
            delta: diff(old, new),
        }
    }

    fn list(pairs: &[(&str, &[&str])]) -> AttributeList {
        AttributeList::build(
            pairs
                .iter()
                .map(|(n, vs)| (*n, vs.iter().map(|v| v.as_bytes()).collect::<Vec<_>>())),
        )
    }

    fn render(format: Format, change: &Change) -> String {
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
        let change = modify(7, None, "uid=a,dc=x", &old, &new);
        assert_eq!(
            render(Format::Ldif, &change),
            "# 7 modify entryUUID=07070707-0707-0707-0707-070707070707\n\
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
        let change = modify(1, Some("uid=a,ou=p,dc=x"), "uid=b,ou=q,dc=x", &old, &new);
        let ldif = render(Format::Ldif, &change);
        assert!(ldif.contains(
            "dn: uid=a,ou=p,dc=x\nchangetype: modrdn\nnewrdn: uid=b\ndeleteoldrdn: 1\nnewsuperior: ou=q,dc=x\n\n"
        ));
        assert!(ldif.contains("dn: uid=b,ou=q,dc=x\nchangetype: modify\nreplace: cn\ncn: B\n-\n\n"));
        assert!(!ldif.contains("replace: uid"));
        assert_eq!(
            render(Format::Text, &change),
            "rename  uid=a,ou=p,dc=x -> uid=b,ou=q,dc=x; cn = [B]\n"
        );
    }

    #[test]
    fn binary_values_in_json() {
        let attrs = AttributeList::build([("jpegPhoto", vec![[0xff, 0xd8].as_slice()])]);
        let value = json_attributes(&attrs);
        assert_eq!(value["jpegPhoto"], json!([{ "base64": "/9g=" }]));
    }
}
