//! The entries of the mirror: a map by entryUUID and a DN index that compares DNs the LDAP way.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use syncrepl_proto::EntryUuid;

use crate::Entry;

#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) entry: Entry,
    /// The refresh generation in which the entry was last sent or presented: the present set, at no
    /// cost beyond four bytes an entry.
    pub(crate) mark: u32,
}

/// Hashes an entryUUID by taking eight of its bytes: UUIDs are already well spread (random or
/// time-based with a varying low part), so hashing them again buys nothing.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UuidHasher(u64);

impl Hasher for UuidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29)
                ^ u64::from_le_bytes(word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
}

pub(crate) type UuidMap<V> = HashMap<EntryUuid, V, BuildHasherDefault<UuidHasher>>;
pub(crate) type UuidSet = HashSet<EntryUuid, BuildHasherDefault<UuidHasher>>;

/// The entryUUIDs whose DNs share one hash in the DN index: nearly always one.
#[derive(Debug, Clone)]
enum DnBucket {
    One(EntryUuid),
    Many(Vec<EntryUuid>),
}

impl DnBucket {
    fn uuids(&self) -> &[EntryUuid] {
        match self {
            DnBucket::One(uuid) => std::slice::from_ref(uuid),
            DnBucket::Many(uuids) => uuids,
        }
    }
}

/// The entries of the mirror, readable by entryUUID and by DN.
#[derive(Debug, Default)]
pub struct Entries {
    pub(crate) by_uuid: UuidMap<Slot>,
    /// entryUUIDs by the hash of their normalized DN (see [`NormalizedDn`](crate::NormalizedDn)):
    /// eight bytes an entry instead of a second copy of its DN; a lookup checks the DNs it finds.
    by_dn: HashMap<u64, DnBucket, BuildHasherDefault<UuidHasher>>,
    dn_hasher: foldhash::fast::RandomState,
    pub(crate) live_bytes: u64,
}

fn footprint(entry: &Entry) -> u64 {
    (entry.dn.len() + entry.attributes.as_ber().len() + 32) as u64
}

impl Entries {
    /// The entry with this entryUUID.
    pub fn get(&self, uuid: &EntryUuid) -> Option<&Entry> {
        self.by_uuid.get(uuid).map(|s| &s.entry)
    }

    /// The entry with this DN, compared the LDAP way (see [`NormalizedDn`](crate::NormalizedDn)).
    pub fn get_by_dn(&self, dn: &str) -> Option<(EntryUuid, &Entry)> {
        let uuid = self.holder(self.dn_hash(dn), dn, None)?;
        self.get(&uuid).map(|e| (uuid, e))
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&EntryUuid, &Entry)> {
        self.by_uuid.iter().map(|(u, s)| (u, &s.entry))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.by_uuid.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_uuid.is_empty()
    }

