//! The fan-out backend: one rustic_core backend over every usable target.
//!
//! rustic_core encrypts and compresses once; each resulting repository file is handed to every
//! target *concurrently*, so a slow target does not serialise the others. A target that fails a
//! write is dropped for the rest of the run and receives nothing more: since rustic_core writes
//! packs, then index files, then the snapshot, a dropped target can never get a snapshot whose
//! data it lacks. The run fails only when no target is left. Reads go to the targets in order and
//! fall back to the next one on any error. Packs are uploaded without rustic_core waiting for
//! them, a few at a time ([`uploads`]); everything that depends on them waits.

use std::sync::{Arc, Mutex, atomic::Ordering};

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use crate::{
    layout::{file_path, ids_of, repository_dirs},
    progress::Observer,
    store::{Store, StoreError, StoreErrorKind, StoreResult},
    verified::packs::{VerifiedPacks, first_intact},
};

pub mod member;
mod uploads;

use member::first_sound;
pub use member::{Dropped, Member};
use uploads::InFlight;

/// Listings by file type: ids with sizes.
type Listings = Vec<(FileType, Vec<(Id, u32)>)>;

/// rustic_core's backend over several targets.
#[derive(Debug, Clone)]
pub struct Fanout {
    members: Arc<Vec<Arc<Member>>>,
    observer: Arc<dyn Observer>,
    /// Reads only files whose hash matches their name, falling back to the next target.
    verified: Option<Arc<VerifiedPacks>>,
    /// Listings decided beforehand (the proven union of the targets' files), by file type.
    listings: Arc<Mutex<Listings>>,
    /// Files a deletion record deletes: never listed, whichever target still holds them.
    hidden: Arc<Mutex<std::collections::BTreeSet<String>>>,
    /// While set, removals are collected here instead of done: a deletion is recorded before
    /// anything is removed ([`crate::deletion`]).
    deferred: Arc<Mutex<Option<Vec<String>>>>,
    /// Files already read and checked by cairn, handed to rustic_core's first read of them
    /// instead of reading them again.
    preread: Arc<Mutex<std::collections::BTreeMap<String, Bytes>>>,
    /// Pack uploads started and not yet stored (or failed).
    in_flight: Arc<InFlight>,
}

/// Packs uploaded at once when not told otherwise: what keeps a remote target's per-file
/// round trips and its server's sync off the chunker's path (each data pack, about 16 MiB, is
/// held in memory until every target has it).
pub const UPLOADS_IN_FLIGHT: usize = 2;

impl Fanout {
    /// A fan-out over `members`, read in the given order.
    #[must_use]
    pub fn new(members: Vec<Arc<Member>>, observer: Arc<dyn Observer>) -> Self {
        Self {
            members: Arc::new(members),
            observer,
            verified: None,
            listings: Arc::default(),
            hidden: Arc::default(),
            deferred: Arc::default(),
            preread: Arc::default(),
            in_flight: Arc::new(InFlight::new(UPLOADS_IN_FLIGHT)),
        }
    }

    /// This fan-out, with at most `packs` pack uploads in flight (at least one).
    #[must_use]
    pub fn with_uploads_in_flight(mut self, packs: usize) -> Self {
        self.in_flight = Arc::new(InFlight::new(packs));
        self
    }

    /// Waits until every pack upload started has been stored or has failed (and dropped its
    /// target).
    pub fn settle(&self) {
        self.in_flight.settle();
    }

    /// This fan-out, reading every file only from a target whose copy hashes to its name.
    #[must_use]
    pub(crate) fn verifying(mut self) -> Self {
        self.verified = Some(Arc::default());
        self
    }

    /// Answers listings of `tpe` with `ids` from now on.
    pub(crate) fn set_listing(&self, tpe: FileType, ids: Vec<(Id, u32)>) {
        if let Ok(mut l) = self.listings.lock() {
            l.retain(|(t, _)| *t != tpe);
            l.push((tpe, ids));
        }
    }

