//! The JetStream stream the changes go to: created when missing with the settings a compacted,
//! deduplicated change stream needs, and refused when an existing one contradicts them.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;

use crate::subjects::Subjects;
use crate::Error;

/// How the stream is made (`--stream`, `--replicas`, `--duplicate-window`, `--keep`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// The stream's name.
    pub name: String,
    /// Copies kept by a JetStream cluster (1, 3 or 5).
    pub replicas: usize,
    /// How long the server remembers a `Nats-Msg-Id` to drop a message published again: longer
    /// than a publisher may take to come back after a crash and publish again.
    pub duplicate_window: Duration,
    /// Messages kept per entry subject: 1 keeps the current state of each entry only (a
    /// compacted copy of the directory); 0 keeps every change.
    pub keep_per_entry: i64,
}

impl StreamSettings {
    /// Settings for `name`: one replica, a duplicate window of 10 minutes (the retry schedule's
    /// long waits are 60 s), the last message of each entry.
    pub fn new(name: impl Into<String>) -> StreamSettings {
        StreamSettings {
            name: name.into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(600),
            keep_per_entry: 1,
        }
    }

    /// The stream's configuration for `subjects`: file storage, limits retention that never
    /// drops a message but by the per-subject limit.
    pub fn config(&self, subjects: &Subjects) -> Config {
        Config {
            name: self.name.clone(),
            subjects: vec![subjects.all()],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            max_messages_per_subject: self.keep_per_entry,
            description: Some(
                "syncrepl: an LDAP directory's changes, one subject per entry".into(),
            ),
            ..Config::default()
        }
    }

    /// What in an existing stream's configuration contradicts what the publisher needs.
    pub fn conflicts(&self, existing: &Config, subjects: &Subjects) -> Vec<String> {
        let mut problems = Vec::new();
        if !existing.subjects.iter().any(|s| *s == subjects.all()) {
            problems.push(format!(
                "its subjects {:?} do not include {}",
                existing.subjects,
                subjects.all()
            ));
        }
        if existing.retention != RetentionPolicy::Limits {
            problems.push(format!(
                "its retention is {:?}: messages would go once consumed, not stay as the directory's copy",
                existing.retention
            ));
        }
        if existing.max_age > Duration::ZERO {
            problems.push(format!(
                "its max age is {:?}: entries that do not change would expire",
                existing.max_age
            ));
        }
        if existing.max_messages > 0 || existing.max_bytes > 0 {
            problems.push(
                "it limits messages or bytes overall: unchanged entries would be dropped".into(),
            );
        }
        if existing.duplicate_window < Duration::from_secs(60) {
            problems.push(format!(
                "its duplicate window of {:?} is shorter than a publisher's restart",
                existing.duplicate_window
            ));
        }
        if existing.num_replicas != self.replicas {
            problems.push(format!(
                "it has {} replicas, not {}",
                existing.num_replicas, self.replicas
            ));
        }
        problems
    }

    /// Creates the stream if it is missing; checks it if it exists.
    pub async fn ensure(&self, js: &Context, subjects: &Subjects) -> Result<(), Error> {
        match js.get_stream(&self.name).await {
            Ok(mut stream) => {
                let info = stream
                    .info()
                    .await
                    .map_err(|e| Error::Stream(e.to_string()))?;
                let problems = self.conflicts(&info.config, subjects);
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(Error::StreamConflict {
                        name: self.name.clone(),
                        problems: problems.join("; "),
                    })
                }
            }
            Err(e) if is_not_found(&e.kind()) => js
                .create_stream(self.config(subjects))
                .await
                .map(|_| ())
                .map_err(|e| Error::Stream(e.to_string())),
            Err(e) => Err(Error::Stream(e.to_string())),
        }
    }
}

fn is_not_found(kind: &async_nats::jetstream::context::GetStreamErrorKind) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_own_config_has_no_conflict_and_others_do() {
        let subjects = Subjects::new("ldap").expect("valid");
        let settings = StreamSettings::new("DIR");
        let config = settings.config(&subjects);
        assert_eq!(config.subjects, ["ldap.>"]);
        assert_eq!(config.max_messages_per_subject, 1);
        assert!(settings.conflicts(&config, &subjects).is_empty());
        let bad = Config {
            retention: RetentionPolicy::WorkQueue,
            max_age: Duration::from_secs(3600),
            duplicate_window: Duration::from_secs(2),
            ..config.clone()
        };
        assert_eq!(settings.conflicts(&bad, &subjects).len(), 3);
        let other = Subjects::new("other").expect("valid");
        assert_eq!(settings.conflicts(&config, &other).len(), 1);
    }
}
