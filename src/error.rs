//! What can end a run of the facade: the runtime, the state, or the consumer.

use syncrepl_state::{ConsumerError, DeliveryError};

/// Why a run ended with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting, binding, the protocol or the search failed (retrying did not help).
    #[error(transparent)]
    Runtime(syncrepl_mio::Error),
    /// The state failed (full disk, failed fsync, damage); the mirror must be reopened.
    #[error(transparent)]
    State(#[from] syncrepl_state::Error),
    /// The consumer failed (a closed pipe, a full disk, a handler's error). Nothing past the
    /// last change it acknowledged was committed; the next run hands out again from `seq` (or
    /// from the first unacknowledged change when the failure was not on a change).
    #[error("the consumer failed{}: {source}", seq.map(|s| format!(" at change {s}")).unwrap_or_default())]
    Consumer {
        /// The change the consumer failed on, if it failed on one.
        seq: Option<u64>,
        /// The consumer's error, as it returned it.
        source: ConsumerError,
    },
}

impl From<DeliveryError> for Error {
    fn from(e: DeliveryError) -> Error {
        match e {
            DeliveryError::State(e) => Error::State(e),
            DeliveryError::Consumer { seq, source } => Error::Consumer { seq, source },
        }
    }
}

impl From<syncrepl_mio::Error> for Error {
    fn from(e: syncrepl_mio::Error) -> Error {
        Error::Runtime(e)
    }
}

impl From<syncrepl_mio::RunError<DeliveryError>> for Error {
    fn from(e: syncrepl_mio::RunError<DeliveryError>) -> Error {
        match e {
            syncrepl_mio::RunError::Runtime(e) => Error::Runtime(e),
            syncrepl_mio::RunError::Sink(delivery) => Error::from(delivery),
        }
    }
}
