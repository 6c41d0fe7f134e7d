//! `cairn init`: the same repository on every target.
//!
//! With no repository anywhere, a new one is created on every reachable target at once through
//! the fan-out. When some targets already hold it (a target was added, or was offline at the
//! first init), its `config` and key files are copied byte for byte to the empty ones, after
//! the password has been checked against it. A target holding a different repository is refused.

use std::sync::Arc;

use rustic_core::{
    ConfigOptions, Credentials, FileType, KeyOptions, ProgressBars, ReadBackend, Repository,
    RepositoryBackends, RepositoryOptions,
};
use serde::Serialize;

use crate::{
    config::TargetKind,
    context::Context,
    error::{Error, Result},
    fanout::{Fanout, Member},
    layout::{file_path, repository_dirs},
    lock::LockedTargets,
    probe::{Probe, Probed},
    replica::{ForeignFound, read_proven},
    report::{TargetOutcome, TargetState},
    secret::Secret,
    session::{Mode, Session, outcome},
    store::Store,
    unlock::unlock,
};

/// What `init` did.
#[derive(Debug, Serialize)]
pub struct InitReport {
    /// The repository id (the same on every target).
    pub repository_id: String,
    /// Whether a new repository was created (else an existing one was extended).
    pub created: bool,
    /// Every target's outcome.
    pub targets: Vec<TargetOutcome>,
}

/// Data packs of a new repository: restic's own default size (rustic_core's is 32 MiB). Every
/// pack is held whole in memory from the chunker until each target has stored it, a few at a
/// time: with 32 MiB packs one SFTP target took the backup to 221-243 MiB, with 16 MiB to
/// 148-168 MiB, at the same speed (the corpus of benches/remote.sh). Kept in the repository's `config`, which
/// restic reads without minding the field.
const DATA_PACK_SIZE: bytesize::ByteSize = bytesize::ByteSize::mib(16);

/// Creates the repository, or extends it to targets that lack it. A target that cannot be
/// reached may already hold the repository: with one, nothing is created (a second repository
/// would be born beside the first) unless `force_new`.
///
/// # Errors
/// Two targets hold different repositories; the password does not open the existing one; a
/// target that may hold the repository cannot be reached; no target could be written.
pub fn run<P: ProgressBars>(
    ctx: &Context,
    password: &Secret,
    force_new: bool,
    pb: P,
) -> Result<InitReport> {
    let locked = LockedTargets::acquire(ctx, "init")?;
    create_or_extend(ctx, &locked, password, force_new, pb)
}

/// [`run`] over targets already locked.
fn create_or_extend<P: ProgressBars>(
    ctx: &Context,
    locked: &LockedTargets,
    password: &Secret,
    force_new: bool,
    pb: P,
) -> Result<InitReport> {
    let probed: Vec<Probed> = locked.probed().iter().cloned().map(creatable).collect();
    let any_ready = probed
        .iter()
        .any(|p| matches!(p.probe, Probe::Ready { .. }));
    if !any_ready {
        if !force_new {
            let away: Vec<String> = probed
                .iter()
                .filter(|p| !matches!(p.probe, Probe::Empty))
                .map(|p| format!("`{}`: {}", p.cfg.name, left_out(p).1))
                .collect();
            if !away.is_empty() {
                return Err(Error::NoTargetUsable(format!(
                    "{}; a target that cannot be reached may already hold the repository, so \
                     none is created beside it. Bring it back, or pass --force-new to create a \
                     new repository on the reachable targets anyway",
                    away.join("; ")
                )));
            }
        }
        return create(ctx, probed, password, pb);
    }
    // The gate (one repository only), then the password, proven on a target that holds it.
    let session = Session::from_probed(ctx, probed.clone(), Vec::new(), Mode::Read, &[])?;
    let proof = unlock(ctx, &session.probed, password)?;
    let repository_id = {
        let repo = session.repository_with(&proof, pb)?;
        repo.config().id.to_hex().to_string()
    };
    // config and every key file that proves itself, from the first target that has them.
    let mut files = vec![("config".to_string(), proof.config().clone())];
    let sources: Vec<(&str, &dyn Store)> = session
        .fanout
        .members()
        .iter()
        .map(|m| (m.name.as_str(), m.store().as_ref()))
        .collect();
    let foreign = ForeignFound::default();
    for id in ReadBackend::list(&session.fanout, FileType::Key)? {
        let path = file_path(FileType::Key, &id);
        match read_proven(&path, &sources, Some(&proof), &foreign) {
            Ok((bytes, _)) => files.push((path, bytes)),
            Err(e) => observer_warn(&session, &format!("{path} not copied: {e}")),
        }
    }
    let mut targets = Vec::new();
    for p in &probed {
        let o = match (&p.probe, &p.store) {
            (Probe::Empty, Some(store)) => {
                let copied = store.create_dirs(&repository_dirs()).and_then(|()| {
                    // config last: a target counts as holding the repository only once its keys are there.
                    let mut bytes = 0;
                    for (f, c) in files.iter().rev() {
                        store.write(f, vec![c.clone()])?;
                        bytes += c.len() as u64;
                    }
                    Ok(bytes)
                });
                match copied {
                    Ok(bytes) => outcome(
                        p,
                        TargetState::Complete,
                        Some("repository added".into()),
                        bytes,
                        files.len() as u64,
                    ),
                    Err(e) => outcome(p, TargetState::Failed, Some(e.to_string()), 0, 0),
                }
            }
            (Probe::Ready { .. }, _) => outcome(
                p,
                TargetState::Complete,
                Some("already initialised".into()),
                0,
                0,
            ),
            _ => {
                let (state, why) = left_out(p);
                outcome(p, state, Some(why), 0, 0)
            }
        };
        targets.push(o);
    }
    Ok(InitReport {
        repository_id,
        created: false,
        targets,
    })
}

