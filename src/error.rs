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
    /// The vault passphrase does not open the vault.
    #[error("wrong passphrase for vault {}", vault.display())]
    WrongPassphrase {
        /// The vault file.
        vault: PathBuf,
    },
    /// Too many wrong passwords in a row: every attempt is refused until the lock ends.
    #[error(
        "{what} is locked after {failures} wrong passwords in a row; every attempt is refused \
         until {until} (UTC)"
    )]
    LockedOut {
        /// The repository or vault.
        what: String,
        /// Wrong passwords in a row.
        failures: u32,
        /// When the lock ends.
        until: String,
    },
    /// The password opens a key that was removed (`cairn key remove`).
    #[error(
        "this password's key was removed from the repository ({key}); it opens nothing any more"
    )]
    KeyRemoved {
        /// The removed key file.
        key: String,
    },
    /// The credentials vault cannot be used.
    #[error("vault {}: {message}", path.display())]
    Vault {
        /// The vault file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
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
        source: crate::store::error::StoreError,
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
    /// A command-line value that cannot be used as given (exit 2, like a bad configuration).
    #[error("{0}")]
    Usage(String),
    /// A file or folder on this machine.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An error from rustic_core, kept whole (kind, context, source) for callers that look.
    /// Not a `#[source]`: its `Display` is the library's own text (kind, bug-report plea,
    /// backtrace), which `{:#}` would print after cairn's words; those already hold its causes.
    #[error("{}", rustic_words(.0))]
    Rustic(Box<rustic_core::RusticError>),
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

/// rustic_core's error in cairn's words, on one line: its message (context filled in) and its
/// cause, without the library's kind, code, bug-report plea or backtrace. Its `Display` holds
/// all of those, so it must never be shown as is.
#[must_use]
pub fn rustic_words(err: &rustic_core::RusticError) -> String {
    // `display_log` is "Error: MESSAGE (kind: related to KIND[, code: C])[: caused by: CAUSE
    // [ : (source: S)]]"; MESSAGE is the only part that has the context substituted.
    let log = err.display_log();
    let log = log.strip_prefix("Error: ").unwrap_or(&log);
    let message = log.find(" (kind: related to ").map_or(log, |at| &log[..at]);
    let mut out = tidy(message);
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        let text = match c.downcast_ref::<rustic_core::RusticError>() {
            Some(r) => rustic_words(r),
            None => tidy(&c.to_string()),
        };
        // Guidance often repeats its cause's message ("{error}" in the template); a cause
        // that is only a type's name (`aead::Error`) says nothing to the admin.
        if !text.is_empty() && !is_type_name(&text) && !out.contains(&text) {
            out = format!("{}: {text}", out.trim_end_matches('.'));
        }
        if c.is::<rustic_core::RusticError>() {
            break;
        }
        cause = c.source();
    }
    out
}

/// A cause that is only a type's name (`aead::Error`) says nothing to the admin.
fn is_type_name(text: &str) -> bool {
    text.contains("::") && !text.contains(' ')
}

