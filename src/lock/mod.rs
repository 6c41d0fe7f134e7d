//! The repository lock: one writer at a time.
//!
//! Two layers. On this machine, an exclusive `flock` on a file in the state folder: the kernel
//! drops it when the holder dies, so it can never go stale. On every target the run uses, one
//! file per holder under [`LOCK_DIR`] (restic does not look there) naming the holder with a
//! random id and a refresh sequence number, rewritten every minute while the lock is held.
//!
//! Taking it on a target: list the holders; refuse if one is live; write ours, read it back, and
//! list again. Two hosts starting at the same moment both write, and whichever lists last sees
//! the other: both listings cannot miss each other, so at most one wins (both may lose; neither
//! is harmed). A lock file that cannot be read refuses that target: the run leaves it out.
//!
//! A holder on this host is stale when its process is dead. A holder on another host is judged
//! by its own refresh sequence, never by comparing clocks: it is stale only once this machine
//! has seen the same sequence number for [`STALE_AFTER`] by its own clock (recorded in the
//! state folder between runs). A holder that finds its file gone or replaced at a refresh has
//! lost the lock to a takeover and stops writing to that target.
//!
//! Once the repository key is known, a writing run also holds restic's own lock on each target
//! ([`restic`]), so that stock restic started by an admin there waits for it, and it leaves out a
//! target restic holds exclusively.

mod guard;
mod holder;
pub mod restic;

pub use guard::LockedTargets;
pub(crate) use holder::flock;
pub use holder::{Holder, local_holder};
use holder::{Sightings, SightingsNow};

use std::{
    collections::BTreeMap,
    fs::File,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, RecvTimeoutError},
    },
    thread,
    time::Duration,
};

use bytes::Bytes;

use crate::{
    config::Config,
    error::{Error, Result},
    probe::{Probe, Probed},
    progress::Observer,
    proof::Proof,
    state,
    store::Store,
};

pub use crate::layout::LOCK_DIR;
/// How often a held lock is refreshed on the targets.
const REFRESH: Duration = Duration::from_secs(60);
/// A target lock whose sequence number has not moved for this long (by this machine's clock)
/// belongs to a process that is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);
/// One target the lock was taken on.
#[derive(Debug)]
struct Locked {
    name: String,
    store: Arc<dyn Store>,
    /// Set once another process took the lock over here: writing to it must stop.
    lost: Arc<AtomicBool>,
}

/// A held lock; dropping it releases it everywhere.
#[derive(Debug)]
pub struct RepoLock {
    local: File,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<thread::JoinHandle<()>>,
    holder: Holder,
    targets: Arc<Vec<Locked>>,
    refused: Vec<(String, Probe)>,
    restic: Arc<std::sync::Mutex<restic::Held>>,
}

impl RepoLock {
    /// The flag that says the lock on `target` was taken over, if the lock covers `target`.
    #[must_use]
    pub fn lost_flag(&self, target: &str) -> Option<Arc<AtomicBool>> {
        self.targets
            .iter()
            .find(|t| t.name == target)
            .map(|t| t.lost.clone())
    }

    /// The probes, with every target the lock does not cover marked unreachable (and why), so
    /// that no write run touches a target it has not locked.
    #[must_use]
    pub(crate) fn restrict(&self, probed: Vec<Probed>) -> Vec<Probed> {
        probed
            .into_iter()
            .map(|mut p| {
                let usable = matches!(p.probe, Probe::Ready { .. } | Probe::Empty);
                if let Some((_, probe)) = self.refused.iter().find(|(n, _)| *n == p.cfg.name) {
                    p.probe = probe.clone();
                } else if usable && self.lost_flag(&p.cfg.name).is_none() {
                    p.probe = Probe::Unreachable("was not locked by this run".into());
                }
                p
            })
            .collect()
    }

    /// With the repository key known: on every target of `probed` that holds the repository
    /// and is locked by this run, leaves the target out if restic holds it exclusively, else
    /// writes restic's shared lock there (kept until the run ends). Targets already done are
    /// skipped, so a call after catch-up covers the targets it created. Call [`Self::restrict`]
    /// again afterwards.
    pub(crate) fn hold_restic(
        &mut self,
        proof: &Proof,
        probed: &[Probed],
        observer: &Arc<dyn Observer>,
    ) {
        let Ok(mut held) = self.restic.lock() else {
            return;
        };
        let todo: Vec<(&str, &dyn Store)> = self
            .targets
            .iter()
            .filter(|t| {
                // restic's lock files there could never be removed either.
                !t.store.append_only()
                    && !held.holds(&t.name)
                    && !self.refused.iter().any(|(n, _)| *n == t.name)
                    && probed
                        .iter()
                        .any(|p| p.cfg.name == t.name && matches!(p.probe, Probe::Ready { .. }))
            })
            .map(|t| (t.name.as_str(), t.store.as_ref()))
            .collect();
        let taken = match held.take(proof.master_key(), &todo, &self.holder) {
            Ok(t) => t,
            Err(e) => {
                observer.warn(&format!("restic's locks cannot be written: {e}"));
                return;
            }
        };
        for ((name, _), result) in todo.iter().zip(taken) {
            match result {
                Ok(found) => {
                    for lock in found.cleared {
                        observer.warn(&format!(
                            "`{name}`: removed {} left by a cairn run that is gone",
                            lock.describe()
                        ));
                    }
                    for f in found.foreign {
                        observer.warn(&format!(
                            "`{name}`: {f} is no lock of this repository (it does not decrypt \
                             with its key); left alone"
                        ));
                    }
                }
                Err(why) => {
                    observer.warn(&format!("`{name}` left out: {why}"));
                    let probe = Probe::Unreachable(format!("could not be locked: {why}"));
                    self.refused.push(((*name).to_string(), probe));
                }
            }
        }
    }

