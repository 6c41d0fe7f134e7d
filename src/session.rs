//! One command's view of the targets: probe each (concurrently), decide which take part, and
//! open the repository through the fan-out backend.
//!
//! The consistency gate: every target holding a repository must hold the *same* one (identical
//! `config` file). For a write, only targets holding every index file and key the most complete
//! target holds take part; a target that missed earlier runs is *lagging* and is not written,
//! because a new snapshot there would reference packs it does not have.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use bytes::Bytes;
use rustic_core::{
    Credentials, FileType, Id, OpenStatus, ProgressBars, Repository, RepositoryBackends,
    RepositoryOptions,
};

use crate::{
    config::{Config, TargetConfig},
    error::{Error, Result},
    fanout::{Fanout, Member, list_type},
    progress::Observer,
    proof::Proof,
    report::{TargetOutcome, TargetState},
    secret::{Secret, SecretRef},
    store::{self, Store, StoreError, StoreErrorKind},
};

/// What probing a target found.
#[derive(Debug, Clone)]
pub enum Probe {
    /// A removable disk that is not mounted.
    Offline(String),
    /// Could not be opened, asked or listed.
    Unreachable(String),
    /// Its folder, bucket or container is not there (a missing mount, a typo): not empty.
    Absent(String),
    /// Reachable, no repository.
    Empty,
    /// Holds a repository.
    Ready {
        /// The raw (encrypted) `config` file: equal bytes mean the same repository.
        config: Bytes,
        /// Key file ids.
        keys: BTreeSet<Id>,
        /// Index file ids.
        index: BTreeSet<Id>,
        /// Snapshot file ids.
        snapshots: BTreeSet<Id>,
    },
}

/// A configured target and what probing it found.
#[derive(Debug, Clone)]
pub struct Probed {
    /// Its configuration.
    pub cfg: TargetConfig,
    /// Its storage, when it could be opened.
    pub store: Option<Arc<dyn Store>>,
    /// What was found.
    pub probe: Probe,
}

impl Probe {
    /// What a storage error says of the target: the one place an error's class becomes
    /// availability.
    #[must_use]
    pub fn of_error(e: &StoreError) -> Self {
        let m = e.message.clone();
        match e.kind {
            StoreErrorKind::Offline => Self::Offline(m),
            StoreErrorKind::Absent => Self::Absent(m),
            _ => Self::Unreachable(m),
        }
    }
}

impl Probed {
    /// Why the target cannot be used, as a report state and its detail; `None` when it holds
    /// the repository. Every command reads availability from here.
    #[must_use]
    pub fn unusable(&self) -> Option<(TargetState, String)> {
        match &self.probe {
            Probe::Offline(m) => Some((TargetState::Offline, m.clone())),
            Probe::Unreachable(m) | Probe::Absent(m) => Some((TargetState::Unreachable, m.clone())),
            Probe::Empty => Some((
                TargetState::NotInitialised,
                "holds no repository (run `cairn init`)".into(),
            )),
            Probe::Ready { .. } => None,
        }
    }

    /// Where the target is (no secrets).
    #[must_use]
    pub fn location(&self) -> String {
        self.store
            .as_ref()
            .map_or_else(|| self.cfg.kind.name().to_string(), |s| s.location())
    }
}

fn probe_one(cfg: &TargetConfig) -> Probed {
    let store: Arc<dyn Store> = match store::open(cfg) {
        Ok(s) => Arc::from(s),
        Err(e) => {
            return Probed {
                cfg: cfg.clone(),
                store: None,
                probe: Probe::of_error(&e),
            };
        }
    };
    probe_store(cfg, store)
}

fn probe_store(cfg: &TargetConfig, store: Arc<dyn Store>) -> Probed {
    let probe = match store.read("config") {
        Ok(config) => ready(store.as_ref(), config),
        // Make sure "empty" is true and not an unreadable storage.
        Err(e) if e.is_not_found() => match store.list("keys") {
            Ok(_) => Probe::Empty,
            Err(e) => Probe::of_error(&e),
        },
        Err(e) => Probe::of_error(&e),
    };
    Probed {
        cfg: cfg.clone(),
        store: Some(store),
        probe,
    }
}

