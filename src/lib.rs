//! cairn: an encrypted, deduplicating backup engine that chunks, compresses and encrypts a
//! backup once and writes the identical restic-format repository to every configured target.
//!
//! The data path reads top to bottom: [`config`] -> [`store`] -> [`fanout`] -> rustic_core ->
//! [`report`]. The commands live in [`ops`], one file each, and take a [`context::Context`]:
//! one loaded configuration with its vault, lockout, audit trail and state, nothing of it in a
//! `static`. The library never prints; progress and warnings reach the caller through
//! [`progress::Observer`].
//!
//! Modules import only downward. Bottom first, each module uses only those before it (in
//! this list, left to right); `python3 ../shared/tools/module-cycles.py` finds no circle:
//! 1. errors: [`store::error`], [`error`], [`exit`];
//! 2. plain data and helpers: [`layout`], [`par`], [`sealed`], [`report`], [`retention`];
//! 3. secret references and the one process-wide registry of secrets to scrub: [`secret`];
//! 4. configuration as plain data, parsed and validated without side effects: [`config`];
//! 5. storage: [`tty`], [`store`], [`fanout::member`], [`progress`];
//! 6. this machine's records: [`state`], [`history`], [`deletion::record`], [`audit`], [`erasure`], [`lockout`],
//!    [`vault`], [`repo`] (opening a repository, the derived-key cache);
//! 7. one configuration at work: [`context`];
//! 8. reading the targets: `verified::packs`, [`fanout`], [`probe`], `verified`;
//! 9. trust: [`proof`], [`replica`], [`needs`] (what snapshots need), [`deletion`], [`unlock`];
//! 10. one command's view of the targets: [`session`], [`lock`];
//! 11. around the commands: [`source`], [`selection`], [`hook`], [`notify`], [`runlog`],
//!     [`rule`] (3-2-1-1-0), [`metrics`], [`schedule`], [`destination`], [`sample`];
//! 12. the commands: [`ops`];
//! 13. evidence of them all, for an auditor: [`evidence`]; above it only the binary's `cli`.
#![deny(missing_docs)]

pub mod audit;
pub mod config;
pub mod context;
pub mod deletion;
pub mod destination;
pub mod erasure;
pub mod error;
pub mod evidence;
pub mod exit;
pub mod fanout;
pub mod history;
pub mod hook;
pub mod layout;
pub mod lock;
pub mod lockout;
pub mod metrics;
pub mod needs;
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
pub mod rule;
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
