//! Opening the repository key with a password: on the first target where it opens, counted
//! toward the lockout, refused when a deletion record removed the key it opened, and recorded
//! in the audit trail, whose records then go to the targets holding this repository. A reading
//! session begins it on the first target probed, while the others are ([`Begun`]): the attempt
//! is still counted before the password is tried, and once.

use std::{collections::BTreeSet, sync::Arc};

use bytes::Bytes;
use rustic_core::{NoProgressBars, OpenStatus, Repository};

use crate::{
    context::Context,
    deletion,
    error::{Error, Result},
    fanout::{Fanout, Member},
    probe::{Probe, Probed},
    progress::Silent,
    proof::Proof,
    replica::ForeignFound,
    repo::open_repository,
    secret::Secret,
    store::{Named, Store},
};

/// The lockout counter's name for a repository: its config file is the same on every target,
/// so another configuration naming it gains no attempts.
fn lockout_name(config: &Bytes) -> String {
    format!(
        "repository {}",
        crate::layout::sha256_hex(config)
            .get(..12)
            .unwrap_or_default()
    )
}

/// Opens the repository with `password` on the first target (in configuration order; a begun
/// unlock's target first) where it opens, and keeps its master key and config.
///
/// # Errors
/// [`Error::WrongPassword`] when the password opens no target's keys; [`Error::NoRepository`]
/// or another error when no target could be opened; [`Error::LockedOut`];
/// [`Error::KeyRemoved`].
pub fn unlock(ctx: &Context, probed: &[Probed], password: &Secret) -> Result<Proof> {
    unlock_with(ctx, probed, &[], password)
}

/// [`unlock`] on `probed`, while `others` (targets not read from, as `--from` chose) still say
/// whether the key was removed (and a target that missed the removal loses it).
///
/// # Errors
/// As [`unlock`].
pub fn unlock_with(
    ctx: &Context,
    probed: &[Probed],
    others: &[Probed],
    password: &Secret,
) -> Result<Proof> {
    unlock_from(ctx, probed, others, password, None)
}

/// An unlock begun on the first target probed while the others were still being probed (a
/// remote log-in takes as long as the key derivation): its attempt counted in the lockout
/// before the password was tried, as every attempt is, and what the password gave there.
/// [`unlock_begun`] takes it over; dropped unused, it must be [`Begun::settle_unused`].
#[derive(Debug)]
pub struct Begun {
    target: String,
    what: String,
    /// The password's hash: the attempt is taken over only for the same password.
    tag: String,
    attempt: Result<crate::lockout::Attempt>,
    opened: Option<Result<Repository<OpenStatus>>>,
}

/// Begins the unlock on `p` if it holds a repository: counts the attempt, then opens the key
/// there (see [`Begun`]).
#[must_use]
pub fn begin(ctx: &Context, p: &Probed, password: &Secret) -> Option<Begun> {
    let (Probe::Ready { config, .. }, Some(store)) = (&p.probe, &p.store) else {
        return None;
    };
    let what = lockout_name(config);
    let attempt = ctx.gate().attempt(&what);
    let opened = attempt
        .is_ok()
        .then(|| open_repository(alone(p, store), password, ctx.keys(), NoProgressBars));
    Some(Begun {
        target: p.cfg.name.clone(),
        what,
        tag: crate::layout::sha256_hex(password.expose().as_bytes()),
        attempt,
        opened,
    })
}

impl Begun {
    /// Settles an attempt never taken over, as what it was: a wrong password stays counted;
    /// one that opened, or that never tried, is taken back (a removed key that opened must not
    /// reset the count; nothing it gave was used).
    pub fn settle_unused(self, ctx: &Context) {
        match (self.attempt, self.opened) {
            (Ok(attempt), Some(Err(Error::WrongPassword))) => ctx.gate().wrong(&self.what, attempt),
            (Ok(_), _) => ctx.gate().untried(&self.what),
            (Err(_), _) => {}
        }
    }
}

/// [`unlock_with`], taking over `begun` (see [`Begun`]) where it was for this repository and
/// password: its attempt is this unlock's, and its target is tried first with what it gave.
///
/// # Errors
/// As [`unlock`].
pub fn unlock_begun(
    ctx: &Context,
    probed: &[Probed],
    others: &[Probed],
    password: &Secret,
    begun: Begun,
) -> Result<Proof> {
    unlock_from(ctx, probed, others, password, Some(begun))
}

/// `p`'s store alone, as a backend.
fn alone(p: &Probed, store: &Arc<dyn Store>) -> Arc<Fanout> {
    Arc::new(Fanout::new(
        vec![Arc::new(Member::new(
            p.cfg.name.clone(),
            true,
            store.clone(),
        ))],
        Arc::new(Silent),
    ))
}