    /// The targets whose lock was not taken over, as (name, store).
    fn live(targets: &[Locked]) -> Vec<(&str, &dyn Store)> {
        targets
            .iter()
            .filter(|t| !t.lost.load(Ordering::SeqCst))
            .map(|t| (t.name.as_str(), t.store.as_ref()))
            .collect()
    }
}

/// What taking the lock found on one target.
enum Taken {
    Ok(Vec<(String, Holder)>),
    Refused(String),
    /// The storage is full: not even the lock fits.
    Full(String),
    Held(Holder),
    Race,
}

/// Takes the lock on this machine, then on every target of `probed` that holds the repository
/// or is empty and reachable (the ones a run may write).
///
/// # Errors
/// [`Error::Locked`] naming the holder and where it holds the lock. A target whose lock cannot
/// be read or written is not an error here: it is left out of the run ([`RepoLock::restrict`]).
pub(crate) fn acquire(
    cfg: &Config,
    command: &str,
    probed: &[Probed],
    observer: &Arc<dyn Observer>,
) -> Result<RepoLock> {
    let path = state::dir(cfg)?.join("lock");
    let holder = Holder::new(command);
    let file = match flock(&path, &holder)? {
        Ok(f) => f,
        Err(who) => {
            return Err(Error::Locked(format!(
                "{} holds the lock of {} on this machine ({})",
                who.map_or_else(|| "another cairn process".to_string(), |h| h.describe()),
                cfg.path.display(),
                path.display()
            )));
        }
    };

    let candidates: Vec<(&str, &Arc<dyn Store>)> = probed
        .iter()
        .filter(|p| matches!(p.probe, Probe::Ready { .. } | Probe::Empty))
        .filter_map(|p| Some((p.cfg.name.as_str(), p.store.as_ref()?)))
        .collect();
    let sightings = std::sync::Mutex::new((Sightings::load(cfg), BTreeMap::new()));
    let mine = Bytes::from(serde_json::to_vec_pretty(&holder).unwrap_or_default());
    let taken = crate::par::each(&candidates, |(name, store)| {
        take(name, store.as_ref(), &holder, &mine, &sightings)
    });
    {
        let (mut old, seen) = sightings.into_inner().unwrap_or_default();
        old.0 = seen;
        old.save(cfg);
    }
    let release_all = || {
        for ((_, store), t) in candidates.iter().zip(&taken) {
            if !matches!(t, Taken::Refused(_) | Taken::Full(_)) && !store.append_only() {
                let _ = store.delete(&holder.file());
            }
        }
    };
    for ((name, store), t) in candidates.iter().zip(&taken) {
        match t {
            Taken::Held(other) => {
                release_all();
                return Err(Error::Locked(format!(
                    "{} holds the lock on target `{name}` ({})",
                    other.describe(),
                    store.location()
                )));
            }
            Taken::Race => {
                release_all();
                return Err(Error::Locked(format!(
                    "another cairn process took the lock on target `{name}` at the same moment; \
                     try again"
                )));
            }
            _ => {}
        }
    }
    let mut targets = Vec::new();
    let mut refused = Vec::new();
    for ((name, store), t) in candidates.iter().zip(taken) {
        match t {
            Taken::Ok(stale) => {
                for (file, h) in stale {
                    observer.warn(&format!(
                        "`{name}`: taking over a stale lock of {}",
                        h.describe()
                    ));
                    let _ = store.delete(&file);
                }
                targets.push(Locked {
                    name: (*name).to_string(),
                    store: (*store).clone(),
                    lost: Arc::default(),
                });
            }
            Taken::Refused(why) => {
                observer.warn(&format!("`{name}` left out: its lock {why}"));
                let probe = Probe::Unreachable(format!("could not be locked: {why}"));
                refused.push(((*name).to_string(), probe));
            }
            Taken::Full(why) => {
                let why = format!(
                    "full: free space there (or raise its quota), then `cairn sync`; its lock \
                     cannot be written: {why}"
                );
                observer.warn(&format!("`{name}` left out: {why}"));
                refused.push(((*name).to_string(), Probe::Full(why)));
            }
            Taken::Held(_) | Taken::Race => {}
        }
    }
    let targets = Arc::new(targets);
    let restic_held = Arc::new(std::sync::Mutex::new(restic::Held::default()));
    let (stop, stopped) = mpsc::channel::<()>();
    let refresher = {
        let targets = targets.clone();
        let mut holder = holder.clone();
        let observer = observer.clone();
        let restic = restic_held.clone();
        thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH) {
                holder.refreshed = jiff::Timestamp::now().as_second();
                holder.seq += 1;
                refresh(&targets, &holder, &observer);
                if holder.seq.is_multiple_of(u64::from(restic::REFRESH_TICKS))
                    && let Ok(mut held) = restic.lock()
                {
                    for (name, why) in held.refresh(&RepoLock::live(&targets), &holder) {
                        // Unrenewed, restic calls it stale after 30 minutes.
                        observer.warn(&format!("`{name}`: cannot renew restic's lock: {why}"));
                    }
                }
            }
        })
    };
    Ok(RepoLock {
        local: file,
        stop: Some(stop),
        refresher: Some(refresher),
        holder,
        targets,
        refused,
        restic: restic_held,
    })
}

