//! `cairn key`: one key per operator on every target, so that a person who leaves loses access
//! at once without changing anyone else's password.
//!
//! A key is restic's key file (the master key sealed under the operator's password, made by
//! rustic_core), with the operator as its `username`; stock restic opens the repository with
//! it. Adding writes the same file to every reachable target, with an *endorsement* sealed with
//! the repository key (`.cairn-keys/`), so that catch-up can prove and copy it to a target that
//! was away (a key of another password cannot be opened to prove it otherwise).
//!
//! Removing goes through a deletion record ([`crate::deletion`]), like a forget: the key file
//! goes from every reachable target at once, a target that was away obeys at its next catch-up
//! (and catch-up never copies it back), and until then cairn refuses the removed password on it
//! ([`crate::unlock::unlock`] takes the key off when it sees it). The key in use and the
//! last key are never removed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    context::Context,
    deletion::{self, Record, Recorded},
    error::{Error, Result},
    layout::KEYS_DIR,
    lock::LockedTargets,
    probe::{Probe, Probed},
    proof::{Endorsement, Proof},
    replica::ForeignFound,
    report::{TargetState, is_partial},
    secret::Secret,
    store::Named,
    unlock::unlock,
};

/// The public part of a key file (restic writes it in clear).
#[derive(Debug, Deserialize)]
struct KeyHead {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    created: Option<String>,
}

/// One key of the repository.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Its id (the key file's name).
    pub id: String,
    /// The operator (restic's `username`).
    pub operator: String,
    /// The host it was added from.
    pub host: String,
    /// When it was made.
    pub created: String,
    /// Targets holding it.
    pub targets: Vec<String>,
    /// Whether the password given opened it.
    pub current: bool,
    /// Whether it is proven this repository's: it opens with the password given, or cairn
    /// endorsed it with the repository key when it added it. A key file that is neither (one
    /// `restic key add` wrote, or one planted on a target) is listed but never acted on.
    pub proven: bool,
    /// Whether a removal is recorded for it (targets listed still hold it until they obey).
    pub removed: bool,
}

/// One target's part in an add or a removal.
#[derive(Debug, Clone, Serialize)]
pub struct KeyTarget {
    /// Target name.
    pub name: String,
    /// Whether it is required.
    pub required: bool,
    /// `complete`, or why not.
    pub state: TargetState,
    /// Why not, if not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

crate::outcome_fields!(KeyTarget);

/// What `key add` or `key remove` did.
#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    /// The operator.
    pub operator: String,
    /// The key files concerned (`keys/ID`).
    pub keys: Vec<String>,
    /// Every target.
    pub targets: Vec<KeyTarget>,
    /// Whether a required target did not take part.
    pub partial: bool,
}

fn reachable(probed: &[Probed]) -> Vec<(usize, Named<'_>)> {
    probed
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.probe, Probe::Ready { .. }))
        .filter_map(|(i, p)| Some((i, (p.cfg.name.as_str(), p.store.as_deref()?))))
        .collect()
}

/// One key file as the reachable targets hold it.
struct Held {
    head: KeyHead,
    targets: Vec<String>,
    proven: bool,
    /// A deletion record removes it (the targets listed have not obeyed yet).
    removed: bool,
}

/// What the key commands look at: the reachable targets holding the repository, and every key
/// file they hold (with whether a deletion record removes it).
struct Keys<'a> {
    reachable: Vec<(usize, Named<'a>)>,
    held: BTreeMap<String, Held>,
}

impl<'a> Keys<'a> {
    /// Reads the keys of the targets in `probed` that hold the repository `proof` opened.
    ///
    /// # Errors
    /// Two targets hold different repositories.
    fn read(probed: &'a [Probed], proof: &Proof) -> Result<Self> {
        crate::probe::one_repository(probed)?;
        let reachable = reachable(probed);
        let sources: Vec<Named<'_>> = reachable.iter().map(|(_, s)| *s).collect();
        let deletions = deletion::load(&sources, proof, &ForeignFound::default());
        let mut holders: BTreeMap<String, Vec<Named<'_>>> = BTreeMap::new();
        for source in &sources {
            for (rel, _) in source.1.list("keys").unwrap_or_default() {
                holders
                    .entry(format!("keys/{rel}"))
                    .or_default()
                    .push(*source);
            }
        }
        let mut held = BTreeMap::new();
        for (path, from) in holders {
            // The head of the first copy that proves itself, else of the first that parses.
            let mut found: Option<(KeyHead, bool)> = None;
            for (_, store) in &from {
                let Ok(bytes) = store.read(&path) else {
                    continue;
                };
                let proven = proof.check(&path, &bytes).is_ok();
                if let Ok(head) = serde_json::from_slice::<KeyHead>(&bytes)
                    && (proven || found.is_none())
                {
                    found = Some((head, proven));
                }
                if proven {
                    break;
                }
            }
            if let Some((head, proven)) = found {
                let targets = from.iter().map(|(n, _)| (*n).to_string()).collect();
                let removed = deletions.deletes(&path);
                held.insert(
                    path,
                    Held {
                        head,
                        targets,
                        proven,
                        removed,
                    },
                );
            }
        }
        Ok(Self { reachable, held })
    }

