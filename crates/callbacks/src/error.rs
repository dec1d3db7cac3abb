//! The crate's one error type, by cause.

use std::path::PathBuf;

/// Why a [`Callbacks`](crate::Callbacks) operation failed.
///
/// Delivery failures (a 500, a timeout, a refused connection) are not errors: they are retried and
/// counted in [`CallbackStats`](crate::CallbackStats). Errors are for the caller's misuse and for
/// the environment (the store on disk). None of them carries a signature secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// The caller misused the API: a callback URL that is not an absolute `http://` or `https://`
    /// URL with a host.
    #[error("invalid callback URL for project {project:?}: {reason}")]
    InvalidUrl {
        /// The project whose URL was refused.
        project: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The caller misused the API: an event body larger than [`MAX_BODY_BYTES`](crate::MAX_BODY_BYTES).
    #[error("callback body of {len} bytes exceeds the {max}-byte limit")]
    BodyTooLarge {
        /// The serialised body's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The store is held by another open [`Callbacks`](crate::Callbacks) (in this process or
    /// another): redb locks the file.
    #[error("callback store {path} is already open")]
    AlreadyOpen {
        /// The store's path.
        path: PathBuf,
    },
    /// The file exists but is not a callback store: not a redb database, a corrupt one, a redb
    /// database of another program, or a newer layout than this version knows.
    #[error("{path} is not a usable callback store: {reason}")]
    NotAStore {
        /// The store's path.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The environment failed: the store file could not be opened or created.
    #[error("callback store {path}: {source}")]
    Io {
        /// The store's path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The environment failed: reading or writing the store.
    #[error("callback store: {0}")]
    Store(#[source] Box<redb::Error>),
    /// The environment failed: the TLS configuration for `https://` URLs could not be built.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The delivery task has stopped ([`Callbacks::shutdown`](crate::Callbacks::shutdown) was
    /// called or the runtime is gone), so nothing can be enqueued.
    #[error("callback delivery has been shut down")]
    ShutDown,
}

impl From<redb::Error> for CallbackError {
    fn from(e: redb::Error) -> Self {
        CallbackError::Store(Box::new(e))
    }
}

macro_rules! store_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for CallbackError {
            fn from(e: $t) -> Self {
                CallbackError::Store(Box::new(e.into()))
            }
        }
    )*};
}

store_error_from!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError, redb::DatabaseError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let e = CallbackError::InvalidUrl { project: "p1".into(), reason: "scheme must be http or https" };
        assert_eq!(e.to_string(), "invalid callback URL for project \"p1\": scheme must be http or https");
        let e = CallbackError::NotAStore { path: "/tmp/x.redb".into(), reason: "corrupt".into() };
        assert!(e.to_string().contains("/tmp/x.redb"), "{e}");
    }
}