/// The holders found under [`LOCK_DIR`], by file.
fn holders(store: &dyn Store) -> std::result::Result<Vec<(String, Holder)>, String> {
    let listed = store
        .list(LOCK_DIR)
        .map_err(|e| format!("cannot be listed: {e}"))?;
    listed
        .into_iter()
        .map(|(rel, _)| {
            let file = format!("{LOCK_DIR}/{rel}");
            let h = store
                .read(&file)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Holder>(&b).map_err(|e| e.to_string()))
                .map_err(|e| format!("file {file} cannot be read ({e}); refusing this target"))?;
            Ok((file, h))
        })
        .collect()
}

fn take(
    name: &str,
    store: &dyn Store,
    me: &Holder,
    mine: &Bytes,
    sightings: &SightingsNow,
) -> Taken {
    // Its lock file could never be removed; and nothing there can be removed or replaced, so
    // a second writer cannot harm what the first one wrote.
    if store.append_only() {
        return Taken::Ok(Vec::new());
    }
    let before = match holders(store) {
        Ok(h) => h,
        Err(why) => return Taken::Refused(why),
    };
    let mut stale = Vec::new();
    for (file, h) in before {
        let verdict = sightings
            .lock()
            .map(|mut g| {
                let (s, seen) = &mut *g;
                s.stale(name, &h, seen)
            })
            .unwrap_or(None);
        match verdict {
            Some(_) => stale.push((file, h)),
            None => return Taken::Held(h),
        }
    }
    if let Err(e) = store.write(&me.file(), vec![mine.clone()]) {
        if e.kind == crate::store::StoreErrorKind::Full {
            return Taken::Full(e.to_string());
        }
        return Taken::Refused(format!("cannot be written: {e}"));
    }
    match store.read(&me.file()) {
        Ok(b) if b == *mine => {}
        Ok(_) => return Taken::Refused("read back other bytes than were written".into()),
        Err(e) => return Taken::Refused(format!("cannot be read back: {e}")),
    }
    match holders(store) {
        Ok(after) => {
            let newcomer = after
                .iter()
                .any(|(f, _)| *f != me.file() && !stale.iter().any(|(s, _)| s == f));
            if newcomer {
                Taken::Race
            } else {
                Taken::Ok(stale)
            }
        }
        Err(why) => Taken::Refused(why),
    }
}

/// Rewrites our lock file on every target, unless another process has taken it over there.
fn refresh(targets: &[Locked], holder: &Holder, observer: &Arc<dyn Observer>) {
    let bytes = Bytes::from(serde_json::to_vec_pretty(holder).unwrap_or_default());
    let file = holder.file();
    crate::par::each(targets, |t| {
        if t.lost.load(Ordering::SeqCst) || t.store.append_only() {
            return;
        }
        let ours = t
            .store
            .read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Holder>(&b).ok())
            .is_some_and(|h| h.id == holder.id);
        if !ours {
            t.lost.store(true, Ordering::SeqCst);
            observer.warn(&format!(
                "`{}`: the repository lock was taken over by another process; no more writes there",
                t.name
            ));
            return;
        }
        if let Err(e) = t.store.write(&file, vec![bytes.clone()]) {
            observer.warn(&format!("`{}`: cannot refresh its lock file: {e}", t.name));
        }
    });
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        // restic's locks first: one whose cairn lock is gone is taken for a leftover.
        if let Ok(held) = self.restic.lock() {
            let all: Vec<(&str, &dyn Store)> = self
                .targets
                .iter()
                .map(|t| (t.name.as_str(), t.store.as_ref()))
                .collect();
            held.release(&all);
        }
        // Our own file only (its name is our id): another process's takeover survives us.
        for t in self.targets.iter().filter(|t| !t.store.append_only()) {
            let _ = t.store.delete(&self.holder.file());
        }
        // Cleared, so the file names no holder once we are gone; the flock goes with the handle.
        let _ = self.local.set_len(0);
    }
}
