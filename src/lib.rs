//! cairn: an encrypted, deduplicating backup engine that chunks, compresses and encrypts a
//! backup once and writes the identical restic-format repository to every configured target.
//!
//! The data path reads top to bottom: [`config`] -> [`store`] -> [`fanout`] -> rustic_core ->
//! [`report`]. The commands live in [`ops`], one file each, and take a [`context::Context`]:
//! one loaded configuration with its vault, lockout, audit trail and state, nothing of it in a
//! `static`. The library never prints; progress and warnings reach the caller through
//! [`progress::Observer`].
//!
//! Modules import only downward, in this order (bottom first; each line may use the ones above
//! it, `python3 ../shared/tools/module-cycles.py` checks there is no circle):
//! 1. errors: [`store::error`], [`error`], [`exit`];
//! 2. plain data and helpers: [`layout`], [`par`], [`sealed`], [`report`], [`retention`];
//! 3. secrets: [`secret`] (with the one process-wide registry of values to scrub);
//! 4. configuration as plain data: [`config`];
//! 5. storage: [`tty`], [`store`], then [`fanout::member`] and [`progress`];
//! 6. local state and accountability: [`state`], [`audit`], [`lockout`], [`vault`], [`repo`];
//! 7. the context: [`context`];
//! 8. reading the targets: [`probe`], [`verified`], [`fanout`];
//! 9. trust: [`proof`], [`replica`], [`deletion`], [`unlock`];
//! 10. one command's view: [`session`], then [`lock`];
//! 11. [`source`], [`selection`], [`hook`], [`notify`], [`metrics`], [`runlog`], [`schedule`],
//!     [`destination`], [`sample`];
//! 12. the commands: [`ops`]; above them only the binary's `cli`.
#![deny(missing_docs)]

pub mod audit;
pub mod config;
pub mod context;
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
pub mod repo;
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
pub mod unlock;
pub mod vault;
pub(crate) mod verified;