    /// Hands `bytes` to rustic_core's first read of `path` (cairn read and checked them).
    pub(crate) fn preread(&self, path: String, bytes: Bytes) {
        if let Ok(mut p) = self.preread.lock() {
            p.insert(path, bytes);
        }
    }

    /// Never lists these repository paths again (they are deleted; see [`crate::deletion`]).
    pub(crate) fn hide(&self, paths: impl IntoIterator<Item = String>) {
        if let Ok(mut h) = self.hidden.lock() {
            h.extend(paths);
        }
    }

    /// From now on, removals are collected instead of done, until [`Self::take_removals`].
    pub(crate) fn defer_removals(&self) {
        if let Ok(mut d) = self.deferred.lock() {
            d.get_or_insert_with(Vec::new);
        }
    }

    /// The removals collected since [`Self::defer_removals`], in the order asked for; removals
    /// are done again from now on.
    pub(crate) fn take_removals(&self) -> Vec<String> {
        self.deferred
            .lock()
            .ok()
            .and_then(|mut d| d.take())
            .unwrap_or_default()
    }

    pub(crate) fn fell_back<'a>(&'a self, what: &'a str) -> impl Fn(&str, &[String]) + 'a {
        move |used: &str, errors: &[String]| {
            self.observer.warn(&format!(
                "{what}: read from `{used}` after: {}",
                errors.join("; ")
            ));
        }
    }

    fn read_verified(&self, path: &str) -> RusticResult<Bytes> {
        let what = format!("reading {path}");
        first_intact(&self.active(), path, &self.fell_back(&what))
            .map_err(|errors| self.none_gave(&what, &errors))
    }

    /// Where warnings of this run go.
    #[must_use]
    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.observer
    }

    /// All members, failed ones included.
    #[must_use]
    pub fn members(&self) -> &[Arc<Member>] {
        &self.members
    }

    pub(crate) fn active(&self) -> Vec<&Arc<Member>> {
        self.members.iter().filter(|m| m.is_active()).collect()
    }

    pub(crate) fn drop_member(&self, m: &Member, what: &str, error: StoreError) {
        let why = Dropped::Store {
            what: what.to_string(),
            error,
        };
        self.observer.target_failed(&m.name, &why.to_string());
        m.fail(why);
    }

    /// Runs `f` on each active member, concurrently, once every upload in flight has landed; a
    /// member whose call fails is dropped. Fails only when no member succeeded.
    fn on_all(
        &self,
        what: &str,
        f: impl Fn(&dyn Store) -> StoreResult<u64> + Sync,
    ) -> RusticResult<()> {
        self.settle();
        self.on_active(what, f)
    }

    /// [`Self::on_all`] without waiting for uploads in flight.
    fn on_active(
        &self,
        what: &str,
        f: impl Fn(&dyn Store) -> StoreResult<u64> + Sync,
    ) -> RusticResult<()> {
        let active = self.active();
        if active.is_empty() {
            return Err(no_target(what, &self.members));
        }
        let results = crate::par::each_caught(&active, |m| f(m.store.as_ref()));
        let mut ok = 0;
        for (m, r) in active.iter().zip(results) {
            let r = r.unwrap_or_else(|why| {
                Err(StoreError::new(
                    StoreErrorKind::Permanent,
                    format!("storage client {why}"),
                ))
            });
            match r {
                Ok(bytes) => {
                    ok += 1;
                    m.bytes_written.fetch_add(bytes, Ordering::Relaxed);
                    m.files_written
                        .fetch_add(u64::from(bytes > 0), Ordering::Relaxed);
                }
                Err(e) => self.drop_member(m, what, e),
            }
        }
        if ok == 0 {
            return Err(no_target(what, &self.members));
        }
        Ok(())
    }

    /// Tries the active members in order until one answers.
    fn first_ok<T>(&self, what: &str, f: impl Fn(&dyn Store) -> StoreResult<T>) -> RusticResult<T> {
        first_sound(&self.active(), &self.fell_back(what), |m| {
            f(m.store.as_ref()).map_err(|e| e.to_string())
        })
        .map_err(|errors| self.none_gave(what, &errors))
    }

    /// The error for a read no member answered: none was left to try, or each failed.
    pub(crate) fn none_gave(&self, what: &str, errors: &[String]) -> Box<RusticError> {
        if errors.is_empty() {
            no_target(what, &self.members)
        } else {
            every_target_failed(what, errors)
        }
    }
}

