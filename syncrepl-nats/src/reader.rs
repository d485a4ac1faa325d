//! The reader: rebuilds a mirror's content from the stream alone (the last message of each entry
//! subject), then follows the changes published after it.

use std::collections::BTreeMap;
use std::io::{self, Write};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{Context, Message};
use futures_util::StreamExt;
use serde_json::Value;
use syncrepl::ldif::{self, LDIF_WRAP};

use crate::subjects::Subjects;
use crate::Error;

/// One entry as the stream holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    /// Its DN.
    pub dn: String,
    /// Its attributes, as `watch --format json` writes them (values that are not UTF-8 as
    /// `{"base64": …}`).
    pub attributes: Value,
    /// The sequence number of the change that made it so.
    pub seq: u64,
}

/// What a message of the stream is.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A change of one entry: its entryUUID and the body (`watch --format json`'s object).
    Change {
        /// The entryUUID from the subject.
        uuid: String,
        /// The change.
        body: Value,
    },
    /// A marker (`refresh_done`, `refresh_required`).
    Marker(Value),
}

/// The directory's content as rebuilt from the stream, by entryUUID.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rebuilt {
    /// Every entry, by entryUUID.
    pub entries: BTreeMap<String, StreamEntry>,
    /// The highest sequence number seen.
    pub last_seq: u64,
    /// Markers seen, in order.
    pub markers: Vec<Value>,
}

impl Rebuilt {
    /// Applies one record: an add, modify or rename sets the entry, a delete removes it.
    pub fn apply(&mut self, record: &Record) -> Result<(), Error> {
        match record {
            Record::Marker(body) => self.markers.push(body.clone()),
            Record::Change { uuid, body } => {
                let seq = body.get("seq").and_then(Value::as_u64).unwrap_or_default();
                self.last_seq = self.last_seq.max(seq);
                match body.get("kind").and_then(Value::as_str) {
                    Some("delete") => {
                        self.entries.remove(uuid);
                    }
                    Some("add" | "modify" | "rename") => {
                        let dn = body
                            .get("dn")
                            .and_then(Value::as_str)
                            .ok_or_else(|| Error::BadMessage(format!("no dn in {body}")))?;
                        let attributes = body
                            .get("attributes")
                            .filter(|a| a.is_object())
                            .ok_or_else(|| Error::BadMessage(format!("no attributes in {body}")))?;
                        self.entries.insert(
                            uuid.clone(),
                            StreamEntry {
                                dn: dn.to_owned(),
                                attributes: attributes.clone(),
                                seq,
                            },
                        );
                    }
                    _ => return Err(Error::BadMessage(format!("unknown kind in {body}"))),
                }
            }
        }
        Ok(())
    }

