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
    /// One target failed.
    #[error("target `{target}`: {message}")]
    Target {
        /// The target.
        target: String,
        /// What failed.
        message: String,
    },
    /// Another cairn process holds the repository lock.
    #[error("repository is locked: {0}")]
    Locked(String),
    /// No target could be used at all.
    #[error("no target is usable: {0}")]
    NoTargetUsable(String),
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
    /// An error from rustic_core.
    #[error("{0}")]
    Rustic(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Box<rustic_core::RusticError>> for Error {
    fn from(err: Box<rustic_core::RusticError>) -> Self {
        if err.is_incorrect_password() {
            Self::WrongPassword
        } else {
            Self::Rustic(concise(&err.display_log()))
        }
    }
}

/// rustic_core's message without its help links, context dump and backtrace, on one line.
fn concise(msg: &str) -> String {
    let cut = [
        "\n\nFor more information",
        "\n\nSome additional details",
        "\n\nBacktrace",
    ]
    .iter()
    .filter_map(|m| msg.find(m))
    .min()
    .unwrap_or(msg.len());
    msg[..cut]
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rustic_messages_lose_links_and_backtraces() {
        let m = "Error: reading failed\n\nMessage:\nMAC check failed.\n\nFor more information, see: x\n\nBacktrace:\n 0: y";
        assert_eq!(
            super::concise(m),
            "Error: reading failed Message: MAC check failed."
        );
    }
}