    /// The proven keys in force.
    fn in_force(&self) -> impl Iterator<Item = (&String, &Held)> {
        self.held.iter().filter(|(_, k)| k.proven && !k.removed)
    }

    /// The proven keys in force of `operator`.
    fn of(&self, operator: &str) -> Vec<String> {
        self.in_force()
            .filter(|(_, k)| k.head.username.as_deref() == Some(operator))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn sources(&self) -> Vec<Named<'a>> {
        self.reachable.iter().map(|(_, s)| *s).collect()
    }
}

/// Each target's part: `away` says what becomes of a target that was not reached.
///
/// # Errors
/// No target took it (`nowhere` says what that means).
fn per_target(
    probed: &[Probed],
    reachable: &[(usize, Named<'_>)],
    results: &[std::result::Result<(), String>],
    away: &str,
    nowhere: &str,
) -> Result<Vec<KeyTarget>> {
    if results.iter().all(std::result::Result::is_err) {
        return Err(Error::NoTargetUsable(nowhere.to_string()));
    }
    Ok(probed
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (state, detail) = match reachable.iter().position(|(j, _)| *j == i) {
                Some(k) => match &results[k] {
                    Ok(()) => (TargetState::Complete, None),
                    Err(e) => (TargetState::Failed, Some(e.clone())),
                },
                None => {
                    let (state, why) = p
                        .unusable()
                        .unwrap_or((TargetState::Unreachable, "not reachable".into()));
                    (state, Some(format!("{why}; {away}")))
                }
            };
            KeyTarget {
                name: p.cfg.name.clone(),
                required: p.cfg.required,
                state,
                detail,
            }
        })
        .collect())
}

fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Adds a key for `operator` with `new_password` on every reachable target.
///
/// # Errors
/// The operator already has a key; wrong password; the lock is held; no target took it.
pub fn add(
    ctx: &Context,
    password: &Secret,
    operator: &str,
    new_password: &Secret,
) -> Result<KeyReport> {
    check_operator(operator)?;
    let mut locked = LockedTargets::acquire(ctx, "key add")?;
    locked.prove(password)?;
    let proof = locked.proof().ok_or(Error::NoRepository)?;
    let keys = Keys::read(locked.probed(), proof)?;
    if let Some(path) = keys.of(operator).first() {
        return Err(Error::Input(format!(
            "operator `{operator}` already has a key ({path}); remove it first to change it"
        )));
    }
    let sources = keys.sources();
    let opts = rustic_core::KeyOptions::default()
        .username(operator.to_string())
        .hostname(host())
        .with_created(true);
    let (key_path, key_bytes) = proof.make_key(new_password, &opts)?;
    let endorsement = Endorsement {
        key: key_path.clone(),
        operator: operator.to_string(),
        added_by: ctx.trail().operator(),
        host: host(),
        time: crate::state::now(),
        by_key: proof.key_path(),
    };
    let (name, sealed) = proof
        .cipher()
        .seal(&serde_json::to_vec(&endorsement).unwrap_or_default())
        .map_err(Error::Input)?;
    let endorsement_path = format!("{KEYS_DIR}/{name}");
    // The endorsement first: a key file without it could not be proven by catch-up.
    let results = crate::par::each(&sources, |(_, store)| {
        store
            .write(&endorsement_path, vec![sealed.clone()])
            .and_then(|()| store.write(&key_path, vec![key_bytes.clone()]))
            .map_err(|e| e.to_string())
    });
    let targets = per_target(
        locked.probed(),
        &keys.reachable,
        &results,
        "gets the key at its next catch-up",
        "the key was written to no target",
    )?;
    Ok(finish(ctx, operator, vec![key_path], targets))
}