    /// Writes the entries as LDIF content records, as `syncrepl dump --state` does.
    pub fn write_ldif(&self, out: &mut dyn Write) -> io::Result<()> {
        for entry in self.entries.values() {
            ldif::write_line(out, "dn", entry.dn.as_bytes(), LDIF_WRAP)?;
            if let Value::Object(attributes) = &entry.attributes {
                for (name, values) in attributes {
                    for value in values.as_array().into_iter().flatten() {
                        ldif::write_line(out, name, &json_value(value)?, LDIF_WRAP)?;
                    }
                }
            }
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Writes the entries as JSON lines, as `syncrepl dump --state --format json` does.
    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        for (uuid, entry) in &self.entries {
            let line = serde_json::json!({
                "dn": entry.dn,
                "entryUUID": uuid,
                "attributes": entry.attributes,
            });
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// The bytes of one JSON attribute value: a string, or `{"base64": …}`.
fn json_value(value: &Value) -> io::Result<Vec<u8>> {
    use base64::Engine as _;
    match value {
        Value::String(text) => Ok(text.as_bytes().to_vec()),
        Value::Object(map) => map
            .get("base64")
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or_else(|| io::Error::other(format!("bad attribute value {value}"))),
        other => Err(io::Error::other(format!("bad attribute value {other}"))),
    }
}

/// What one message of the stream is, checked.
pub fn record(subjects: &Subjects, message: &Message) -> Result<Record, Error> {
    let body: Value = serde_json::from_slice(&message.payload)
        .map_err(|e| Error::BadMessage(format!("{}: not JSON: {e}", message.subject.as_str())))?;
    if let Some(uuid) = subjects.entry_uuid(message.subject.as_str()) {
        Ok(Record::Change {
            uuid: uuid.to_owned(),
            body,
        })
    } else {
        Ok(Record::Marker(body))
    }
}

/// The stream's messages from the first, in order, each with how many follow it now.
pub struct Reader {
    subjects: Subjects,
    messages: async_nats::jetstream::consumer::pull::Ordered,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("subjects", &self.subjects)
            .finish()
    }
}

impl Reader {
    /// Reads stream `name` from its first message, through an ordered consumer of its own
    /// (no state on the server beyond the connection).
    pub async fn open(js: &Context, name: &str, subjects: Subjects) -> Result<Reader, Error> {
        let stream = js
            .get_stream(name)
            .await
            .map_err(|e| Error::Stream(format!("stream {name}: {e}")))?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: subjects.all(),
                deliver_policy: DeliverPolicy::All,
                ..OrderedConfig::default()
            })
            .await
            .map_err(|e| Error::Read(e.to_string()))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| Error::Read(e.to_string()))?;
        Ok(Reader { subjects, messages })
    }

    /// The next message as a record, with how many messages were still pending after it.
    pub async fn next(&mut self) -> Result<(Record, u64), Error> {
        let message = match self.messages.next().await {
            Some(Ok(message)) => message,
            Some(Err(e)) => return Err(Error::Read(e.to_string())),
            None => return Err(Error::Read("the stream's consumer ended".into())),
        };
        let pending = message
            .info()
            .map(|info| info.pending)
            .map_err(|e| Error::Read(e.to_string()))?;
        Ok((record(&self.subjects, &message)?, pending))
    }
}

/// Rebuilds the content from stream `name`: every message up to the last one there now.
pub async fn rebuild(
    js: &Context,
    name: &str,
    subjects: Subjects,
) -> Result<(Rebuilt, Reader), Error> {
    let mut stream = js
        .get_stream(name)
        .await
        .map_err(|e| Error::Stream(format!("stream {name}: {e}")))?;
    let stored = stream
        .info()
        .await
        .map_err(|e| Error::Stream(e.to_string()))?
        .state
        .messages;
    let mut reader = Reader::open(js, name, subjects).await?;
    let mut rebuilt = Rebuilt::default();
    if stored > 0 {
        loop {
            let (record, pending) = reader.next().await?;
            rebuilt.apply(&record)?;
            if pending == 0 {
                break;
            }
        }
    }
    Ok((rebuilt, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: u64, kind: &str, dn: &str) -> Record {
        Record::Change {
            uuid: "u1".into(),
            body: serde_json::json!({
                "seq": seq, "kind": kind, "dn": dn,
                "attributes": {"cn": ["a"], "photo": [{"base64": "AAE="}]},
            }),
        }
    }

    #[test]
    fn changes_rebuild_and_print_like_dump() {
        let mut r = Rebuilt::default();
        r.apply(&change(1, "add", "cn=a,o=x")).expect("add");
        r.apply(&change(2, "rename", "cn=b,o=x")).expect("rename");
        let mut out = Vec::new();
        r.write_ldif(&mut out).expect("ldif");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "dn: cn=b,o=x\ncn: a\nphoto:: AAE=\n\n"
        );
        assert_eq!(r.last_seq, 2);
        r.apply(&Record::Change {
            uuid: "u1".into(),
            body: serde_json::json!({"seq": 3, "kind": "delete", "dn": "cn=b,o=x"}),
        })
        .expect("delete");
        assert!(r.entries.is_empty());
        assert!(r
            .apply(&Record::Change {
                uuid: "u2".into(),
                body: serde_json::json!({"seq": 4, "kind": "add"}),
            })
            .is_err());
    }
}