fn every_target_failed(what: &str, errors: &[String]) -> Box<RusticError> {
    // A member's error names the target and the file already.
    let message = match errors {
        [one] => one.clone(),
        _ => format!("{what} failed on every target: {}", errors.join("; ")),
    };
    RusticError::new(ErrorKind::Backend, message)
}

fn no_target(what: &str, members: &[Arc<Member>]) -> Box<RusticError> {
    let why: Vec<String> = members
        .iter()
        .map(|m| {
            format!(
                "`{}`: {}",
                m.name,
                m.failure()
                    .map_or_else(|| "no error".into(), |d| d.to_string())
            )
        })
        .collect();
    RusticError::new(
        ErrorKind::Backend,
        format!("{what}: no target is left to use ({})", why.join("; ")),
    )
}

/// Lists one file type on one store.
pub(crate) fn list_type(store: &dyn Store, tpe: FileType) -> StoreResult<Vec<(Id, u32)>> {
    let listed = if tpe == FileType::Config {
        store
            .stat("config")?
            .map(|s| vec![("config".to_string(), s)])
            .unwrap_or_default()
    } else {
        store.list(tpe.dirname())?
    };
    Ok(ids_of(tpe, listed))
}

impl ReadBackend for Fanout {
    fn location(&self) -> String {
        let names: Vec<_> = self.members.iter().map(|m| m.name.as_str()).collect();
        format!("cairn:{}", names.join("+"))
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.settle();
        let decided = self.listings.lock().ok().and_then(|l| {
            l.iter()
                .find(|(t, _)| *t == tpe)
                .map(|(_, ids)| ids.clone())
        });
        let mut ids = match decided {
            Some(ids) => ids,
            None => self.first_ok(&format!("listing {}", tpe.dirname()), |s| list_type(s, tpe))?,
        };
        if let Ok(hidden) = self.hidden.lock()
            && !hidden.is_empty()
        {
            ids.retain(|(id, _)| !hidden.contains(&file_path(tpe, id)));
        }
        Ok(ids)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = file_path(tpe, id);
        self.in_flight.wait_for(&path);
        if let Some(bytes) = self.preread.lock().ok().and_then(|mut p| p.remove(&path)) {
            return Ok(bytes);
        }
        if self.verified.is_some() && tpe != FileType::Config {
            return self.read_verified(&path);
        }
        self.first_ok(&format!("reading {path}"), |s| s.read(&path))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = file_path(tpe, id);
        self.in_flight.wait_for(&path);
        if let Some(packs) = &self.verified
            && tpe != FileType::Config
        {
            let what = format!("reading {path}");
            return packs
                .range(
                    &self.active(),
                    id,
                    &path,
                    u64::from(offset),
                    u64::from(length),
                    self.fell_back(&what),
                )
                .map_err(|errors| every_target_failed(&what, &errors));
        }
        self.first_ok(&format!("reading {path}"), |s| {
            s.read_range(&path, u64::from(offset), u64::from(length))
        })
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        file_path(tpe, id)
    }
}