fn observer_warn(session: &Session, msg: &str) {
    session.fanout.observer().warn(msg);
}

/// `init` is the one command that creates a target's folder: a missing folder (of a kind that
/// has folders) is an empty target to it. A missing bucket or container stays unreachable.
fn creatable(mut p: Probed) -> Probed {
    if let Probe::Absent(_) = p.probe
        && matches!(
            p.cfg.kind,
            TargetKind::Local { .. } | TargetKind::Sftp { .. } | TargetKind::Smb { .. }
        )
    {
        p.probe = Probe::Empty;
    }
    p
}

fn create<P: ProgressBars>(
    ctx: &Context,
    probed: Vec<Probed>,
    password: &Secret,
    pb: P,
) -> Result<InitReport> {
    let empty: Vec<_> = probed
        .iter()
        .filter(|p| matches!(p.probe, Probe::Empty))
        .collect();
    if empty.is_empty() {
        let why: Vec<String> = probed
            .iter()
            .map(|p| format!("`{}`: {}", p.cfg.name, left_out(p).1))
            .collect();
        return Err(Error::NoTargetUsable(why.join("; ")));
    }
    let members: Vec<Arc<Member>> = empty
        .iter()
        .filter_map(|p| {
            Some(Arc::new(Member::new(
                p.cfg.name.clone(),
                p.cfg.required,
                p.store.clone()?,
            )))
        })
        .collect();
    let fanout = Fanout::new(members, ctx.observer().clone());
    let repo = Repository::new_with_progress(
        &RepositoryOptions::default().no_cache(true),
        &RepositoryBackends::new(Arc::new(fanout.clone()), None),
        pb,
    )?
    .init(
        &Credentials::password(password.expose()),
        // The first key is its operator's, like every key added later.
        &KeyOptions::default()
            .username(ctx.trail().operator())
            .hostname(gethostname::gethostname().to_string_lossy().into_owned())
            .with_created(true),
        &ConfigOptions::default()
            .set_version(2u32)
            .set_datapack_size(DATA_PACK_SIZE),
    )?;
    if let Some(id) = *repo.key_id() {
        ctx.keys().remember(password, id, repo.key());
    }
    let repository_id = repo.config().id.to_hex().to_string();
    // This machine knows the repository from now on: a target later found holding another
    // one is left out, not obeyed.
    let written = fanout
        .members()
        .iter()
        .filter(|m| m.failure().is_none())
        .find_map(|m| m.store().read("config").ok());
    if let Some(config) = written {
        ctx.update_state(|s| s.repository = Some(crate::layout::sha256_hex(&config)));
    }
    let targets = probed
        .iter()
        .map(|p| match &p.probe {
            Probe::Empty => match fanout.members().iter().find(|m| m.name == p.cfg.name) {
                Some(m) => match m.failure() {
                    Some(f) => outcome(p, TargetState::Failed, Some(f.to_string()), 0, 0),
                    None => outcome(
                        p,
                        TargetState::Complete,
                        None,
                        m.bytes_written(),
                        m.files_written(),
                    ),
                },
                None => outcome(
                    p,
                    TargetState::Unreachable,
                    Some("could not be opened".into()),
                    0,
                    0,
                ),
            },
            _ => {
                let (state, why) = left_out(p);
                outcome(p, state, Some(why), 0, 0)
            }
        })
        .collect();
    Ok(InitReport {
        repository_id,
        created: true,
        targets,
    })
}

/// The state and reason of a target that takes no part in creating the repository.
fn left_out(p: &Probed) -> (TargetState, String) {
    match &p.probe {
        Probe::Ready { .. } => (TargetState::Failed, "holds a repository".into()),
        // Empty, but its storage could not be opened for writing.
        Probe::Empty => (TargetState::Unreachable, "could not be opened".into()),
        _ => p
            .unusable()
            .unwrap_or((TargetState::Unreachable, String::new())),
    }
}
