//! The library's error type: every failure names what it concerns (a file and line, a target, a path).

use std::path::PathBuf;

/// What went wrong, classified so the binary can choose an exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `targets.toml` could not be read, parsed or validated.
    #[error("{path}: {message}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong, with line and key where known.
        message: String,
    },
    /// A secret reference (`env:`, `file:`, `command:`) could not be resolved.
    #[error("secret {what}: {message}")]
    Secret {
        /// Which setting the secret is for, e.g. `repository.password`.
        what: String,
        /// Why it could not be resolved (never the secret itself).
        message: String,
    },
    /// The repository password does not open any key of the repository.
    #[error("wrong password: no key in the repository matches it")]
    WrongPassword,
    /// No target holds a repository yet.
    #[error("no repository found on any reachable target (run `cairn init` first)")]
    NoRepository,
    /// A target holds a repository other than the one the others hold.
    #[error("target `{target}` holds a different repository: {message}")]
    ForeignRepository {
        /// The target.
        target: String,
        /// What differs.
        message: String,
    },
    /// A storage operation failed on one target; its class says whether it is offline,
    /// unreachable, missing a file or refused.
    #[error("target `{target}`: {source}")]
    Target {
        /// The target.
        target: String,
        /// What failed, classified.
        #[source]
        source: crate::store::StoreError,
    },
    /// Another cairn process holds the repository lock.
    #[error("repository is locked: {0}")]
    Locked(String),
    /// No target could be used at all.
    #[error("no target is usable: {0}")]
    NoTargetUsable(String),
    /// A restore would replace files that exist in its destination; nothing was restored.
    #[error(
        "{count} file(s) already exist in the destination (e.g. {examples}); nothing was restored"
    )]
    WouldOverwrite {
        /// How many.
        count: usize,
        /// A few of them.
        examples: String,
    },
    /// Bad input from the user (a missing source path, an existing restore destination, ...).
    #[error("{0}")]
    Input(String),
    /// A file or folder on this machine.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An error from rustic_core, kept whole (kind, context, source) for callers that look.
    #[error("{}", one_line(&.0.display_log()))]
    Rustic(#[source] Box<rustic_core::RusticError>),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Box<rustic_core::RusticError>> for Error {
    fn from(err: Box<rustic_core::RusticError>) -> Self {
        if err.is_incorrect_password() {
            Self::WrongPassword
        } else {
            Self::Rustic(err)
        }
    }
}

/// A message on one line: a report line or a log line holds one error.
fn one_line(msg: &str) -> String {
    msg.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rustic_errors_read_on_one_line_and_keep_their_source() {
        let e = super::Error::from(rustic_core::RusticError::new(
            rustic_core::ErrorKind::Backend,
            "reading failed\nMAC check failed.",
        ));
        assert_eq!(
            e.to_string(),
            "Error: reading failed MAC check failed. (kind: related to the backend)"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