fn unlock_from(
    ctx: &Context,
    probed: &[Probed],
    others: &[Probed],
    password: &Secret,
    begun: Option<Begun>,
) -> Result<Proof> {
    let mut ready: Vec<(&Probed, &Bytes, &Arc<dyn Store>)> = probed
        .iter()
        .filter_map(|p| match (&p.probe, &p.store) {
            (Probe::Ready { config, .. }, Some(store)) => Some((p, config, store)),
            _ => None,
        })
        .collect();
    let gate = ctx.gate();
    let what = ready.first().map(|(_, config, _)| lockout_name(config));
    let tag = crate::layout::sha256_hex(password.expose().as_bytes());
    // The begun attempt is this one only if its target still takes part, holding this
    // repository, and for this password; else it is settled as what it was.
    let begun = begun.and_then(|b| {
        let here = ready.iter().position(|(p, _, _)| p.cfg.name == b.target);
        match here {
            Some(i) if Some(&b.what) == what.as_ref() && b.tag == tag => {
                let first = ready.remove(i);
                ready.insert(0, first);
                Some(b)
            }
            _ => {
                b.settle_unused(ctx);
                None
            }
        }
    });
    let Some(what) = what else {
        return Err(Error::NoRepository);
    };
    let (attempt, mut opened) = match begun {
        Some(b) => (b.attempt?, b.opened),
        None => (gate.attempt(&what)?, None),
    };
    let mut last = None;
    for (p, config, store) in &ready {
        let one = opened.take().unwrap_or_else(|| {
            open_repository(alone(p, store), password, ctx.keys(), NoProgressBars)
        });
        match one {
            Ok(repo) => {
                let proof = Proof::new(
                    password.clone(),
                    repo.key().clone(),
                    (*config).clone(),
                    repo.key_id().map(|k| *k),
                )?;
                // Only targets holding this very repository: a target holding another one must
                // never receive anything sealed with this key.
                let same: Vec<&(&Probed, &Bytes, &Arc<dyn Store>)> =
                    ready.iter().filter(|(_, c, _)| *c == *config).collect();
                let sources: Vec<Named<'_>> = same
                    .iter()
                    .map(|(p, _, s)| (p.cfg.name.as_str(), s.as_ref()))
                    .collect();
                let witnesses: Vec<Named<'_>> = sources
                    .iter()
                    .copied()
                    .chain(others.iter().filter_map(|p| match (&p.probe, &p.store) {
                        (Probe::Ready { config: c, .. }, Some(s)) if c == *config => {
                            Some((p.cfg.name.as_str(), s.as_ref()))
                        }
                        _ => None,
                    }))
                    .collect();
                let removed = removed_keys(ctx, &what, &proof, &witnesses);
                if let Some(key) = proof.key_path().filter(|k| removed.contains(k)) {
                    gate.wrong(&what, attempt);
                    return Err(Error::KeyRemoved { key });
                }
                gate.right(&what);
                let id = crate::layout::sha256_hex(config);
                if ctx
                    .state_dir()
                    .ok()
                    .and_then(|d| crate::state::State::load(&d).ok())
                    .is_some_and(|s| s.repository.is_none())
                {
                    ctx.update_state(|s| {
                        s.repository.get_or_insert(id);
                    });
                }
                proof.load_endorsements(&sources, &|k| removed.contains(k));
                ctx.trail().replicate_to(
                    proof.master_key(),
                    same.iter()
                        .map(|(p, _, s)| (p.cfg.name.clone(), (*s).clone()))
                        .collect(),
                );
                return Ok(proof);
            }
            // A wrong password on one target is wrong everywhere, unless that target's keys
            // are damaged: try the others before saying so.
            Err(e) => last = Some(e),
        }
    }
    let err = last.unwrap_or(Error::NoRepository);
    if matches!(err, Error::WrongPassword) {
        gate.wrong(&what, attempt);
    } else {
        gate.untried(&what);
    }
    Err(err)
}

/// The lockout name of the repository the first ready target of `probed` holds.
#[must_use]
pub fn lockout_name_of(probed: &[Probed]) -> Option<String> {
    probed.iter().find_map(|p| match &p.probe {
        Probe::Ready { config, .. } => Some(lockout_name(config)),
        _ => None,
    })
}

/// The key files removed from the repository `what`: those the deletion records on `sources`
/// remove (remembered on this machine from now on, and taken off the targets that still hold
/// the key `proof` opened) and those this machine remembers.
fn removed_keys(
    ctx: &Context,
    what: &str,
    proof: &Proof,
    sources: &[Named<'_>],
) -> BTreeSet<String> {
    let deletions = deletion::load(sources, proof, &ForeignFound::default());
    let seen: Vec<String> = deletions
        .deleted()
        .iter()
        .filter(|p| p.starts_with("keys/"))
        .cloned()
        .collect();
    let lockout = &ctx.gate().lockout;
    lockout.remember_removed(what, &seen);
    if let Some(path) = proof.key_path().filter(|p| deletions.deletes(p)) {
        for (name, store) in sources {
            if store.stat(&path).ok().flatten().is_some() {
                let _ = deletion::obey(name, *store, [&path], &deletions);
            }
        }
    }
    let mut removed = lockout.removed_keys(what);
    removed.extend(seen);
    removed
}
