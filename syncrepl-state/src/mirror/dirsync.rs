//! Active Directory's DirSync (MS-ADTS §3.1.1.3.4.1.3) turned into changes of the mirror.
//!
//! A DirSync pass runs over the whole naming context and reports, for each object that changed,
//! only the attributes that changed (all of them for a new object and in a full pass), removed
//! attributes as attributes without values, added and removed values of multi-valued attributes as
//! `attr;range=1-1` and `attr;range=0-0`, a rename or move as the new DN alone, and a delete as the
//! tombstone (`isDeleted: TRUE`, moved under `CN=Deleted Objects`). The mirror merges that into the
//! stored entry and applies the user's base, scope and filter itself: an object that leaves them is
//! a delete, one that enters them an add.

use syncrepl_proto::{AttributeList, DirSyncEntry, SearchFilter};

use super::Mirror;
use crate::dn::{depth, first_rdn, in_scope, rebase, same_dn, NormalizedDn};
use crate::error::Error;
use crate::filter::matches;

/// Attributes AD adds to every DirSync entry, or that only DirSync returns: kept only when the
/// search names them (a `*` search of AD returns objectGUID, instanceType and name, so those stay
/// under `*`; parentGUID is constructed and never does).
const DIRSYNC_ONLY: &[&str] = &["parentGUID"];
const ALWAYS_ADDED: &[&str] = &["objectGUID", "instanceType", "name"];

/// An attribute being merged: its description as first seen and its values.
type Merged = Vec<(String, Vec<Vec<u8>>)>;

