//! How the library tells its caller what happens during a run, without printing anything.

use std::sync::Arc;

use crate::fanout::member::Member;

/// Receives events of a run. Every method has a default that ignores the event.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// A target was dropped from the run; it receives nothing more.
    fn target_failed(&self, _target: &str, _error: &str) {}
    /// Something worth a warning that does not stop the run.
    fn warn(&self, _message: &str) {}
    /// A step of a longer job is done (one line, e.g. `cairn run`'s steps).
    fn info(&self, _message: &str) {}
    /// The targets a write run uses, to follow their byte counters (none: a restore, which
    /// writes to this machine; its progress is shown all the same).
    fn writing_to(&self, _members: &[Arc<Member>]) {}
    /// The write run is over.
    fn writing_done(&self) {}
}

/// Ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {}
