//! One command's view of the targets: from their probes ([`crate::probe`]), decide which take
//! part, and open the repository through the fan-out backend.
//!
//! The consistency gate: every target holding a repository must hold the *same* one (identical
//! `config` file). For a write, only targets holding every index file and key the most complete
//! target holds take part; a target that missed earlier runs is *lagging* and is not written,
//! because a new snapshot there would reference packs it does not have.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use rustic_core::{FileType, Id, OpenStatus, ProgressBars, Repository};

mod index;

use crate::{
    config::TargetConfig,
    context::Context,
    deletion,
    error::{Error, Result},
    fanout::{Fanout, Member, UPLOADS_IN_FLIGHT, list_type},
    probe::{Probe, Probed, one_repository, probe_all_then, probe_targets},
    proof::Proof,
    replica::ForeignFound,
    repo::{open_repository, open_repository_with},
    report::{TargetOutcome, TargetState},
    secret::Secret,
    store::Named,
    unlock::{Begun, unlock_begun, unlock_with},
};

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
    /// Packs a member lacks that an index names (found by [`Self::archiving_repository`]).
    holes: std::sync::Mutex<BTreeMap<String, Vec<String>>>,
    /// The unlock begun while probing ([`Session::open`]), for [`Session::repository`].
    begun: Mutex<Option<Begun>>,
    ctx: Context,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(b) = self
            .begun
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            b.settle_unused(&self.ctx);
        }
    }
}

impl Session {
    /// Probes the targets (all, or only `from`) and applies the consistency gate, for reading;
    /// the unlock with `password` begins on the first target probed, while the others are
    /// (see [`crate::unlock::Begun`]), and [`Self::repository`] finishes it. A session that
    /// writes comes only from [`crate::lock::LockedTargets::writer`].
    ///
    /// # Errors
    /// No target holds the repository ([`Error::NoRepository`] or, when some could not be
    /// reached, [`Error::NoTargetUsable`]); two targets hold different repositories.
    pub fn open(ctx: &Context, from: Option<&str>, password: &Secret) -> Result<Self> {
        // The unlock begins on the first target probed, while a remote log-in goes on.
        let first = AtomicBool::new(true);
        let begun: Mutex<Option<Begun>> = Mutex::default();
        let probed = probe_all_then(ctx, from, &|p| {
            if matches!(p.probe, Probe::Ready { .. })
                && first.swap(false, Ordering::SeqCst)
                && let Some(b) = crate::unlock::begin(ctx, p, password)
            {
                *begun.lock().unwrap_or_else(PoisonError::into_inner) = Some(b);
            }
        });
        let begun = begun.into_inner().unwrap_or_else(PoisonError::into_inner);
        let opened = probed.and_then(|probed| {
            let not_used = ctx
                .cfg()
                .targets
                .iter()
                .filter(|t| !probed.iter().any(|p| p.cfg.name == t.name))
                .cloned()
                .collect();
            Self::from_probed(ctx, probed, not_used, Mode::Read, &[])
        });
        match opened {
            Ok(mut session) => {
                session.begun = Mutex::new(begun);
                Ok(session)
            }
            Err(e) => {
                if let Some(b) = begun {
                    b.settle_unused(ctx);
                }
                Err(e)
            }
        }
    }

    /// [`Session::open`] over targets already probed. `untrusted` names targets that hold files
    /// which could not be proven nor moved aside: they take no part.
    pub(crate) fn from_probed(
        ctx: &Context,
        probed: Vec<Probed>,
        not_used: Vec<TargetConfig>,
        mode: Mode,
        untrusted: &[(String, String)],
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
        one_repository(&probed)?;
        let mut members = Vec::new();
        for &i in &ready {
            let Probe::Ready { keys, index, .. } = &probed[i].probe else {
                continue;
            };
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
            ctx.observer().clone(),
        )
        .with_uploads_in_flight(
            ctx.cfg()
                .backup
                .uploads_in_flight
                .map_or(UPLOADS_IN_FLIGHT, std::num::NonZeroUsize::get),
        );
        Ok(Self {
            probed,
            members,
            left_out,
            not_used,
            mode,
            fanout,
            holes: std::sync::Mutex::default(),
            begun: Mutex::default(),
            ctx: ctx.clone(),
        })
    }