impl WriteBackend for Fanout {
    fn create(&self) -> RusticResult<()> {
        let dirs = repository_dirs();
        self.on_all("creating folders", |s| s.create_dirs(&dirs).map(|()| 0))
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        buf: BytesList,
    ) -> RusticResult<()> {
        let path = file_path(tpe, id);
        let parts = buf.into_vec();
        let size: u64 = parts.iter().map(|b| b.len() as u64).sum();
        let what = format!("writing {path}");
        // Bytes clones share one allocation: every target writes the same buffers.
        let write = move |s: &dyn Store| s.write(&path, parts.clone()).map(|()| size);
        if tpe != FileType::Pack {
            return self.on_all(&what, write);
        }
        // Fail now rather than take a pack no target can store. A failure in flight drops its
        // targets: the next file written fails if none is left, and the run's outcome names them.
        if self.active().is_empty() {
            return Err(no_target(&what, &self.members));
        }
        let landing = self.in_flight.start(&file_path(tpe, id));
        let fan = self.clone();
        std::thread::Builder::new()
            .name("cairn-upload".into())
            .spawn(move || {
                let _landed = landing;
                // Its error is each failed target's, recorded when it is dropped.
                let _ = fan.on_active(&what, write);
            })
            .map(drop)
            .map_err(|e| {
                RusticError::new(
                    ErrorKind::Backend,
                    format!("cannot start an upload thread: {e}"),
                )
            })
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = file_path(tpe, id);
        if let Ok(mut d) = self.deferred.lock()
            && let Some(d) = d.as_mut()
        {
            d.push(path);
            return Ok(());
        }
        // An append-only target keeps it (left to its owner).
        self.on_all(&format!("removing {path}"), |s| {
            if s.append_only() {
                return Ok(0);
            }
            s.delete(&path).map(|()| 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Failing, StoreError, StoreErrorKind, local_for_tests as local};

    fn on_fire(store: Box<dyn Store>) -> Box<dyn Store> {
        let fire = StoreError::new(StoreErrorKind::Transient, "disk on fire");
        Box::new(Failing::new(store, "write", fire))
    }

    fn put(f: &Fanout, tpe: FileType, id: &Id, bytes: &'static [u8]) -> RusticResult<()> {
        f.write_bytes(tpe, id, false, Bytes::from_static(bytes).into())
    }

    fn fanout(stores: Vec<Box<dyn Store>>) -> Fanout {
        let members = stores
            .into_iter()
            .enumerate()
            .map(|(i, s)| Arc::new(Member::new(format!("t{i}"), true, Arc::from(s))))
            .collect();
        Fanout::new(members, Arc::new(crate::progress::Silent))
    }

    #[test]
    fn a_failing_target_is_dropped_and_gets_nothing_more() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let f = fanout(vec![on_fire(local(a.path())), local(b.path())]);
        let (id, id2) = (Id::random(), Id::random());
        put(&f, FileType::Pack, &id, b"pack").unwrap();
        // The pack's upload is in flight; the snapshot waits for it, so it goes only to the
        // targets still in the run.
        put(&f, FileType::Snapshot, &id2, b"snap").unwrap();
        let dropped = f.members()[0].failure().unwrap();
        assert!(
            matches!(&dropped, Dropped::Store { error, .. } if error.kind == StoreErrorKind::Transient),
            "{dropped}"
        );
        assert!(dropped.to_string().contains("disk on fire"));
        assert_eq!(f.members()[1].bytes_written(), 8);
        assert!(!a.path().join(file_path(FileType::Snapshot, &id2)).exists());
        assert!(b.path().join(file_path(FileType::Snapshot, &id2)).exists());
        // Reads skip the dropped target and come from the good one.
        assert_eq!(&f.read_full(FileType::Pack, &id).unwrap()[..], b"pack");
        assert_eq!(f.list_with_size(FileType::Pack).unwrap(), vec![(id, 4)]);
    }

    /// A store whose pack writes wait for `gate`, then fail; any other write opens the gate
    /// first and goes through.
    #[derive(Debug)]
    struct PackFailsLate {
        inner: Box<dyn Store>,
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    }

    impl PackFailsLate {
        fn open(gate: &(Mutex<bool>, std::sync::Condvar)) {
            *gate.0.lock().unwrap() = true;
            gate.1.notify_all();
        }
    }

    impl Store for PackFailsLate {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn stat(&self, p: &str) -> StoreResult<Option<u64>> {
            self.inner.stat(p)
        }
        fn read(&self, p: &str) -> StoreResult<Bytes> {
            self.inner.read(p)
        }
        fn read_range(&self, p: &str, o: u64, l: u64) -> StoreResult<Bytes> {
            self.inner.read_range(p, o, l)
        }
        fn write(&self, p: &str, parts: Vec<Bytes>) -> StoreResult<()> {
            if !p.starts_with("data/") {
                Self::open(&self.gate);
                return self.inner.write(p, parts);
            }
            let (open, opened) = &*self.gate;
            drop(opened.wait_while(open.lock().unwrap(), |o| !*o).unwrap());
            Err(StoreError::new(StoreErrorKind::Permanent, "pack refused"))
        }
        fn list(&self, d: &str) -> StoreResult<Vec<(String, u64)>> {
            self.inner.list(d)
        }
        fn delete(&self, p: &str) -> StoreResult<()> {
            self.inner.delete(p)
        }
        fn create_dirs(&self, dirs: &[String]) -> StoreResult<()> {
            self.inner.create_dirs(dirs)
        }
    }

    #[test]
    fn an_index_waits_for_the_packs_in_flight_and_skips_a_target_that_failed_one() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let late = PackFailsLate {
            inner: local(a.path()),
            gate: gate.clone(),
        };
        let f = fanout(vec![Box::new(late), local(b.path())]);
        let (pack, index) = (Id::random(), Id::random());
        put(&f, FileType::Pack, &pack, b"pack").unwrap();
        let writer = {
            let f = f.clone();
            std::thread::spawn(move || put(&f, FileType::Index, &index, b"idx"))
        };
        // Either the index reached a store while the pack was still on its way (the gate is
        // open: the fault this test is for), or it is held back until the pack lands.
        while !*gate.0.lock().unwrap() && f.in_flight.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        PackFailsLate::open(&gate);
        writer.join().unwrap().unwrap();
        assert!(
            !a.path().join(file_path(FileType::Index, &index)).exists(),
            "an index reached a target before the pack it names was stored there"
        );
        assert!(b.path().join(file_path(FileType::Index, &index)).exists());
        assert!(
            f.members()[0]
                .failure()
                .unwrap()
                .to_string()
                .contains("pack refused")
        );
    }

    #[test]
    fn a_pack_no_target_stored_fails_the_index_written_after_it() {
        let a = tempfile::tempdir().unwrap();
        let f = fanout(vec![on_fire(local(a.path()))]);
        let pack = Id::random();
        // Accepted while in flight: rustic_core does not wait for it.
        put(&f, FileType::Pack, &pack, b"pack").unwrap();
        let e = put(&f, FileType::Index, &Id::random(), b"index")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no target is left") && e.contains("disk on fire"),
            "{e}"
        );
        assert!(!a.path().join(file_path(FileType::Pack, &pack)).exists());
    }