fn ready(store: &dyn Store, config: Bytes) -> Probe {
    let ids = |tpe| {
        list_type(store, tpe).map(|v| v.into_iter().map(|(id, _)| id).collect::<BTreeSet<Id>>())
    };
    match (
        ids(FileType::Key),
        ids(FileType::Index),
        ids(FileType::Snapshot),
    ) {
        (Ok(keys), Ok(index), Ok(snapshots)) => Probe::Ready {
            config,
            keys,
            index,
            snapshots,
        },
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Probe::of_error(&e),
    }
}

/// Probes the targets concurrently (all, or only `only`), in configuration order.
///
/// # Errors
/// `only` names no configured target.
pub fn probe_all(cfg: &Config, only: Option<&str>) -> Result<Vec<Probed>> {
    let chosen: Vec<&TargetConfig> = match only {
        Some(name) => vec![cfg.target(name)?],
        None => cfg.targets.iter().collect(),
    };
    Ok(crate::par::each_caught(&chosen, |t| probe_one(t))
        .into_iter()
        .zip(&chosen)
        .map(|(r, t)| {
            r.unwrap_or_else(|why| Probed {
                cfg: (*t).clone(),
                store: None,
                probe: Probe::Unreachable(format!("probe {why}")),
            })
        })
        .collect())
}

/// The gate for commands that work on the targets' files directly (sync, check): some
/// reachable target holds the repository, and every one that does holds the same one.
///
/// # Errors
/// [`Error::NoRepository`] (the reachable targets are empty), [`Error::NoTargetUsable`],
/// [`Error::ForeignRepository`].
pub fn one_repository(probed: &[Probed]) -> Result<()> {
    let mut ready = probed.iter().filter_map(|p| match &p.probe {
        Probe::Ready { config, .. } => Some((p, config)),
        _ => None,
    });
    let Some((first, config)) = ready.next() else {
        return Err(if probed.iter().any(|p| matches!(p.probe, Probe::Empty)) {
            Error::NoRepository
        } else {
            Error::NoTargetUsable("no target holding the repository is reachable".into())
        });
    };
    match ready.find(|(_, c)| *c != config) {
        Some((other, _)) => Err(Error::ForeignRepository {
            target: other.cfg.name.clone(),
            message: format!(
                "its `config` differs from the one on `{}`; refusing to touch either",
                first.cfg.name
            ),
        }),
        None => Ok(()),
    }
}

/// What the session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reading: every target holding the repository, most complete first.
    Read,
    /// Writing: only targets level with the most complete one.
    Write,
}

/// The targets of one command and the fan-out over those taking part.
#[derive(Debug)]
pub struct Session {
    /// Every configured target (or the one chosen with `--from`), probed.
    pub probed: Vec<Probed>,
    /// Indices into `probed` of the members, in fan-out order.
    members: Vec<usize>,
    /// Why each non-member stays out.
    left_out: Vec<(usize, TargetState, String)>,
    /// Names of configured targets not probed (`--from` chose another).
    not_used: Vec<TargetConfig>,
    mode: Mode,
    /// The fan-out backend over the members.
    pub fanout: Fanout,
}

impl Session {
    /// Probes the targets (all, or only `from`) and applies the consistency gate, for reading.
    /// A session that writes comes only from [`crate::lock::LockedTargets::writer`].
    ///
    /// # Errors
    /// No target holds the repository ([`Error::NoRepository`] or, when some could not be
    /// reached, [`Error::NoTargetUsable`]); two targets hold different repositories.
    pub fn open(cfg: &Config, from: Option<&str>, observer: Arc<dyn Observer>) -> Result<Self> {
        let probed = probe_all(cfg, from)?;
        let not_used = cfg
            .targets
            .iter()
            .filter(|t| !probed.iter().any(|p| p.cfg.name == t.name))
            .cloned()
            .collect();
        Self::from_probed(probed, not_used, Mode::Read, &[], observer)
    }