/// How one attribute of a DirSync entry changes the stored one.
#[derive(Debug, PartialEq, Eq)]
enum Update<'a> {
    /// The values replace the attribute's (none: the attribute was removed).
    Replace(&'a str),
    /// `attr;range=1-1`: values added.
    Add(&'a str),
    /// `attr;range=0-0`: values removed.
    Remove(&'a str),
}

/// Reads an attribute description of a DirSync entry: the incremental-values ranges of MS-ADTS
/// §3.1.1.3.4.1.3 (`;range=1-1` added, `;range=0-0` removed), or a plain replacement.
fn update(description: &str) -> Update<'_> {
    if let Some((name, options)) = description.split_once(';') {
        for option in options.split(';') {
            if option.eq_ignore_ascii_case("range=1-1") {
                return Update::Add(name);
            }
            if option.eq_ignore_ascii_case("range=0-0") {
                return Update::Remove(name);
            }
        }
    }
    Update::Replace(description)
}

/// A DN-valued attribute as DirSync may send it, `<GUID=…>;<SID=…>;CN=…` (the extended DN form of
/// MS-ADTS §3.1.1.3.4.1.5), as the plain DN a search returns.
fn plain_value(value: &[u8]) -> &[u8] {
    let mut rest = value;
    while rest.first() == Some(&b'<') {
        let Some(end) = rest.iter().position(|&b| b == b'>') else {
            return value;
        };
        let tag = &rest[1..end];
        let known = [b"GUID=".as_slice(), b"SID=".as_slice()]
            .iter()
            .any(|t| tag.len() > t.len() && tag[..t.len()].eq_ignore_ascii_case(t));
        if !known {
            return value;
        }
        rest = &rest[end + 1..];
        match rest.first() {
            Some(b';') => rest = &rest[1..],
            None => return rest,
            Some(_) => return value,
        }
    }
    rest
}

/// An entry's attributes as a [`Merged`] list to edit.
fn to_merged(list: &AttributeList) -> Merged {
    list.iter()
        .map(|a| (a.name.to_owned(), a.values.map(<[u8]>::to_vec).collect()))
        .collect()
}

/// A [`Merged`] list as the attributes to store.
fn to_list(merged: &Merged) -> AttributeList {
    AttributeList::build(
        merged
            .iter()
            .map(|(n, vs)| (n.as_str(), vs.iter().map(Vec::as_slice))),
    )
}

fn position(merged: &Merged, name: &str) -> Option<usize> {
    merged
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// Merges the attributes of a DirSync entry into `into` (the stored entry's, or nothing).
fn merge(into: &mut Merged, sent: &AttributeList) {
    for attribute in sent.iter() {
        let values: Vec<Vec<u8>> = attribute.values.map(|v| plain_value(v).to_vec()).collect();
        match update(attribute.name) {
            Update::Replace(name) => match (position(into, name), values.is_empty()) {
                (Some(i), true) => {
                    into.remove(i);
                }
                (Some(i), false) => into[i].1 = values,
                (None, true) => {}
                (None, false) => into.push((name.to_owned(), values)),
            },
            Update::Add(name) => match position(into, name) {
                Some(i) => {
                    for value in values {
                        if !into[i].1.iter().any(|v| same_value(v, &value)) {
                            into[i].1.push(value);
                        }
                    }
                }
                None => into.push((name.to_owned(), values)),
            },
            Update::Remove(name) => {
                if let Some(i) = position(into, name) {
                    into[i]
                        .1
                        .retain(|v| !values.iter().any(|r| same_value(v, r)));
                    if into[i].1.is_empty() {
                        into.remove(i);
                    }
                }
            }
        }
    }
}

/// Values compare without ASCII case: the multi-valued attributes DirSync reports by value
/// (member, memberOf and other DNs) match case-insensitively.
fn same_value(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn is_tombstone(attributes: &AttributeList) -> bool {
    attributes
        .get("isDeleted")
        .is_some_and(|mut v| v.any(|v| v.eq_ignore_ascii_case(b"TRUE")))
}

impl Mirror {
    /// Applies one object of a DirSync pass (see the module documentation).
    pub(super) fn dirsync_entry(&mut self, entry: DirSyncEntry) -> Result<(), Error> {
        let uuid = entry.object_guid;
        if is_tombstone(&entry.attributes) {
            self.note(|r| r.saw_delete = true);
            let Some(dn) = self.entries.by_uuid.get(&uuid).map(|s| s.entry.dn.clone()) else {
                return Ok(());
            };
            self.delete(uuid)?;
            return self.follow(&dn, None);
        }
        let old_dn = self
            .entries
            .by_uuid
            .get(&uuid)
            .map(|s| s.entry.dn.clone())
            .filter(|old| !same_dn(old, &entry.dn));
        let full = self.refresh.is_some_and(|r| r.full);
        let known = if full {
            None
        } else {
            self.entries.by_uuid.get(&uuid).map(|s| &s.entry.attributes)
        };
        let complete = full || known.is_some() || entry.attributes.get("objectClass").is_some();
        let mut merged = known.map(to_merged).unwrap_or_default();
        merge(&mut merged, &entry.attributes);
        if let Some((ty, value)) = first_rdn(&entry.dn) {
            // The naming attribute follows the DN; AD does not send it again on a rename.
            match position(&merged, &ty) {
                Some(i) => merged[i].1 = vec![value.into_bytes()],
                None => merged.push((ty, vec![value.into_bytes()])),
            }
        }
        self.select(&mut merged);
        let attributes = to_list(&merged);
        let in_base = in_scope(&entry.dn, &self.spec.base, self.spec.scope);
        if !complete {
            if in_base {
                // An object that entered the base from outside (a move) with only its changed
                // attributes: its content is unknown here, and only a full pass can tell it.
                tracing::info!(dn = %entry.dn, "an object entered the search with a partial update; a full DirSync pass follows");
                self.needs_reload = true;
                self.note(|r| r.reload_after = true);
            }
            return Ok(());
        }
        let new_dn = entry.dn.clone();
        if !in_base || self.ad_filter().is_some_and(|f| !matches(f, &attributes)) {
            self.delete(uuid)?;
        } else {
            self.upsert(uuid, entry.dn, attributes)?;
        }
        match old_dn {
            Some(old) => self.follow(&old, Some(&new_dn)),
            None => Ok(()),
        }
    }

    /// What AD does to other objects when one is renamed, moved or deleted, without a DirSync
    /// report of them: its descendants' DNs change with it, and the DN-valued attributes that
    /// link to it (member, manager, …) show its new DN, or lose the value once it is deleted
    /// (`new` is `None`). The mirror does the same to the entries it holds, so that they stay
    /// what a search returns; an entry that leaves the base this way is deleted.
    fn follow(&mut self, old: &str, new: Option<&str>) -> Result<(), Error> {
        let old_norm = NormalizedDn::new(old);
        let old_depth = depth(old);
        let hint = first_rdn(old).map(|(_, v)| v.to_ascii_lowercase());
        let may_name = |value: &[u8]| match (&hint, std::str::from_utf8(value)) {
            (Some(h), Ok(v)) => v.contains('=') && v.to_ascii_lowercase().contains(h.as_str()),
            (None, Ok(v)) => v.contains('='),
            (_, Err(_)) => false,
        };
        let mut updates = Vec::new();
        for (uuid, slot) in &self.entries.by_uuid {
            let entry = &slot.entry;
            let moved = new.and_then(|new| rebase(&entry.dn, &old_norm, old_depth, new));
            let linked = entry
                .attributes
                .iter()
                .any(|a| a.values.clone().any(&may_name));
            if moved.is_none() && !linked {
                continue;
            }
            let mut changed = moved.is_some();
            let mut merged: Merged = Vec::new();
            for attribute in entry.attributes.iter() {
                let mut values = Vec::new();
                for value in attribute.values {
                    let rebased = may_name(value)
                        .then(|| std::str::from_utf8(value).ok())
                        .flatten()
                        .and_then(|v| rebase(v, &old_norm, old_depth, new.unwrap_or("")));
                    match (rebased, new) {
                        (Some(_), None) => changed = true,
                        (Some(v), Some(_)) => {
                            changed = true;
                            values.push(v.into_bytes());
                        }
                        (None, _) => values.push(value.to_vec()),
                    }
                }
                if !values.is_empty() {
                    merged.push((attribute.name.to_owned(), values));
                }
            }
            if changed {
                let dn = moved.unwrap_or_else(|| entry.dn.clone());
                updates.push((*uuid, dn, merged));
            }
        }
        for (uuid, dn, merged) in updates {
            let attributes = to_list(&merged);
            if in_scope(&dn, &self.spec.base, self.spec.scope) {
                self.upsert(uuid, dn, attributes)?;
            } else {
                self.delete(uuid)?;
            }
        }
        Ok(())
    }

    /// Keeps the attributes the search asked for, plus those the mirror needs to apply its filter
    /// to later partial updates (objectClass and the filter's attributes).
    fn select(&self, merged: &mut Merged) {
        let asked = &self.spec.attributes;
        let all = asked.is_empty() || asked.iter().any(|a| a == "*");
        let named = |n: &str| asked.iter().any(|a| a.eq_ignore_ascii_case(n));
        let filtered = self
            .ad_filter()
            .map(SearchFilter::attributes)
            .unwrap_or_default();
        let needed = |n: &str| {
            n.eq_ignore_ascii_case("objectClass")
                || filtered.iter().any(|a| a.eq_ignore_ascii_case(n))
        };
        merged.retain(|(name, _)| {
            let dirsync_only = DIRSYNC_ONLY.iter().any(|d| d.eq_ignore_ascii_case(name));
            let added = ALWAYS_ADDED.iter().any(|d| d.eq_ignore_ascii_case(name));
            named(name) || (all && !dirsync_only) || (!all && !added && needed(name))
        });
    }

    /// The search's filter, parsed once; `None` for `(objectClass=*)`, which every object matches.
    fn ad_filter(&self) -> Option<&SearchFilter> {
        self.ad_filter.as_ref()
    }
}

/// Parses the filter a DirSync mirror applies; `(objectClass=*)` and unparsable filters (which
/// a request never carries: URLs are checked first) give `None`.
pub(super) fn parse_ad_filter(filter: &str) -> Option<SearchFilter> {
    let parsed = SearchFilter::parse(filter).ok()?;
    match &parsed {
        SearchFilter::Present { attribute } if attribute.eq_ignore_ascii_case("objectClass") => {
            None
        }
        _ => Some(parsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(list: &AttributeList) -> Merged {
        let mut m = Merged::new();
        merge(&mut m, list);
        m
    }

    #[test]
    fn updates_and_ranges() {
        assert_eq!(update("member;range=1-1"), Update::Add("member"));
        assert_eq!(update("member;RANGE=0-0"), Update::Remove("member"));
        assert_eq!(update("cn"), Update::Replace("cn"));
        assert_eq!(
            update("member;range=0-*"),
            Update::Replace("member;range=0-*")
        );
    }

    #[test]
    fn extended_dns_become_plain() {
        assert_eq!(
            plain_value(b"<GUID=0227d69b>;CN=Person,CN=Schema"),
            b"CN=Person,CN=Schema"
        );
        assert_eq!(
            plain_value(b"<GUID=1>;<SID=S-1-5>;CN=x"),
            b"CN=x".as_slice()
        );
        assert_eq!(plain_value(b"<b>bold</b>"), b"<b>bold</b>".as_slice());
        assert_eq!(plain_value(b"plain"), b"plain".as_slice());
    }

    #[test]
    fn merge_replaces_removes_adds_and_drops_values() {
        let mut m = merged(&AttributeList::build([
            ("description", vec![b"old".as_slice()]),
            ("telephoneNumber", vec![b"1".as_slice()]),
            ("member", vec![b"CN=a".as_slice(), b"CN=b".as_slice()]),
        ]));
        merge(
            &mut m,
            &AttributeList::build([
                ("description", vec![b"new".as_slice()]),
                ("telephoneNumber", vec![]),
                ("member;range=0-0", vec![b"cn=A".as_slice()]),
                (
                    "member;range=1-1",
                    vec![b"CN=c".as_slice(), b"CN=b".as_slice()],
                ),
                ("mail", vec![b"x@y".as_slice()]),
            ]),
        );
        assert_eq!(
            m,
            vec![
                ("description".to_owned(), vec![b"new".to_vec()]),
                (
                    "member".to_owned(),
                    vec![b"CN=b".to_vec(), b"CN=c".to_vec()]
                ),
                ("mail".to_owned(), vec![b"x@y".to_vec()]),
            ]
        );
        merge(
            &mut m,
            &AttributeList::build([(
                "member;range=0-0",
                vec![b"CN=b".as_slice(), b"CN=c".as_slice()],
            )]),
        );
        assert_eq!(position(&m, "member"), None);
    }
}
