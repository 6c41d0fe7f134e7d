//! Storage errors, classified so that callers can tell "no such file" from "cannot reach the
//! target". They sit below everything else: the crate's own [`crate::error::Error`] wraps them.

/// What kind of failure a storage operation met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The file does not exist.
    NotFound,
    /// A removable disk is not mounted.
    Offline,
    /// The storage itself is not there: a folder that does not exist, a missing bucket or
    /// container, a wrong endpoint path. Never read as "empty": only `init` creates a folder.
    Absent,
    /// Worth retrying: a timeout, a dropped connection, a busy server.
    Transient,
    /// Will fail again: refused credentials, a missing share or bucket, a full disk.
    Permanent,
}

/// A classified storage error. Its message never holds a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// The class.
    pub kind: StoreErrorKind,
    /// What failed.
    pub message: String,
}

impl StoreError {
    /// An error of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// Whether the file simply does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.kind == StoreErrorKind::NotFound
    }
}

/// Result with [`StoreError`].
pub type StoreResult<T> = Result<T, StoreError>;