    /// [`Session::open`] over targets already probed. `untrusted` names targets that hold files
    /// which could not be proven nor moved aside: they take no part.
    pub(crate) fn from_probed(
        probed: Vec<Probed>,
        not_used: Vec<TargetConfig>,
        mode: Mode,
        untrusted: &[(String, String)],
        observer: Arc<dyn Observer>,
    ) -> Result<Self> {
        let ready: Vec<usize> = (0..probed.len())
            .filter(|&i| matches!(probed[i].probe, Probe::Ready { .. }))
            .collect();
        let mut left_out: Vec<(usize, TargetState, String)> = probed
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.unusable().map(|(state, why)| (i, state, why)))
            .collect();
        // What a level target holds: every key and index file any trusted target holds. Not
        // "the target with the most files": a count is what an attacker with one target inflates.
        let trusted = |i: &usize| !untrusted.iter().any(|(n, _)| *n == probed[*i].cfg.name);
        let (mut all_keys, mut all_index) = (BTreeSet::new(), BTreeSet::new());
        for &i in ready.iter().filter(|i| trusted(i)) {
            if let Probe::Ready { keys, index, .. } = &probed[i].probe {
                all_keys.extend(keys.iter().copied());
                all_index.extend(index.iter().copied());
            }
        }
        if ready.is_empty() {
            let reasons: Vec<String> = left_out
                .iter()
                .filter(|(_, s, _)| *s != TargetState::NotInitialised)
                .map(|(i, _, m)| format!("`{}`: {m}", probed[*i].cfg.name))
                .collect();
            let any_empty = left_out
                .iter()
                .any(|(_, s, _)| *s == TargetState::NotInitialised);
            return Err(if any_empty {
                Error::NoRepository
            } else {
                Error::NoTargetUsable(reasons.join("; "))
            });
        }
        let first = ready[0];
        let Probe::Ready {
            config: ref_config, ..
        } = &probed[first].probe
        else {
            unreachable!("ready targets are ready")
        };
        let mut members = Vec::new();
        for &i in &ready {
            let Probe::Ready {
                config,
                keys,
                index,
                ..
            } = &probed[i].probe
            else {
                continue;
            };
            if config != ref_config {
                return Err(Error::ForeignRepository {
                    target: probed[i].cfg.name.clone(),
                    message: format!(
                        "its `config` differs from the one on `{}`; refusing to touch either",
                        probed[first].cfg.name
                    ),
                });
            }
            if let Some((_, why)) = untrusted.iter().find(|(n, _)| *n == probed[i].cfg.name) {
                left_out.push((i, TargetState::Failed, why.clone()));
                continue;
            }
            let missing_index = all_index.difference(index).count();
            let missing_keys = all_keys.difference(keys).count();
            if mode == Mode::Write && (missing_index > 0 || missing_keys > 0) {
                left_out.push((
                    i,
                    TargetState::Lagging,
                    format!(
                        "lacks {missing_index} index file(s) and {missing_keys} key(s) that other \
                         targets hold; not written until it is brought level"
                    ),
                ));
            } else {
                members.push(i);
            }
        }
        if members.is_empty() {
            let reasons: Vec<String> = left_out
                .iter()
                .map(|(i, _, m)| format!("`{}`: {m}", probed[*i].cfg.name))
                .collect();
            return Err(Error::NoTargetUsable(reasons.join("; ")));
        }
        let fanout = Fanout::new(
            members
                .iter()
                .map(|&i| {
                    let p = &probed[i];
                    Arc::new(Member::new(
                        p.cfg.name.clone(),
                        p.cfg.required,
                        p.store
                            .clone()
                            .unwrap_or_else(|| unreachable!("ready targets have a store")),
                    ))
                })
                .collect(),
            observer,
        );
        Ok(Self {
            probed,
            members,
            left_out,
            not_used,
            mode,
            fanout,
        })
    }

    /// Ties every member to the lock held on its target, so a member whose lock is taken over
    /// stops being written.
    pub(crate) fn watch_lock(&self, lock: &crate::lock::RepoLock) {
        for m in self.fanout.members() {
            if let Some(flag) = lock.lost_flag(&m.name) {
                m.watch_lock(flag);
            }
        }
    }

    /// Opens the repository through the fan-out.
    ///
    /// # Errors
    /// [`Error::WrongPassword`], or the repository could not be read.
    pub fn repository<P: ProgressBars>(
        &self,
        password: &Secret,
        pb: P,
    ) -> Result<Repository<OpenStatus>> {
        if self.mode == Mode::Write {
            return open_repository(Arc::new(self.fanout.clone()), password, pb);
        }
        // A reader sees the newest snapshot of any target and every index it needs, from
        // whichever target holds them, but never a file an honest cairn could not have written;
        // each file it reads must hash to its name, else the next target's copy is read.
        let proof = Proof::unlock(&self.probed, password)?;
        let fanout = self.fanout.clone().verifying();
        for tpe in [FileType::Index, FileType::Snapshot] {
            fanout.set_listing(tpe, self.proven_union(tpe, &proof));
        }
        open_repository_with(Arc::new(fanout), &proof.credentials(), pb)
    }

    /// The files of type `tpe` any member holds: those all members hold, and the others once
    /// proven (a file only one target holds may have been planted there).
    fn proven_union(&self, tpe: FileType, proof: &Proof) -> Vec<(Id, u32)> {
        let members = self.fanout.members();
        let mut held: BTreeMap<Id, (u32, Vec<usize>)> = BTreeMap::new();
        let mut listed = 0;
        for (i, m) in members.iter().enumerate() {
            match list_type(m.store().as_ref(), tpe) {
                Ok(ids) => {
                    listed += 1;
                    for (id, size) in ids {
                        held.entry(id).or_insert((size, Vec::new())).1.push(i);
                    }
                }
                Err(e) => self.fanout.observer().warn(&format!(
                    "`{}`: cannot list {}: {e}",
                    m.name,
                    tpe.dirname()
                )),
            }
        }
        held.into_iter()
            .filter(|(id, (_, holders))| {
                if holders.len() == listed {
                    return true;
                }
                let path = crate::layout::file_path(tpe, id);
                let m = &members[holders[0]];
                let why = match m.store().read(&path) {
                    Ok(bytes) => match proof.check(&path, &bytes) {
                        Ok(()) => return true,
                        Err(why) => why,
                    },
                    Err(e) => e.to_string(),
                };
                self.fanout.observer().warn(&format!(
                    "`{}`: {path} left out ({why}); `cairn check` tells more",
                    m.name
                ));
                false
            })
            .map(|(id, (size, _))| (id, size))
            .collect()
    }

    /// Opens the repository through the fan-out with the key a [`crate::proof::Proof`] holds.
    ///
    /// # Errors
    /// The repository could not be read.
    pub fn repository_with<P: ProgressBars>(
        &self,
        credentials: &Credentials,
        pb: P,
    ) -> Result<Repository<OpenStatus>> {
        open_repository_with(Arc::new(self.fanout.clone()), credentials, pb)
    }

    /// What became of every configured target, in configuration order.
    #[must_use]
    pub fn outcomes(&self) -> Vec<TargetOutcome> {
        let mut out: Vec<(usize, TargetOutcome)> = Vec::new();
        for (pos, &i) in self.members.iter().enumerate() {
            let p = &self.probed[i];
            let m = &self.fanout.members()[pos];
            let failure = m.failure().map(|d| d.to_string());
            let state = match (&failure, self.mode) {
                (Some(_), _) => TargetState::Failed,
                (None, Mode::Write) => TargetState::Complete,
                (None, Mode::Read) => TargetState::Available,
            };
            out.push((
                i,
                outcome(p, state, failure, m.bytes_written(), m.files_written()),
            ));
        }
        for (i, state, msg) in &self.left_out {
            out.push((
                *i,
                outcome(&self.probed[*i], *state, Some(msg.clone()), 0, 0),
            ));
        }
        out.sort_by_key(|(i, _)| *i);
        let mut outcomes: Vec<TargetOutcome> = out.into_iter().map(|(_, o)| o).collect();
        outcomes.extend(self.not_used.iter().map(|t| TargetOutcome {
            name: t.name.clone(),
            kind: t.kind.name().to_string(),
            location: String::new(),
            required: t.required,
            state: TargetState::NotUsed,
            bytes_written: 0,
            files_written: 0,
            detail: None,
        }));
        outcomes
    }
}

