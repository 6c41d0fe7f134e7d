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
    /// Threads waiting here now: lets a unit test know one is held back.
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
    use std::sync::Barrier;

    use super::*;

    #[test]
    fn settling_waits_for_every_upload_and_room_is_bounded() {
        let flight = Arc::new(InFlight::new(2));
        let a = flight.start("data/a");
        let b = flight.start("data/b");
        let (go, landed) = (Arc::new(Barrier::new(2)), Arc::new(Mutex::new(Vec::new())));
        let waiter = {
            let (flight, go, landed) = (flight.clone(), go.clone(), landed.clone());
            std::thread::spawn(move || {
                go.wait();
                // No room until one lands; then settling waits for the rest.
                let c = flight.start("data/c");
                landed.lock().unwrap().push("room");
                drop(c);
                flight.settle();
                landed.lock().unwrap().push("settled");
            })
        };
        go.wait();
        landed.lock().unwrap().push("a");
        drop(a);
        flight.wait_for("data/a");
        landed.lock().unwrap().push("b");
        drop(b);
        waiter.join().unwrap();
        let order = landed.lock().unwrap().clone();
        assert_eq!(order.first(), Some(&"a"));
        assert_eq!(order.last(), Some(&"settled"));
        assert!(
            order.iter().position(|s| *s == "b") < order.iter().position(|s| *s == "settled"),
            "{order:?}"
        );
    }
}