/// Any error in cairn's words (see [`rustic_words`]): a library error that pastes a wrapped
/// rustic_core error's full display into its own message (rustic_core's check findings: "error
/// checking trees : {source}") keeps its own words with the wrapped one reduced.
#[must_use]
pub fn words(err: &(dyn std::error::Error + 'static)) -> String {
    match err.downcast_ref::<rustic_core::RusticError>() {
        Some(r) => rustic_words(r),
        None => tidy(&err.to_string()),
    }
}

/// One line, without advice that points at another tool's commands, and with any rustic_core
/// error whose full display was pasted into a message (its guidance sometimes holds one)
/// reduced to its message and cause.
fn tidy(msg: &str) -> String {
    let mut s = unwrap_displays(&one_line(msg));
    if let Some(at) = s.find(" at BlobLocation {") {
        let end = s[at..].find('}').map_or(s.len(), |e| at + e + 1);
        s.replace_range(at..end, "");
    }
    s = s.replace("Pack:", "pack ");
    for advice in [
        " To repair: 'rustic repair index'.",
        " Run prune to correct this!",
        " Please make sure the file exists and is accessible.",
        " marked to delete: false",
        " marked to-delete: false",
    ] {
        s = s.replace(advice, "");
    }
    s.trim_end().to_string()
}

/// rustic_core's full display, once on one line: "`rustic_core` experienced an error related to
/// `KIND`. Message: GUIDANCE [For more information…] [We believe this is a bug…] Some
/// additional details ... [Context: …] [Caused by: CAUSE] [Backtrace: …]". It runs to the end of
/// the text it was pasted into: the backtrace comes last.
fn unwrap_displays(text: &str) -> String {
    const HEAD: &str = "`rustic_core` experienced an error related to `";
    let Some(at) = text.find(HEAD) else {
        return text.to_string();
    };
    let rest = &text[at..];
    let section = |from: &str, ends: &[&str]| -> Option<String> {
        let start = rest.find(from)? + from.len();
        let body = &rest[start..];
        let end = ends
            .iter()
            .filter_map(|e| body.find(e))
            .min()
            .unwrap_or(body.len());
        Some(body[..end].trim().to_string())
    };
    let message = section(
        "Message: ",
        &[
            " For more information, see:",
            " Related issues:",
            " We believe this is a bug",
            " Some additional details",
        ],
    )
    .unwrap_or_default();
    let cause = section(" Caused by: ", &[" Severity:", " Status:", " Backtrace:"])
        .map(|c| {
            c.replace(" : (source: ", ": ")
                .trim_end_matches(')')
                .to_string()
        })
        .filter(|c| !c.is_empty() && !message.contains(c.as_str()) && !is_type_name(c));
    let head = text[..at].trim_end().trim_end_matches(':').trim_end();
    let message = message.trim_end_matches('.');
    let mut out = if head.is_empty() {
        message.to_string()
    } else {
        format!("{head}: {message}")
    };
    if let Some(c) = cause {
        out = format!("{out}: {c}");
    }
    // A display pasted into the guidance of another.
    unwrap_displays(&out)
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
    fn rustic_errors_read_on_one_line_and_are_kept_whole() {
        let e = super::Error::from(rustic_core::RusticError::new(
            rustic_core::ErrorKind::Backend,
            "reading failed\nMAC check failed.",
        ));
        assert_eq!(e.to_string(), "reading failed MAC check failed.");
        assert!(matches!(&e, super::Error::Rustic(_)));
        // What the binary prints (`{:#}`, every cause) is cairn's line alone: the library's
        // own display (kind, plea, backtrace) is not a cause to walk into.
        let shown = format!("{:#}", anyhow::Error::new(e));
        assert_eq!(shown, "reading failed MAC check failed.");
    }

    #[test]
    fn library_wording_never_reaches_the_user() {
        // A permission error from rustic_core's source walker: kind, bug-report plea and
        // backtrace are the library's; the message and its cause are what the admin needs.
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = rustic_core::RusticError::with_source(
            rustic_core::ErrorKind::Internal,
            "Failed to open file at `{path}`. Please make sure the file exists and is accessible.",
            io,
        )
        .attach_context("path", "/srv/a")
        .attach_error_code("C001")
        .ask_report();
        let w = super::rustic_words(&e);
        assert_eq!(w, "Failed to open file at `/srv/a`: permission denied");
        let shown = super::Error::from(e).to_string();
        for library in [
            "kind:",
            "code:",
            "rustic",
            "Backtrace",
            "report it",
            "caused by",
        ] {
            assert!(!shown.contains(library), "{shown}");
        }
    }

    #[test]
    fn a_full_display_pasted_into_a_message_is_reduced_to_message_and_cause() {
        // rustic_core's tree reader pastes a decryption error's full display into its own.
        let inner = rustic_core::RusticError::with_source(
            rustic_core::ErrorKind::Cryptography,
            "Data decryption failed, MAC check failed.",
            std::io::Error::other("tag mismatch"),
        )
        .attach_error_code("C001");
        let outer = rustic_core::RusticError::new(
            rustic_core::ErrorKind::Internal,
            format!(
                "error processing Pack:638a9226 at BlobLocation {{ offset: 414, length: 159 }}: \
                 {inner}"
            ),
        );
        assert_eq!(
            super::rustic_words(&outer),
            "error processing pack 638a9226: Data decryption failed, MAC check failed: tag mismatch"
        );
    }

    #[test]
    fn a_wrapping_error_keeps_its_words_and_the_wrapped_display_is_reduced() {
        #[derive(Debug, thiserror::Error)]
        #[error("error checking trees : {source}")]
        struct Finding {
            source: Box<rustic_core::RusticError>,
        }
        let f = Finding {
            source: rustic_core::RusticError::new(
                rustic_core::ErrorKind::Internal,
                "Tree ID `f590fbe9` not found in index",
            )
            .ask_report(),
        };
        assert_eq!(
            super::words(&f),
            "error checking trees: Tree ID `f590fbe9` not found in index"
        );
    }
}