pub(crate) fn outcome(
    p: &Probed,
    state: TargetState,
    detail: Option<String>,
    bytes: u64,
    files: u64,
) -> TargetOutcome {
    TargetOutcome {
        name: p.cfg.name.clone(),
        kind: p.cfg.kind.name().to_string(),
        location: p.location(),
        required: p.cfg.required,
        state,
        bytes_written: bytes,
        files_written: files,
        detail,
    }
}

/// Opens a repository over any backend (the fan-out, or one target alone).
///
/// # Errors
/// [`Error::WrongPassword`], or the repository could not be read.
pub fn open_repository<P: ProgressBars>(
    be: Arc<dyn rustic_core::WriteBackend>,
    password: &Secret,
    pb: P,
) -> Result<Repository<OpenStatus>> {
    open_repository_with(be, &Credentials::password(password.expose()), pb)
}

/// [`open_repository`] with any credentials (the master key of a [`crate::proof::Proof`]).
///
/// # Errors
/// [`Error::WrongPassword`], or the repository could not be read.
pub fn open_repository_with<P: ProgressBars>(
    be: Arc<dyn rustic_core::WriteBackend>,
    credentials: &Credentials,
    pb: P,
) -> Result<Repository<OpenStatus>> {
    // No cache: all targets share one repository id, and a shared cache would hide a target's
    // missing index or snapshot files.
    let opts = RepositoryOptions::default().no_cache(true);
    let repo = Repository::new_with_progress(&opts, &RepositoryBackends::new(be, None), pb)?;
    Ok(repo.open(credentials)?)
}

