//! Exit codes, in one table (also shown by `cairn --help`).

pub use cairn::exit::*;

/// The table as printed under `--help`.
pub const TABLE: &str = "\
Exit codes:
  0   success
  1   failed (nothing or not everything was done; see the message); verify: the sample was empty
  2   bad command line or configuration (file, line and key are named)
  3   partially done: a required target is offline, unreachable, lagging or failed; the others are complete
  4   no target could be reached or used; verify/check: a target could not be reached (the others passed)
  5   verify/check/run: damage found on a target; erasures --copies: a certificate copy that is not proven
      (a file damaged, missing, unreadable; check --heal: not healed); check --immutability/run: a
      target's claimed protection did not hold; recover: unproven files left behind
  6   backup: snapshot saved, but some source files could not be read or changed while read (named)
  10  no repository on any reachable target (run `cairn init`)
  11  the repository is locked by another cairn process (it is named); run: another run is running
  12  wrong repository password or vault passphrase, or a removed key's password
  13  locked: too many wrong passwords in a row (the message says until when)
  130 interrupted (Ctrl-C)
With several repositories (`[[repository]]`), each runs on its own and the command exits with
the worst of their codes: a failure (the first in configuration order) over 6 over 3 over 0.";