/// Every key of the repository, on which targets.
///
/// # Errors
/// Wrong password; no repository.
pub fn list(ctx: &Context, password: &Secret) -> Result<Vec<KeyInfo>> {
    let probed = crate::probe::probe_all(ctx, None)?;
    let proof = unlock(ctx, &probed, password)?;
    let keys = Keys::read(&probed, &proof)?;
    let current = proof.key_path();
    Ok(keys
        .held
        .into_iter()
        .map(|(path, k)| KeyInfo {
            id: path.trim_start_matches("keys/").to_string(),
            operator: k.head.username.unwrap_or_default(),
            host: k.head.hostname.unwrap_or_default(),
            created: k.head.created.unwrap_or_default(),
            current: current.as_deref() == Some(path.as_str()),
            proven: k.proven,
            removed: k.removed,
            targets: k.targets,
        })
        .collect())
}

/// Removes every key of `operator` from every reachable target; a target that is away obeys
/// at its next catch-up.
///
/// # Errors
/// No such key; it is the key in use or the last one; wrong password; the lock is held.
pub fn remove(ctx: &Context, password: &Secret, operator: &str) -> Result<KeyReport> {
    let mut locked = LockedTargets::acquire(ctx, "key remove")?;
    locked.prove(password)?;
    let proof = locked.proof().ok_or(Error::NoRepository)?;
    let keys = Keys::read(locked.probed(), proof)?;
    let doomed = keys.of(operator);
    if doomed.is_empty() {
        let unproven = keys
            .held
            .values()
            .any(|k| !k.removed && k.head.username.as_deref() == Some(operator));
        return Err(Error::Input(if unproven {
            format!(
                "operator `{operator}` has no key cairn can prove on any reachable target; a key \
                 file with that name that neither opens with this password nor was endorsed by \
                 cairn is left as it is (`restic key remove` removes it, target by target)"
            )
        } else {
            format!(
                "operator `{operator}` has no key on any reachable target (see `cairn key list`)"
            )
        }));
    }
    if doomed.len() == keys.in_force().count() {
        return Err(Error::Input(format!(
            "the key(s) of `{operator}` are the last of the repository: removing them would \
             lock everyone out; add another operator's key first"
        )));
    }
    if proof.key_path().is_some_and(|c| doomed.contains(&c)) {
        return Err(Error::Input(format!(
            "the password given opens `{operator}`'s own key: remove it with another \
             operator's password"
        )));
    }
    let sources = keys.sources();
    // Their endorsements go with them: nothing vouches for a removed key any more.
    let mut files = doomed.clone();
    files.extend(endorsements_of(&sources, proof, &doomed));
    let record = Record::new("key remove", files);
    let (_, results) = deletion::record_and_remove(&sources, &record, proof, Recorded::Each)
        .map_err(Error::Input)?;
    // This machine refuses those passwords from now on, even where no target tells it.
    if let Some(what) = crate::unlock::lockout_name_of(locked.probed()) {
        ctx.gate().lockout.remember_removed(&what, &doomed);
    }
    let results: Vec<std::result::Result<(), String>> =
        results.into_iter().map(|r| r.map(|_| ())).collect();
    let targets = per_target(
        locked.probed(),
        &keys.reachable,
        &results,
        "loses the key at its next catch-up; cairn refuses the password there meanwhile",
        "the removal was recorded nowhere, no key was removed",
    )?;
    Ok(finish(ctx, operator, doomed, targets))
}

/// The endorsements (`.cairn-keys/NAME`) any of `sources` holds for the key files `keys`.
fn endorsements_of(sources: &[Named<'_>], proof: &Proof, keys: &[String]) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for (_, store) in sources {
        for (name, _) in store.list(KEYS_DIR).unwrap_or_default() {
            let path = format!("{KEYS_DIR}/{name}");
            let endorses = store.read(&path).ok().and_then(|b| {
                let plain = proof.cipher().open(&b)?;
                serde_json::from_slice::<Endorsement>(&plain).ok()
            });
            if endorses.is_some_and(|e| keys.contains(&e.key)) {
                out.insert(path);
            }
        }
    }
    out.into_iter().collect()
}

/// The report of an add or a removal; the targets that took it go in the audit record.
fn finish(ctx: &Context, operator: &str, keys: Vec<String>, targets: Vec<KeyTarget>) -> KeyReport {
    ctx.trail().targets(
        targets
            .iter()
            .filter(|t| t.state == TargetState::Complete)
            .map(|t| t.name.clone())
            .collect(),
    );
    KeyReport {
        operator: operator.to_string(),
        keys,
        partial: is_partial(&targets),
        targets,
    }
}

fn check_operator(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "operator name {name:?}: use letters, digits, `-`, `_`, `.` and `@` (at most 64)"
        )))
    }
}
