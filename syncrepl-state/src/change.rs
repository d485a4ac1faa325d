//! The one vocabulary of changes: what happened to an entry, computed once by the mirror and
//! carried as one value to the log, every writer and every sink.

use syncrepl_proto::{AttributeList, EntryUuid};

use crate::Entry;

/// What happened to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// It entered the content (RFC 4533 §3.2 `add`, or an entry first seen in a refresh).
    Add,
    /// Its attributes, its DN or both changed; [`Change::old_dn`] says whether it was renamed.
    Modify,
    /// It left the content: deleted, out of the search, or not present at the end of a present
    /// phase (RFC 4533 §3.3.1).
    Delete,
}

impl ChangeKind {
    /// The kind's name in lower case: `add`, `modify`, `delete`.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Add => "add",
            ChangeKind::Modify => "modify",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One change of the mirror, with its sequence number: the unit that is logged, handed to the
/// consumer, acknowledged, and handed out again after a crash with the same number and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The sequence number: one per change, growing, never reused (see [`crate::Consumer`]).
    pub seq: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The entryUUID (RFC 4533 §2.2), the identity that survives renames.
    pub uuid: EntryUuid,
    /// The entry after the change: its whole new state for an add or modify, its last state for a
    /// delete.
    pub entry: Entry,
    /// For a modify that renamed the entry (a modDN), the DN before.
    pub old_dn: Option<String>,
    /// For a modify, per attribute, the values that appeared and disappeared (empty for a rename
    /// that changed nothing else, and for adds and deletes).
    pub delta: Vec<AttributeChange>,
}

impl Change {
    /// The entry's DN after the change (for a delete, its last DN).
    pub fn dn(&self) -> &str {
        &self.entry.dn
    }

    /// Whether the DN changed.
    pub fn renamed(&self) -> bool {
        self.old_dn.is_some()
    }

    /// The change's name as tools print it: `add`, `modify`, `rename` (a modify that renamed) or
    /// `delete`.
    pub fn label(&self) -> &'static str {
        match (self.kind, self.renamed()) {
            (ChangeKind::Modify, true) => "rename",
            (kind, _) => kind.name(),
        }
    }

    /// The attributes before the change, rebuilt from the new state and the delta (as sets: the
    /// values in the order the new entry has them, removed values after); empty for an add.
    pub fn old_attributes(&self) -> AttributeList {
        match self.kind {
            ChangeKind::Add => AttributeList::default(),
            ChangeKind::Delete => self.entry.attributes.clone(),
            ChangeKind::Modify => {
                let mut out: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
                for attribute in &self.entry.attributes {
                    let change = self
                        .delta
                        .iter()
                        .find(|c| c.name.eq_ignore_ascii_case(attribute.name));
                    let values: Vec<Vec<u8>> = attribute
                        .values
                        .filter(|v| change.is_none_or(|c| !c.added.iter().any(|a| a == v)))
                        .map(<[u8]>::to_vec)
                        .collect();
                    match out
                        .iter_mut()
                        .find(|(n, _)| n.eq_ignore_ascii_case(attribute.name))
                    {
                        Some((_, existing)) => existing.extend(values),
                        None => out.push((attribute.name.to_owned(), values)),
                    }
                }
                for change in &self.delta {
                    match out
                        .iter_mut()
                        .find(|(n, _)| n.eq_ignore_ascii_case(&change.name))
                    {
                        Some((_, existing)) => existing.extend(change.removed.iter().cloned()),
                        None => out.push((change.name.clone(), change.removed.clone())),
                    }
                }
                out.retain(|(_, values)| !values.is_empty());
                AttributeList::build(
                    out.iter().map(|(n, vs)| {
                        (n.as_str(), vs.iter().map(Vec::as_slice).collect::<Vec<_>>())
                    }),
                )
            }
        }
    }
}

/// What changed in one attribute of a modified entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeChange {
    /// The attribute description, as the new entry spells it (or the old one, if it is gone).
    pub name: String,
    /// Values that appeared.
    pub added: Vec<Vec<u8>>,
    /// Values that disappeared.
    pub removed: Vec<Vec<u8>>,
}

/// Attributes compared as sets: descriptions without regard to case, values as multisets of bytes.
fn canonical(list: &AttributeList) -> Vec<(String, Vec<&[u8]>)> {
    let mut out: Vec<(String, Vec<&[u8]>)> = Vec::new();
    for attribute in list {
        let name = attribute.name.to_ascii_lowercase();
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.extend(attribute.values),
            None => out.push((name, attribute.values.collect())),
        }
    }
    for (_, values) in &mut out {
        values.sort_unstable();
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The per-attribute difference between two attribute lists; empty when they are equal as sets.
pub fn diff(old: &AttributeList, new: &AttributeList) -> Vec<AttributeChange> {
    if old == new {
        return Vec::new();
    }
    let (a, b) = (canonical(old), canonical(new));
    let spelled = |list: &AttributeList, lower: &str| {
        list.iter()
            .find(|x| x.name.eq_ignore_ascii_case(lower))
            .map(|x| x.name.to_owned())
    };
    let mut names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
    for (n, _) in &b {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let mut out = Vec::new();
    for lower in names {
        let before = a
            .iter()
            .find(|(n, _)| n == lower)
            .map(|(_, v)| v.as_slice());
        let after = b
            .iter()
            .find(|(n, _)| n == lower)
            .map(|(_, v)| v.as_slice());
        let (before, after) = (before.unwrap_or_default(), after.unwrap_or_default());
        if before == after {
            continue;
        }
        let added = after
            .iter()
            .filter(|v| !before.contains(v))
            .map(|v| v.to_vec())
            .collect();
        let removed = before
            .iter()
            .filter(|v| !after.contains(v))
            .map(|v| v.to_vec())
            .collect();
        out.push(AttributeChange {
            name: spelled(new, lower)
                .or_else(|| spelled(old, lower))
                .unwrap_or_else(|| lower.to_owned()),
            added,
            removed,
        });
    }
    out
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

    #[test]
    fn the_delta_and_the_old_state_agree() {
        let old = list(&[("cn", &["A"]), ("mail", &["a@x", "b@x"]), ("title", &["t"])]);
        let new = list(&[("CN", &["A"]), ("mail", &["b@x", "c@x"]), ("sn", &["S"])]);
        let delta = diff(&old, &new);
        let names: Vec<&str> = delta.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["mail", "title", "sn"]);
        let change = Change {
            seq: 1,
            kind: ChangeKind::Modify,
            uuid: EntryUuid([1; 16]),
            entry: Entry {
                dn: "uid=a".into(),
                attributes: new.clone(),
            },
            old_dn: None,
            delta,
        };
        assert!(diff(&change.old_attributes(), &old).is_empty());
        assert!(diff(&old, &old).is_empty());
        assert_eq!(change.label(), "modify");
    }
}
