//! cairn: an encrypted, deduplicating backup engine that chunks, compresses and encrypts a
//! backup once and writes the identical restic-format repository to every configured target.
//!
//! The data path reads top to bottom: [`config`] -> [`store`] -> [`fanout`] -> rustic_core ->
//! [`report`]. The commands live in [`ops`], one file each. The library never prints; progress
//! and warnings reach the caller through [`progress::Observer`].
#![deny(missing_docs)]

pub mod audit;
pub mod config;
pub mod deletion;
pub mod destination;
pub mod error;
pub mod exit;
pub mod fanout;
pub mod hook;
pub mod layout;
pub mod lock;
pub mod lockout;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod par;
pub mod probe;
pub mod progress;
pub mod proof;
pub mod replica;
pub mod report;
pub mod retention;
pub mod runlog;
pub mod sample;
pub mod schedule;
pub mod sealed;
pub mod secret;
pub mod selection;
pub mod session;
pub mod source;
pub mod state;
pub mod store;
pub mod tty;
pub mod vault;
pub(crate) mod verified;
