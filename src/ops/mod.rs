//! The commands, one file each: options in, report out. They never print.

pub mod backup;
pub mod check;
pub mod diff;
pub mod dump;
pub mod erase;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod lock_extend;
pub mod ls;
pub mod prune;
pub mod purge;
pub mod recover;
pub mod restore;
pub mod run;
pub mod snapshots;
pub mod status;
pub mod sync;
pub mod verify;

#[cfg(test)]
mod tests;
