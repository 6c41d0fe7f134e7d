//! Exit codes: one table for the binary, the run report and the hooks that receive it.

use crate::error::Error;

/// Everything worked.
pub const OK: i32 = 0;
/// The command failed.
pub const FAILED: i32 = 1;
/// Bad command line or configuration file.
pub const USAGE: i32 = 2;
/// Partially done: a required target did not get everything (it is named), the others did.
pub const PARTIAL: i32 = 3;
/// No target could be reached or used at all; for `verify`: a target could not be reached
/// (the others were verified and passed).
pub const UNREACHABLE: i32 = 4;
/// `verify` or `check`: damage found on at least one target (for `check --heal`: not healed;
/// for `check --immutability`: a claimed protection did not hold); `recover`: unproven files
/// left behind.
pub const VERIFY_FAILED: i32 = 5;
/// `backup`: the snapshot was saved, but some source files or folders could not be read (or
/// changed while read); they are named. Takes precedence over [`PARTIAL`].
pub const INCOMPLETE: i32 = 6;
/// No repository on any reachable target.
pub const NO_REPOSITORY: i32 = 10;
/// Another cairn process holds the repository lock.
pub const LOCKED: i32 = 11;
/// Wrong repository password.
pub const WRONG_PASSWORD: i32 = 12;

/// Locked after too many wrong passwords (or vault passphrases) in a row.
pub const LOCKED_OUT: i32 = 13;

/// The exit code for a library error.
#[must_use]
pub fn for_error(e: &Error) -> i32 {
    match e {
        Error::Config { .. } | Error::Secret { .. } | Error::Usage(_) => USAGE,
        Error::WrongPassword | Error::WrongPassphrase { .. } | Error::KeyRemoved { .. } => {
            WRONG_PASSWORD
        }
        Error::LockedOut { .. } => LOCKED_OUT,
        Error::Vault { .. } => USAGE,
        Error::NoRepository => NO_REPOSITORY,
        Error::NoTargetUsable(_) => UNREACHABLE,
        Error::Locked(_) => LOCKED,
        _ => FAILED,
    }
}
