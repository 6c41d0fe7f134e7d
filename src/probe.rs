//! Probing: what each target holds right now, read concurrently, and the one availability
//! model every command reads ([`Probe`], [`Probed::unusable`]): an error's class decides
//! whether a target is offline, unreachable or absent, never its text.

use std::{collections::BTreeSet, sync::Arc};

use bytes::Bytes;
use rustic_core::{FileType, Id};

use crate::{
    config::TargetConfig,
    context::Context,
    error::{Error, Result},
    fanout::list_type,
    report::TargetState,
    store::{Store, StoreError, StoreErrorKind},
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
    /// Its storage is full or over quota: not even a lock can be written.
    Full(String),
    /// Holds another repository than the one this machine knows by this configuration.
    Foreign(String),
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
            StoreErrorKind::Full => Self::Full(m),
            _ => Self::Unreachable(m),
        }
    }

    /// Why the target cannot be used, as a report state and its detail; `None` when it holds
    /// the repository. Every command reads availability from here.
    #[must_use]
    pub fn unusable(&self) -> Option<(TargetState, String)> {
        match self {
            Probe::Offline(m) => Some((TargetState::Offline, m.clone())),
            Probe::Unreachable(m) | Probe::Absent(m) => Some((TargetState::Unreachable, m.clone())),
            Probe::Full(m) => Some((TargetState::Full, m.clone())),
            Probe::Foreign(m) => Some((TargetState::Foreign, m.clone())),
            Probe::Empty => Some((
                TargetState::NotInitialised,
                "holds no repository (run `cairn init`)".into(),
            )),
            Probe::Ready { .. } => None,
        }
    }
}

/// The report state and detail of a target a storage error made unusable (an unplugged disk
/// is offline, anything else unreachable): [`Probe::of_error`], then [`Probe::unusable`].
#[must_use]
pub fn unusable_by(e: &StoreError) -> (TargetState, String) {
    Probe::of_error(e)
        .unusable()
        .unwrap_or_else(|| (TargetState::Unreachable, e.message.clone()))
}

impl Probed {
    /// [`Probe::unusable`] of this target.
    #[must_use]
    pub fn unusable(&self) -> Option<(TargetState, String)> {
        self.probe.unusable()
    }

    /// Where the target is (no secrets).
    #[must_use]
    pub fn location(&self) -> String {
        self.store
            .as_ref()
            .map_or_else(|| self.cfg.kind.name().to_string(), |s| s.location())
    }
}

fn probe_one(ctx: &Context, cfg: &TargetConfig) -> Probed {
    let store: Arc<dyn Store> = match ctx.open_store(cfg) {
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

/// Probes these targets concurrently.
#[must_use]
pub fn probe_targets(ctx: &Context, targets: &[TargetConfig]) -> Vec<Probed> {
    probe_targets_then(ctx, targets, &|_| {})
}

/// [`probe_targets`], handing each to `then` as soon as it is probed (see [`probe_all_then`]).
pub fn probe_targets_then(
    ctx: &Context,
    targets: &[TargetConfig],
    then: &(dyn Fn(&Probed) + Sync),
) -> Vec<Probed> {
    let known = ctx
        .state_dir()
        .ok()
        .and_then(|d| crate::state::State::load(&d).ok())
        .and_then(|s| s.repository);
    crate::par::each_caught(targets, |t| {
        let mut p = probe_one(ctx, t);
        leave_out_foreign(ctx, known.as_deref(), &mut p);
        then(&p);
        p
    })
    .into_iter()
    .zip(targets)
    .map(|(r, t)| {
        r.unwrap_or_else(|why| Probed {
            cfg: t.clone(),
            store: None,
            probe: Probe::Unreachable(format!("probe {why}")),
        })
    })
    .collect()
}

/// Once this machine knows the repository (`known`: its `config`'s hash, remembered in the
/// state folder), a target holding another one is left out, named, instead of stopping every
/// command: nothing is read from it or written to it.
fn leave_out_foreign(ctx: &Context, known: Option<&str>, p: &mut Probed) {
    let Some(known) = known else {
        return;
    };
    let name = ctx.cfg().repository.name.as_deref().unwrap_or("repository");
    if let Probe::Ready { config, .. } = &p.probe
        && crate::layout::sha256_hex(config) != known
    {
        p.probe = Probe::Foreign(format!(
            "holds another repository than the one this machine has been using as `{name}` \
             (its `config` differs); left out: nothing is read from it or written to it \
             (if the repository was re-created on purpose, remove `repository` from \
             targets.json in the state folder)"
        ));
    }
}

/// Probes the targets concurrently (all, or only `only`), in configuration order.
///
/// # Errors
/// `only` names no configured target.
pub fn probe_all(ctx: &Context, only: Option<&str>) -> Result<Vec<Probed>> {
    probe_all_then(ctx, only, &|_| {})
}

/// [`probe_all`], handing each target to `then` as soon as it is probed (on its own thread,
/// while the others are still being probed): a slow log-in need not hold up what one target
/// can already do.
///
/// # Errors
/// As [`probe_all`].
pub fn probe_all_then(
    ctx: &Context,
    only: Option<&str>,
    then: &(dyn Fn(&Probed) + Sync),
) -> Result<Vec<Probed>> {
    let cfg = ctx.cfg();
    let chosen: Vec<&TargetConfig> = match only {
        Some(name) => vec![cfg.target(name)?],
        None => cfg.targets.iter().collect(),
    };
    let chosen: Vec<TargetConfig> = chosen.into_iter().cloned().collect();
    Ok(probe_targets_then(ctx, &chosen, then))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Failing;

    #[test]
    fn a_disk_pulled_while_probed_is_offline_not_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let local = crate::store::local_for_tests(dir.path());
        local
            .write("config", vec![Bytes::from_static(b"cfg")])
            .unwrap();
        let cfg = TargetConfig {
            name: "usb".into(),
            required: true,
            retries: 0,
            timeout: std::time::Duration::from_secs(5),
            region: None,
            kind: crate::config::TargetKind::Local {
                path: dir.path().to_path_buf(),
                mount_point: None,
            },
        };
        // Goes offline once `config` has been read: a disk pulled between two steps of the probe.
        let pulled = StoreError::new(StoreErrorKind::Offline, "disk not mounted");
        let p = probe_store(&cfg, Arc::new(Failing::new(local, "list", pulled)));
        assert!(matches!(p.probe, Probe::Offline(_)), "{:?}", p.probe);
        assert_eq!(
            p.unusable(),
            Some((TargetState::Offline, "disk not mounted".to_string()))
        );
    }
}
