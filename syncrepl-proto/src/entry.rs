//! Entries as the server sends them: a DN and a validated, zero-copy view of the attribute list.

use std::fmt;

use bytes::Bytes;

use crate::ber::{self, Reader, TAG_OCTET_STRING, TAG_SEQUENCE, TAG_SET};
use crate::error::DecodeError;
use crate::types::{Cookie, EntryUuid, SyncState};

/// An entry reported by a sync search: a SearchResultEntry with its Sync State Control (RFC 4533 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEntry {
    /// present, add, modify or delete.
    pub state: SyncState,
    /// The entryUUID, which identifies the entry across renames.
    pub entry_uuid: EntryUuid,
    /// The entry's DN as the server wrote it.
    pub dn: String,
    /// The attributes (none for present and usually none for delete).
    pub attributes: AttributeList,
    /// A cookie sent with this entry; in the persist stage it covers this change.
    pub cookie: Option<Cookie>,
}

/// A PartialAttributeList (RFC 4511 §4.5.2) kept in its BER encoding and checked once when built.
///
/// Reading it allocates nothing; cloning it is a reference-count increment. The encoding is also a
/// compact owned form: [`AttributeList::detach`] copies it out of the network frame in one allocation,
/// which is how a mirror can keep entries at about their size on the wire.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct AttributeList {
    raw: Bytes,
}

impl AttributeList {
    /// Checks the content octets of a PartialAttributeList: every element a SEQUENCE of a UTF-8
    /// attribute description and a SET OF OCTET STRING, nothing left over.
    pub fn from_ber(raw: Bytes) -> Result<AttributeList, DecodeError> {
        let mut r = Reader::new(&raw);
        while !r.is_empty() {
            let attr = r.read(TAG_SEQUENCE, "PartialAttribute")?;
            let mut a = r.inside(attr);
            let name = a.read(TAG_OCTET_STRING, "PartialAttribute.type")?;
            let name = a.content(name);
            if !name.is_ascii() && std::str::from_utf8(name).is_err() {
                return Err(DecodeError::InvalidUtf8 {
                    what: "PartialAttribute.type",
                });
            }
            let vals = a.read(TAG_SET, "PartialAttribute.vals")?;
            a.finish("PartialAttribute")?;
            let mut v = a.inside(vals);
            while !v.is_empty() {
                v.read(TAG_OCTET_STRING, "AttributeValue")?;
            }
        }
        Ok(AttributeList { raw })
    }

    /// Builds a list from attribute descriptions and their values, in the given order.
    pub fn build<'a, I, V>(attributes: I) -> AttributeList
    where
        I: IntoIterator<Item = (&'a str, V)>,
        V: IntoIterator<Item = &'a [u8]>,
    {
        let mut out = Vec::new();
        let mut attr = Vec::new();
        let mut vals = Vec::new();
        for (name, values) in attributes {
            vals.clear();
            for value in values {
                ber::write_tlv(&mut vals, TAG_OCTET_STRING, value);
            }
            attr.clear();
            ber::write_tlv(&mut attr, TAG_OCTET_STRING, name.as_bytes());
            ber::write_tlv(&mut attr, TAG_SET, &vals);
            ber::write_tlv(&mut out, TAG_SEQUENCE, &attr);
        }
        AttributeList {
            raw: Bytes::from(out),
        }
    }

    /// The BER content octets (the elements of the SEQUENCE OF PartialAttribute).
    pub fn as_ber(&self) -> &Bytes {
        &self.raw
    }

    /// A copy that owns its bytes instead of sharing the network frame it was cut from.
    pub fn detach(&self) -> AttributeList {
        AttributeList {
            raw: Bytes::copy_from_slice(&self.raw),
        }
    }

    /// Whether there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The attributes in the order the server sent them.
    pub fn iter(&self) -> Attributes<'_> {
        Attributes {
            r: Reader::new(&self.raw),
        }
    }

    /// The values of the first attribute whose description equals `name`, ignoring ASCII case
    /// (attribute descriptions are case-insensitive, RFC 4512 §2.5).
    pub fn get(&self, name: &str) -> Option<Values<'_>> {
        self.iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.values)
    }
}

impl fmt::Debug for AttributeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|a| {
                let values: Vec<_> = a.values.map(|v| v.escape_ascii().to_string()).collect();
                (a.name, values)
            }))
            .finish()
    }
}

impl<'a> IntoIterator for &'a AttributeList {
    type Item = Attribute<'a>;
    type IntoIter = Attributes<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// One attribute of an [`AttributeList`]: its description and its values.
#[derive(Debug, Clone)]
pub struct Attribute<'a> {
    /// The attribute description as sent (e.g. `cn`, `userCertificate;binary`).
    pub name: &'a str,
    /// Its values.
    pub values: Values<'a>,
}

/// Iterator over the attributes of an [`AttributeList`].
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        // The list was checked when it was built, so none of these reads fails; if one did,
        // iteration would end rather than panic.
        let attr = self.r.read_any().ok()?;
        let mut a = self.r.inside(attr);
        let name = a.read_any().ok()?;
        let name = std::str::from_utf8(a.content(name)).ok()?;
        let vals = a.read_any().ok()?;
        Some(Attribute {
            name,
            values: Values { r: a.inside(vals) },
        })
    }
}

/// Iterator over the values of one attribute.
#[derive(Debug, Clone)]
pub struct Values<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let value = self.r.read_any().ok()?;
        Some(self.r.content(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_read_back() {
        let list = AttributeList::build([
            ("cn", vec![b"Ann".as_slice(), b"Ann Smith".as_slice()]),
            ("objectClass", vec![b"person".as_slice()]),
            ("empty", vec![]),
        ]);
        let checked = AttributeList::from_ber(list.as_ber().clone()).expect("well formed");
        assert_eq!(checked, list);
        let names: Vec<_> = list.iter().map(|a| a.name).collect();
        assert_eq!(names, ["cn", "objectClass", "empty"]);
        let cn: Vec<_> = list.get("CN").expect("present").collect();
        assert_eq!(cn, [b"Ann".as_slice(), b"Ann Smith"]);
        assert_eq!(list.get("empty").map(Iterator::count), Some(0));
        assert!(list.get("sn").is_none());
        assert_eq!(list.detach(), list);
    }

    #[test]
    fn refuses_malformed_lists() {
        for bad in [
            &[0x31, 0x00][..],
            &[0x30, 0x02, 0x04, 0x00],
            &[0x30, 0x04, 0x04, 0x01, 0xff, 0x31, 0x00],
            &[0x30, 0x05, 0x04, 0x01, b'a', 0x31, 0x01],
            &[0x30, 0x06, 0x04, 0x01, b'a', 0x31, 0x01, 0x02],
            &[0x30, 0x06, 0x04, 0x01, b'a', 0x31, 0x00, 0x00],
            &[0x30, 0x07, 0x04, 0x01, b'a', 0x31, 0x02, 0x02, 0x00],
        ] {
            assert!(
                AttributeList::from_ber(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:02x?}"
            );
        }
    }
}
