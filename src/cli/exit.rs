//! Exit codes, in one table (also shown by `cairn --help`).

use cairn::error::Error;

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
/// `verify` or `check`: damage found on at least one target (for `check --heal`: not healed).
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

/// The table as printed under `--help`.
pub const TABLE: &str = "\
Exit codes:
  0   success
  1   failed (nothing or not everything was done; see the message); verify: the sample was empty
  2   bad command line or configuration (file, line and key are named)
  3   partially done: a required target is offline, unreachable, lagging or failed; the others are complete
  4   no target could be reached or used; verify/check: a target could not be reached (the others passed)
  5   verify/check: damage found on a target (a file damaged, missing, unreadable; check --heal: not healed)
  6   backup: snapshot saved, but some source files could not be read or changed while read (named)
  10  no repository on any reachable target (run `cairn init`)
  11  the repository is locked by another cairn process (it is named)
  12  wrong repository password
  130 interrupted (Ctrl-C)";

/// The exit code for a library error.
pub fn for_error(e: &Error) -> i32 {
    match e {
        Error::Config { .. } | Error::Secret { .. } => USAGE,
        Error::WrongPassword => WRONG_PASSWORD,
        Error::NoRepository => NO_REPOSITORY,
        Error::NoTargetUsable(_) => UNREACHABLE,
        Error::Locked(_) => LOCKED,
        _ => FAILED,
    }
}
