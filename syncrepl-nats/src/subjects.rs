//! Where each message goes: one subject per entry, so that the stream keeps the last message of
//! every entry (a compacted copy of the directory), and one for markers.

/// The subjects under one prefix (`--subject`, e.g. `ldap.people`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

/// A prefix that is not a valid NATS subject of plain tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid subject prefix {0:?}: use tokens of letters, digits, '-' and '_' separated by '.'"
)]
pub struct BadPrefix(pub String);

impl Subjects {
    /// The subjects under `prefix`, checked: no wildcard, no empty token, no white space.
    pub fn new(prefix: &str) -> Result<Subjects, BadPrefix> {
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|token| {
                !token.is_empty()
                    && token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if valid {
            Ok(Subjects {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(BadPrefix(prefix.to_owned()))
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every subject of the stream: `PREFIX.>`.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The entries: `PREFIX.entry.>`.
    pub fn entries(&self) -> String {
        format!("{}.entry.>", self.prefix)
    }

    /// The subject of one entry, by its entryUUID in text form (RFC 4533 §2.2), which survives
    /// renames.
    pub fn entry(&self, uuid: &str) -> String {
        format!("{}.entry.{uuid}", self.prefix)
    }

    /// Markers: refresh done, refresh required.
    pub fn marker(&self) -> String {
        format!("{}.marker", self.prefix)
    }

    /// The entryUUID in an entry subject, if `subject` is one.
    pub fn entry_uuid<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".entry.")
            .filter(|rest| !rest.is_empty() && !rest.contains('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncrepl::proto::EntryUuid;

    #[test]
    fn prefixes_and_subjects() {
        let s = Subjects::new("ldap.people").expect("valid");
        let uuid: EntryUuid = "9c0de3d8-1a5e-4f3a-9b83-2a1f2e0f8a11"
            .parse()
            .expect("uuid");
        assert_eq!(s.all(), "ldap.people.>");
        assert_eq!(
            s.entry(&uuid.to_string()),
            "ldap.people.entry.9c0de3d8-1a5e-4f3a-9b83-2a1f2e0f8a11"
        );
        assert_eq!(
            s.entry_uuid(&s.entry(&uuid.to_string())),
            Some("9c0de3d8-1a5e-4f3a-9b83-2a1f2e0f8a11")
        );
        assert_eq!(s.entry_uuid(&s.marker()), None);
        assert_eq!(s.entry_uuid("other.entry.x"), None);
        for bad in ["", "a..b", "a.*", "a.>", "a b", "a."] {
            assert!(Subjects::new(bad).is_err(), "{bad:?}");
        }
    }
}