    #[test]
    fn the_run_fails_when_no_target_is_left() {
        let a = tempfile::tempdir().unwrap();
        let f = fanout(vec![on_fire(local(a.path()))]);
        let e = put(&f, FileType::Index, &Id::random(), b"x").unwrap_err();
        assert!(e.to_string().contains("disk on fire"), "{e}");
    }

    #[test]
    fn writes_are_identical_everywhere_and_reads_fall_back() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let f = fanout(vec![local(a.path()), local(b.path())]);
        let id = Id::random();
        let parts = BytesList::from(vec![1u8, 2, 3]);
        f.write_bytes(FileType::Index, &id, false, parts).unwrap();
        let path = file_path(FileType::Index, &id);
        assert_eq!(std::fs::read(a.path().join(&path)).unwrap(), vec![1, 2, 3]);
        assert_eq!(std::fs::read(b.path().join(&path)).unwrap(), vec![1, 2, 3]);
        // The first target loses the file: the read comes from the second, and no target is dropped.
        std::fs::remove_file(a.path().join(&path)).unwrap();
        assert_eq!(
            &f.read_partial(FileType::Index, &id, false, 1, 2).unwrap()[..],
            &[2, 3]
        );
        assert!(f.members().iter().all(|m| m.failure().is_none()));
    }
}