    /// Makes room for `additional` more entries at once, instead of growing step by step.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.by_uuid.reserve(additional);
        self.by_dn.reserve(additional);
    }

    pub(crate) fn dn_hash(&self, dn: &str) -> u64 {
        crate::dn::hash_normalized(dn, &self.dn_hasher)
    }

    /// The entry other than `except` whose DN, of hash `hash`, equals `dn`.
    pub(crate) fn holder(
        &self,
        hash: u64,
        dn: &str,
        except: Option<EntryUuid>,
    ) -> Option<EntryUuid> {
        self.by_dn
            .get(&hash)?
            .uuids()
            .iter()
            .copied()
            .filter(|u| Some(*u) != except)
            .find(|u| {
                self.by_uuid
                    .get(u)
                    .is_some_and(|s| crate::dn::same_dn(&s.entry.dn, dn))
            })
    }

    fn index(&mut self, uuid: EntryUuid, hash: u64) {
        match self.by_dn.get_mut(&hash) {
            None => {
                self.by_dn.insert(hash, DnBucket::One(uuid));
            }
            Some(DnBucket::One(other)) if *other != uuid => {
                let other = *other;
                self.by_dn.insert(hash, DnBucket::Many(vec![other, uuid]));
            }
            Some(DnBucket::Many(uuids)) if !uuids.contains(&uuid) => uuids.push(uuid),
            Some(_) => {}
        }
    }

    fn unindex(&mut self, uuid: EntryUuid, hash: u64) {
        let Some(bucket) = self.by_dn.get_mut(&hash) else {
            return;
        };
        match bucket {
            DnBucket::One(other) if *other == uuid => {
                self.by_dn.remove(&hash);
            }
            DnBucket::Many(uuids) => {
                uuids.retain(|u| *u != uuid);
                if let [only] = uuids[..] {
                    *bucket = DnBucket::One(only);
                }
            }
            DnBucket::One(_) => {}
        }
    }

    pub(crate) fn insert(&mut self, uuid: EntryUuid, slot: Slot) -> Option<Slot> {
        let hash = self.dn_hash(&slot.entry.dn);
        self.insert_hashed(uuid, slot, hash)
    }

    /// Inserts `slot`, whose DN hashes to `hash`.
    pub(crate) fn insert_hashed(&mut self, uuid: EntryUuid, slot: Slot, hash: u64) -> Option<Slot> {
        self.live_bytes += footprint(&slot.entry);
        let old = self.by_uuid.insert(uuid, slot);
        if let Some(old) = &old {
            self.live_bytes = self.live_bytes.saturating_sub(footprint(&old.entry));
            let old_hash = self.dn_hash(&old.entry.dn);
            if old_hash != hash {
                self.unindex(uuid, old_hash);
            }
        }
        self.index(uuid, hash);
        old
    }

    pub(crate) fn remove(&mut self, uuid: &EntryUuid) -> Option<Slot> {
        let old = self.by_uuid.remove(uuid)?;
        self.live_bytes = self.live_bytes.saturating_sub(footprint(&old.entry));
        let hash = self.dn_hash(&old.entry.dn);
        self.unindex(*uuid, hash);
        Some(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncrepl_proto::AttributeList;

    fn slot(dn: &str) -> Slot {
        Slot {
            entry: Entry {
                dn: dn.into(),
                attributes: AttributeList::default(),
            },
            mark: 0,
        }
    }

    #[test]
    fn dns_that_share_a_hash_are_told_apart() {
        let mut entries = Entries::default();
        let (a, b, c) = (EntryUuid([1; 16]), EntryUuid([2; 16]), EntryUuid([3; 16]));
        entries.insert_hashed(a, slot("uid=a,dc=example,dc=com"), 42);
        entries.insert_hashed(b, slot("uid=b,dc=example,dc=com"), 42);
        assert_eq!(
            entries.holder(42, "UID=A, dc=Example,dc=com", None),
            Some(a)
        );
        assert_eq!(entries.holder(42, "uid=b,dc=example,dc=com", None), Some(b));
        assert_eq!(entries.holder(42, "uid=b,dc=example,dc=com", Some(b)), None);
        assert_eq!(entries.holder(42, "uid=c,dc=example,dc=com", None), None);
        entries.insert_hashed(c, slot("uid=c,dc=example,dc=com"), 42);
        assert_eq!(entries.by_dn.get(&42).map(|b| b.uuids().len()), Some(3));
        entries.unindex(a, 42);
        entries.unindex(c, 42);
        assert!(matches!(entries.by_dn.get(&42), Some(DnBucket::One(u)) if *u == b));
        entries.unindex(b, 42);
        assert!(entries.by_dn.is_empty());
    }

    #[test]
    fn a_rename_moves_the_dn_index_entry() {
        let mut entries = Entries::default();
        let a = EntryUuid([1; 16]);
        entries.insert(a, slot("uid=a,dc=example,dc=com"));
        entries.insert(a, slot("uid=a2,dc=example,dc=com"));
        assert!(entries.get_by_dn("uid=a,dc=example,dc=com").is_none());
        assert_eq!(
            entries
                .get_by_dn("UID=A2,DC=EXAMPLE,DC=COM")
                .map(|(u, _)| u),
            Some(a)
        );
        assert_eq!(entries.by_dn.len(), 1);
        entries.insert(a, slot("uid=A2,dc=example,dc=com"));
        assert_eq!(entries.by_dn.len(), 1, "a change of case keeps the key");
    }
}
