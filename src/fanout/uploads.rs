//! Pack uploads that rustic_core does not wait for.
//!
//! rustic_core hands each packer's packs to the backend one at a time and waits for every
//! write, so a target that takes longer to store a pack than the chunker takes to fill the
//! next one stalls the chunker. So a pack's write is started and not awaited, up to a bound on
//! the packs held in memory meanwhile. Whatever depends on those packs waits until each of them
//! is stored or has failed (and dropped its target): any other file (an index names its packs,
//! a snapshot its index), a removal, a listing, and a read of a pack still on its way. On every
//! target the order stays packs, then index, then snapshot.

use std::{
    collections::HashSet,
    sync::{Arc, Condvar, Mutex, MutexGuard},
};

/// The packs being uploaded, by repository path.
#[derive(Debug)]
pub(super) struct InFlight {
    paths: Mutex<HashSet<String>>,
    changed: Condvar,
    limit: usize,
    /// Threads waiting here now: lets a unit test see that one is held back.
    #[cfg(test)]
    pub(super) waiting: std::sync::atomic::AtomicUsize,
}

impl InFlight {
    /// At most `limit` packs at once (at least one).
    pub(super) fn new(limit: usize) -> Self {
        Self {
            paths: Mutex::default(),
            changed: Condvar::new(),
            limit: limit.max(1),
            #[cfg(test)]
            waiting: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Waits for room, then counts `path` as in flight until the returned guard is dropped.
    pub(super) fn start(self: &Arc<Self>, path: &str) -> Landing {
        let mut paths = self.wait_while(|p| p.len() >= self.limit);
        paths.insert(path.to_string());
        Landing {
            flight: self.clone(),
            path: path.to_string(),
        }
    }

    /// Waits until no upload is in flight.
    pub(super) fn settle(&self) {
        drop(self.wait_while(|p| !p.is_empty()));
    }

    /// Waits until `path` is not in flight.
    pub(super) fn wait_for(&self, path: &str) {
        drop(self.wait_while(|p| p.contains(path)));
    }

    fn wait_while(
        &self,
        busy: impl Fn(&HashSet<String>) -> bool,
    ) -> MutexGuard<'_, HashSet<String>> {
        // The set is only ever inserted into and removed from: a poisoned lock still holds it.
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        while busy(&paths) {
            #[cfg(test)]
            self.waiting
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            paths = self.changed.wait(paths).unwrap_or_else(|p| p.into_inner());
            #[cfg(test)]
            self.waiting
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
        paths
    }
}

/// One upload in flight; dropping it (even while unwinding) lands it.
pub(super) struct Landing {
    flight: Arc<InFlight>,
    path: String,
}

impl Drop for Landing {
    fn drop(&mut self) {
        let mut paths = self.flight.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths.remove(&self.path);
        self.flight.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    /// Spins until a thread waits in `flight`, or `past` says it went on.
    fn held_or_past(flight: &InFlight, past: impl Fn() -> bool) {
        while flight.waiting.load(Ordering::SeqCst) == 0 && !past() {
            std::thread::yield_now();
        }
    }

    #[test]
    fn room_is_bounded_and_settling_waits_for_every_upload() {
        let flight = Arc::new(InFlight::new(2));
        let a = flight.start("data/a");
        let b = flight.start("data/b");
        let passed = Arc::new(Mutex::new(Vec::new()));
        let waiter = {
            let (flight, passed) = (flight.clone(), passed.clone());
            std::thread::spawn(move || {
                let c = flight.start("data/c");
                passed.lock().unwrap().push("room");
                drop(c);
                flight.settle();
                passed.lock().unwrap().push("settled");
            })
        };
        let went = |what: &'static str| passed.lock().unwrap().contains(&what);
        // Two in flight: a third waits for room.
        held_or_past(&flight, || went("room"));
        assert!(!went("room"), "a third upload started beside two");
        drop(a);
        // Room now, but settling waits for `b`.
        while !went("room") {
            std::thread::yield_now();
        }
        held_or_past(&flight, || went("settled"));
        assert!(!went("settled"), "settled while an upload was in flight");
        drop(b);
        waiter.join().unwrap();
        assert!(went("settled"));
        flight.wait_for("data/a");
    }
}
