//! The lock as a type: targets probed and locked for writing. Every operation that writes to
//! targets takes a [`LockedTargets`], and only [`LockedTargets::acquire`] makes one, so no
//! caller can write without holding the lock.

use crate::{
    context::Context,
    error::{Error, Result},
    probe::{Probed, probe_all},
    proof::Proof,
    secret::Secret,
    session::{Mode, Session},
    unlock::unlock,
};

use super::{RepoLock, acquire};

/// The repository lock, held on this machine and on every target it covers, with those
/// targets as probed; dropping it releases the lock everywhere.
#[derive(Debug)]
pub struct LockedTargets {
    lock: RepoLock,
    probed: Vec<Probed>,
    proof: Option<Proof>,
    ctx: Context,
}

impl LockedTargets {
    /// Probes the targets and takes the lock for `command`; a target the lock does not cover
    /// is marked unreachable, so nothing writes to it.
    ///
    /// # Errors
    /// [`Error::Locked`] naming the holder; the state folder cannot be used.
    pub fn acquire(ctx: &Context, command: &str) -> Result<Self> {
        let probed = probe_all(ctx, None)?;
        let lock = acquire(ctx.cfg(), command, &probed, ctx.observer())?;
        let probed = lock.restrict(probed);
        Ok(Self {
            lock,
            probed,
            proof: None,
            ctx: ctx.clone(),
        })
    }

    /// Opens the repository key with `password` and holds restic's lock beside ours on every
    /// target holding the repository; a target restic holds exclusively leaves the run. With
    /// no repository anywhere there is nothing to prove, and no proof is kept.
    ///
    /// # Errors
    /// [`Error::WrongPassword`]; two targets hold different repositories.
    pub fn prove(&mut self, password: &Secret) -> Result<()> {
        match unlock(&self.ctx, &self.probed, password) {
            Ok(proof) => {
                self.proof = Some(proof);
                self.hold_restic();
                Ok(())
            }
            Err(Error::NoRepository) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Probes the targets again (catch-up or `init` changed some), keeping to what the lock
    /// covers; restic's lock goes to targets that now hold the repository.
    ///
    /// # Errors
    /// As [`probe_all`].
    pub fn reprobe(&mut self) -> Result<()> {
        self.probed = self.lock.restrict(probe_all(&self.ctx, None)?);
        self.hold_restic();
        Ok(())
    }

    fn hold_restic(&mut self) {
        if let Some(proof) = &self.proof {
            self.lock
                .hold_restic(proof, &self.probed, self.ctx.observer());
            self.probed = self.lock.restrict(std::mem::take(&mut self.probed));
        }
    }

    /// The targets, as probed, with those the lock does not cover marked unreachable.
    #[must_use]
    pub fn probed(&self) -> &[Probed] {
        &self.probed
    }

    /// The repository key, once [`Self::prove`]d.
    #[must_use]
    pub fn proof(&self) -> Option<&Proof> {
        self.proof.as_ref()
    }

    /// A writing session over the locked targets: each member stops being written once its
    /// lock is taken over. `untrusted` names targets holding files that could be neither
    /// proven nor moved aside; they take no part.
    ///
    /// # Errors
    /// As [`Session::open`].
    pub fn writer(&self, untrusted: &[(String, String)]) -> Result<Session> {
        let session = Session::from_probed(
            &self.ctx,
            self.probed.clone(),
            Vec::new(),
            Mode::Write,
            untrusted,
        )?;
        session.watch_lock(|name| self.lock.lost_flag(name));
        Ok(session)
    }
}