    /// Ties every member to the lock held on its target (`lost_flag` of its name), so a
    /// member whose lock is taken over stops being written.
    pub(crate) fn watch_lock(
        &self,
        lost_flag: impl Fn(&str) -> Option<Arc<std::sync::atomic::AtomicBool>>,
    ) {
        for m in self.fanout.members() {
            if let Some(flag) = lost_flag(&m.name) {
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
            return open_repository(Arc::new(self.fanout.clone()), password, self.ctx.keys(), pb);
        }
        // Reading from one target (`--from`): the others still say whether this key was
        // removed while that one was away (and it then loses the key).
        let others = if self.not_used.is_empty() {
            Vec::new()
        } else {
            probe_targets(&self.ctx, &self.not_used)
        };
        let begun = self
            .begun
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let proof = match begun {
            Some(b) => unlock_begun(&self.ctx, &self.probed, &others, password, b)?,
            None => unlock_with(&self.ctx, &self.probed, &others, password)?,
        };
        self.reader(&proof, pb)
    }

    /// A reading session's repository, with a key already proven.
    ///
    /// # Errors
    /// The repository could not be read.
    pub fn reader<P: ProgressBars>(&self, proof: &Proof, pb: P) -> Result<Repository<OpenStatus>> {
        // A reader sees the newest snapshot of any target and every index it needs, from
        // whichever target holds them, but never a file an honest cairn could not have written
        // nor one a deletion record deletes; each file it reads must hash to its name, else the
        // next target's copy is read.
        let fanout = self.fanout.clone().verifying();
        self.hide_deleted(&fanout, proof);
        for tpe in [FileType::Index, FileType::Snapshot] {
            fanout.set_listing(tpe, self.proven_union(tpe, proof));
        }
        open_repository_with(Arc::new(fanout), &proof.credentials(), pb)
    }

    /// Hides from `fanout` every file a proven deletion record on a member deletes.
    pub(crate) fn hide_deleted(&self, fanout: &Fanout, proof: &Proof) {
        let members = self.fanout.members();
        let sources: Vec<Named<'_>> = members
            .iter()
            .map(|m| (m.name.as_str(), m.store().as_ref()))
            .collect();
        let deletions = deletion::load(&sources, proof, &ForeignFound::default());
        fanout.hide(deletions.deleted().iter().cloned());
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
        proof: &Proof,
        pb: P,
    ) -> Result<Repository<OpenStatus>> {
        self.hide_deleted(&self.fanout, proof);
        open_repository_with(Arc::new(self.fanout.clone()), &proof.credentials(), pb)
    }

    /// Opens the repository a backup writes through: as [`Self::repository_with`], with an
    /// index that names only packs every member holds (see `session/index.rs`).
    ///
    /// # Errors
    /// The repository could not be read.
    pub fn archiving_repository<P: ProgressBars>(
        &self,
        proof: &Proof,
        pb: P,
    ) -> Result<Repository<OpenStatus>> {
        self.hide_deleted(&self.fanout, proof);
        let holes = index::keep_sound(&self.fanout, proof)?;
        if let Ok(mut h) = self.holes.lock() {
            *h = holes;
        }
        open_repository_with(Arc::new(self.fanout.clone()), &proof.credentials(), pb)
    }

    /// What became of every configured target, in configuration order.
    #[must_use]
    pub fn outcomes(&self) -> Vec<TargetOutcome> {
        // A pack upload still in flight may yet drop its target.
        self.fanout.settle();
        let mut out: Vec<(usize, TargetOutcome)> = Vec::new();
        for (pos, &i) in self.members.iter().enumerate() {
            let p = &self.probed[i];
            let m = &self.fanout.members()[pos];
            let failure = m.failure().map(|d| d.to_string());
            let hole = self.holes.lock().ok().and_then(|h| {
                let packs = h.get(&m.name)?;
                Some(format!(
                    "lacks {} pack(s) its index names, so a snapshot written before may not \
                     restore from it (this backup wrote their data again); no target holds an \
                     intact copy to bring back; `cairn check` tells more; first: {}",
                    packs.len(),
                    packs[0]
                ))
            });
            let (state, failure) = match (failure, self.mode) {
                (Some(f), _) => (TargetState::Failed, Some(f)),
                (None, Mode::Write) if hole.is_some() => (TargetState::Incomplete, hole),
                (None, Mode::Write) => (TargetState::Complete, None),
                (None, Mode::Read) => (TargetState::Available, None),
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