/// The repository password: `[repository] password`, else `CAIRN_PASSWORD`.
///
/// # Errors
/// Neither is set, or the reference cannot be resolved.
pub fn password(cfg: &Config) -> Result<Secret> {
    if let Some(r) = &cfg.repository.password {
        return r.resolve("repository.password");
    }
    SecretRef::Env("CAIRN_PASSWORD".into())
        .resolve("repository password")
        .map_err(|_| {
            Error::Input(
                "no repository password: set CAIRN_PASSWORD or `password = \"env:NAME\"` \
                 (or file:/command:) under [repository]"
                    .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreError, StoreResult};

    /// A real local folder that goes offline once `config` has been read: a removable disk
    /// pulled between two steps of the probe, which no real disk does on demand.
    #[derive(Debug)]
    struct PulledAfterConfig(Box<dyn Store>);

    impl Store for PulledAfterConfig {
        fn location(&self) -> String {
            self.0.location()
        }
        fn stat(&self, p: &str) -> StoreResult<Option<u64>> {
            self.0.stat(p)
        }
        fn read(&self, p: &str) -> StoreResult<Bytes> {
            self.0.read(p)
        }
        fn read_range(&self, p: &str, o: u64, l: u64) -> StoreResult<Bytes> {
            self.0.read_range(p, o, l)
        }
        fn write(&self, p: &str, b: Vec<Bytes>) -> StoreResult<()> {
            self.0.write(p, b)
        }
        fn list(&self, _: &str) -> StoreResult<Vec<(String, u64)>> {
            Err(StoreError::new(StoreErrorKind::Offline, "disk not mounted"))
        }
        fn delete(&self, p: &str) -> StoreResult<()> {
            self.0.delete(p)
        }
        fn create_dirs(&self, d: &[String]) -> StoreResult<()> {
            self.0.create_dirs(d)
        }
    }

    #[test]
    fn a_disk_pulled_while_probed_is_offline_not_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let local = store::local_for_tests(dir.path());
        local
            .write("config", vec![Bytes::from_static(b"cfg")])
            .unwrap();
        let cfg = TargetConfig {
            name: "usb".into(),
            required: true,
            retries: 0,
            timeout: std::time::Duration::from_secs(5),
            kind: crate::config::TargetKind::Local {
                path: dir.path().to_path_buf(),
                mount_point: None,
            },
        };
        let p = probe_store(&cfg, Arc::new(PulledAfterConfig(local)));
        assert!(matches!(p.probe, Probe::Offline(_)), "{:?}", p.probe);
        assert_eq!(
            p.unusable(),
            Some((TargetState::Offline, "disk not mounted".to_string()))
        );
    }
}
