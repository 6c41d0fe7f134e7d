//! restic's own lock files, kept beside cairn's.
//!
//! rustic_core writes none, so a stock `restic prune` an admin starts against a target while
//! cairn writes there would delete the packs cairn has just uploaded (they are in no index yet).
//! A writing run therefore puts a shared (non-exclusive) restic lock under `locks/` on each
//! target it writes, encrypted with the repository key exactly as restic does, and refreshes it
//! as restic does; restic then refuses to take its exclusive lock. The other way round, a
//! target where restic holds an exclusive lock is left out of the run.
//!
//! Staleness follows restic only where it cannot be wrong: a lock of a process of this host
//! that no longer runs is stale. A restic lock from another host is never judged by its clock;
//! `restic unlock` is the admin's tool for those.

use std::collections::BTreeMap;

use rustic_core::repofile::MasterKey;
use serde::{Deserialize, Serialize};

use crate::{sealed::Cipher, store::Store};

/// restic's lock folder.
pub const DIR: &str = "locks";
/// restic refreshes its locks every 5 minutes and calls one stale after 30.
pub const REFRESH_TICKS: u32 = 5;

/// A restic lock file's content (restic's `Lock` JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lock {
    /// When taken or last refreshed (RFC 3339).
    pub time: String,
    /// Exclusive (prune, forget, check) or shared (backup, restore).
    pub exclusive: bool,
    /// Host name.
    pub hostname: String,
    /// User name.
    pub username: String,
    /// Process id.
    pub pid: u32,
    /// User id.
    #[serde(default)]
    pub uid: u32,
    /// Group id.
    #[serde(default)]
    pub gid: u32,
    /// The id of the cairn lock holder that wrote it (restic ignores unknown fields): a run
    /// that takes over that holder's stale cairn lock removes this one too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cairn: Option<String>,
}

impl Lock {
    /// A shared lock for this process, tagged with the cairn holder id.
    #[must_use]
    pub fn shared(holder: &super::Holder) -> Self {
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Self {
            time: jiff::Timestamp::now().to_string(),
            exclusive: false,
            hostname: holder.host.clone(),
            username: holder.user.clone(),
            pid: holder.pid,
            uid,
            gid,
            cairn: Some(holder.id.clone()),
        }
    }

    /// `restic lock of pid 42 (user root on host nas, since ...)`.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{} restic lock of pid {} (user {} on host {}, refreshed {})",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            self.pid,
            self.username,
            self.hostname,
            self.time
        )
    }

    /// Whether it certainly belongs to a process that is gone: one of this host that no longer
    /// runs.
    fn dead(&self) -> bool {
        self.hostname == gethostname::gethostname().to_string_lossy()
            && !super::holder::alive(self.pid)
    }
}

/// What a target's `locks/` folder says to a writer.
#[derive(Debug)]
pub enum Survey {
    /// No live exclusive lock. Locks cairn left behind (to remove) and files that are no lock
    /// of this repository (left alone, reported) are named.
    Clear {
        /// Locks of cairn runs that are gone: removed by the caller.
        dead: Vec<(String, Lock)>,
        /// Files that do not authenticate with the repository key.
        foreign: Vec<String>,
    },
    /// restic holds it exclusively.
    Exclusive(Lock),
    /// The folder or a file in it cannot be read, so an exclusive lock cannot be ruled out.
    Unreadable(String),
}

/// Reads every lock under [`DIR`] of a target whose cairn lock `me` holds. A restic lock that
/// another cairn holder wrote is therefore left over from a run that is gone (two cairn
/// holders never share a target), and so is one of a dead process of this host. `except` is a
/// file of our own.
pub fn survey(store: &dyn Store, cipher: &Cipher, me: &str, except: Option<&str>) -> Survey {
    let listed = match store.list(DIR) {
        Ok(l) => l,
        Err(e) => return Survey::Unreadable(format!("{DIR}/ cannot be listed: {e}")),
    };
    let mut dead = Vec::new();
    let mut foreign = Vec::new();
    for (name, _) in listed {
        let file = format!("{DIR}/{name}");
        if except == Some(file.as_str()) {
            continue;
        }
        let bytes = match store.read(&file) {
            Ok(b) => b,
            // Gone between listing and reading: released, so no lock.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Survey::Unreadable(format!("{file} cannot be read: {e}")),
        };
        let Some(lock) = cipher
            .open(&bytes)
            .and_then(|p| serde_json::from_slice::<Lock>(&p).ok())
        else {
            // Only a holder of the key can write a lock restic obeys: this is none.
            foreign.push(file);
            continue;
        };
        let left_over = lock.cairn.as_ref().is_some_and(|id| id != me);
        if left_over || (lock.cairn.is_some() && lock.dead()) {
            dead.push((file, lock));
        } else if lock.exclusive && !lock.dead() {
            return Survey::Exclusive(lock);
        }
    }
    Survey::Clear { dead, foreign }
}

