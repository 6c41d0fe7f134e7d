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
    /// Will fail again: refused credentials, a missing share or bucket.
    Permanent,
    /// The storage is full or over its quota: nothing more can be written until space is freed.
    Full,
}

/// Whether a storage error's words say the storage is full or over quota: each service says
/// it its own way (errno 28 through std and opendal, SMB's disk-full status, HTTP 507, quotas).
#[must_use]
pub fn says_full(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "no space left",
        "no storage space",
        "disk full",
        "share is full",
        "quota exceeded",
        "insufficient storage",
        "insufficientstorage",
    ]
    .iter()
    .any(|w| t.contains(w))
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