/// What taking restic's lock on a target found there.
#[derive(Debug)]
pub struct Found {
    /// Locks left by cairn runs that are gone, now removed.
    pub cleared: Vec<Lock>,
    /// Files that are no lock of this repository, left alone.
    pub foreign: Vec<String>,
}

/// A target and its storage.
pub type Target<'a> = (&'a str, &'a dyn Store);

/// The restic locks a run holds: once the key is known, our lock file on each target.
#[derive(Default)]
pub struct Held {
    cipher: Option<Cipher>,
    /// Target name, and our current lock file there.
    files: BTreeMap<String, String>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Held {
    /// Whether our lock is on `target`.
    #[must_use]
    pub fn holds(&self, target: &str) -> bool {
        self.files.contains_key(target)
    }

    /// Takes restic's shared lock on each target (concurrently), for `holder` of the cairn lock
    /// there; each result says why not, if not.
    ///
    /// # Errors
    /// The key is unusable.
    pub fn take(
        &mut self,
        master: &MasterKey,
        targets: &[Target<'_>],
        holder: &super::Holder,
    ) -> Result<Vec<Result<Found, String>>, String> {
        if self.cipher.is_none() {
            self.cipher = Some(Cipher::new(master)?);
        }
        let Some(cipher) = self.cipher.as_ref() else {
            return Ok(Vec::new());
        };
        let plain = serde_json::to_vec(&Lock::shared(holder)).unwrap_or_default();
        let taken = crate::par::each(targets, |(_, store)| {
            take(*store, cipher, &plain, &holder.id)
        });
        Ok(targets
            .iter()
            .zip(taken)
            .map(|((name, _), t)| {
                t.map(|(file, found)| {
                    self.files.insert((*name).to_string(), file);
                    found
                })
            })
            .collect())
    }

    /// Replaces our lock on each of `targets` with a fresh one (as restic refreshes: a new
    /// file, then the old one removed). Returns the targets where that failed, and why.
    pub fn refresh(
        &mut self,
        targets: &[Target<'_>],
        holder: &super::Holder,
    ) -> Vec<(String, String)> {
        let Some(cipher) = self.cipher.as_ref() else {
            return Vec::new();
        };
        let plain = serde_json::to_vec(&Lock::shared(holder)).unwrap_or_default();
        let ours: Vec<(&str, &dyn Store, String)> = targets
            .iter()
            .filter_map(|(name, store)| Some((*name, *store, self.files.get(*name)?.clone())))
            .collect();
        let renewed = crate::par::each(&ours, |(_, store, old)| {
            let (name, bytes) = cipher.seal(&plain)?;
            let file = format!("{DIR}/{name}");
            store.write(&file, vec![bytes]).map_err(|e| e.to_string())?;
            let _ = store.delete(old);
            Ok(file)
        });
        let mut failed = Vec::new();
        for ((name, _, _), new) in ours.iter().zip(renewed) {
            match new {
                Ok(file) => {
                    self.files.insert((*name).to_string(), file);
                }
                Err(why) => failed.push(((*name).to_string(), why)),
            }
        }
        failed
    }

    /// Removes our lock from each of `targets`.
    pub fn release(&self, targets: &[Target<'_>]) {
        for (name, store) in targets {
            if let Some(file) = self.files.get(*name) {
                let _ = store.delete(file);
            }
        }
    }
}

/// Takes restic's shared lock on one target: refused while restic holds it exclusively. Our
/// file is written, then the folder read again: restic taking its exclusive lock at the same
/// moment does the same, so whichever looks last sees the other.
fn take(
    store: &dyn Store,
    cipher: &Cipher,
    plain: &[u8],
    me: &str,
) -> Result<(String, Found), String> {
    let held_by = |l: &Lock| {
        format!(
            "restic holds it: {} (if that process is gone, `restic unlock` run there removes it)",
            l.describe()
        )
    };
    let (dead, foreign) = match survey(store, cipher, me, None) {
        Survey::Clear { dead, foreign } => (dead, foreign),
        Survey::Exclusive(l) => return Err(held_by(&l)),
        Survey::Unreadable(why) => return Err(why),
    };
    for (f, _) in &dead {
        let _ = store.delete(f);
    }
    let (name, bytes) = cipher.seal(plain)?;
    let file = format!("{DIR}/{name}");
    store
        .write(&file, vec![bytes])
        .map_err(|e| format!("restic's lock cannot be written: {e}"))?;
    let why = match survey(store, cipher, me, Some(&file)) {
        Survey::Clear { .. } => {
            let cleared = dead.into_iter().map(|(_, l)| l).collect();
            return Ok((file, Found { cleared, foreign }));
        }
        Survey::Exclusive(l) => held_by(&l),
        Survey::Unreadable(why) => why,
    };
    let _ = store.delete(&file);
    Err(why)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::MemStore;

    fn master() -> MasterKey {
        MasterKey::new()
    }

    #[test]
    fn compressed_files_as_restic_writes_them_open() {
        let c = Cipher::new(&master()).unwrap();
        let mut plain = vec![2];
        plain.extend(zstd::encode_all(&b"{\"exclusive\":true}"[..], 3).unwrap());
        let (_, file) = c.seal(&plain).unwrap();
        assert_eq!(c.open(&file).unwrap(), b"{\"exclusive\":true}");
    }

    fn lock(exclusive: bool, host: &str, pid: u32, cairn: Option<&str>) -> Lock {
        Lock {
            time: "2026-11-23T10:00:00Z".into(),
            exclusive,
            hostname: host.into(),
            username: "admin".into(),
            pid,
            uid: 0,
            gid: 0,
            cairn: cairn.map(Into::into),
        }
    }

    fn put(store: &MemStore, c: &Cipher, l: &Lock) -> String {
        let (name, bytes) = c.seal(&serde_json::to_vec(l).unwrap()).unwrap();
        let file = format!("{DIR}/{name}");
        store.write(&file, vec![bytes]).unwrap();
        file
    }

    #[test]
    fn a_live_exclusive_lock_refuses_and_leftovers_are_told_apart() {
        let here = gethostname::gethostname().to_string_lossy().into_owned();
        let c = Cipher::new(&master()).unwrap();
        let store = MemStore::new();
        // Shared locks of anyone, and junk that does not decrypt, never refuse a writer.
        put(&store, &c, &lock(false, "elsewhere", 7, None));
        let ours = put(
            &store,
            &c,
            &lock(false, &here, std::process::id(), Some("me")),
        );
        store
            .write(
                &format!("{DIR}/{}", "0".repeat(64)),
                vec![Bytes::from_static(b"junk")],
            )
            .unwrap();
        // A dead process's exclusive lock of this host no longer holds, and is restic's.
        put(&store, &c, &lock(true, &here, u32::MAX, None));
        let other_run = put(
            &store,
            &c,
            &lock(false, "elsewhere", 9, Some("an earlier run")),
        );
        match survey(&store, &c, "me", Some(&ours)) {
            Survey::Clear { dead, foreign } => {
                assert_eq!(
                    dead.iter().map(|(f, _)| f).collect::<Vec<_>>(),
                    [&other_run]
                );
                assert_eq!(foreign.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        // An exclusive lock of another host is live whatever its clock says.
        put(&store, &c, &lock(true, "elsewhere", 11, None));
        assert!(matches!(
            survey(&store, &c, "me", Some(&ours)),
            Survey::Exclusive(l) if l.pid == 11
        ));
    }
}
