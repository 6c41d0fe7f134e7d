//! `cairn init`: the same repository on every target.
//!
//! With no repository anywhere, a new one is created on every reachable target at once through
//! the fan-out. When some targets already hold it (a target was added, or was offline at the
//! first init), its `config` and key files are copied byte for byte to the empty ones, after
//! the password has been checked against it. A target holding a different repository is refused.

use std::{collections::BTreeSet, sync::Arc};

use rustic_core::{
    ConfigOptions, Credentials, FileType, KeyOptions, ProgressBars, ReadBackend, Repository,
    RepositoryBackends, RepositoryOptions,
};
use serde::Serialize;

use crate::{
    config::Config,
    error::{Error, Result},
    fanout::{Fanout, Member, file_path, repository_dirs},
    progress::Observer,
    replica::hash_matches,
    report::{TargetOutcome, TargetState},
    secret::Secret,
    session::{Mode, Probe, Session, outcome, probe_all},
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

/// Creates the repository, or extends it to targets that lack it.
///
/// # Errors
/// Two targets hold different repositories; the password does not open the existing one; no
/// target could be written.
pub fn run<P: ProgressBars>(
    cfg: &Config,
    password: &Secret,
    observer: Arc<dyn Observer>,
    pb: P,
) -> Result<InitReport> {
    let probed = probe_all(cfg, None)?;
    let configs: BTreeSet<&[u8]> = probed
        .iter()
        .filter_map(|p| match &p.probe {
            Probe::Ready { config, .. } => Some(&config[..]),
            _ => None,
        })
        .collect();
    if configs.is_empty() {
        return create(probed, password, observer, pb);
    }
    // Opening checks both the gate (one repository only) and the password.
    let session = Session::from_probed(probed.clone(), Vec::new(), Mode::Read, observer)?;
    let repo = session.repository(password, pb)?;
    let repository_id = repo.config().id.to_hex().to_string();
    let source = session.fanout.members()[0].store().clone();
    let mut files = vec!["config".to_string()];
    files.extend(
        ReadBackend::list(&session.fanout, FileType::Key)?
            .into_iter()
            .map(|id| file_path(FileType::Key, &id)),
    );
    let mut contents = Vec::new();
    for f in &files {
        let bytes = source.read(f).map_err(|e| Error::Target {
            target: session.fanout.members()[0].name.clone(),
            message: e.to_string(),
        })?;
        // Key files are named by their hash: never spread a damaged copy.
        if !hash_matches(f, &bytes) {
            return Err(Error::Target {
                target: session.fanout.members()[0].name.clone(),
                message: format!("{f} does not match its hash; refusing to copy it"),
            });
        }
        contents.push(bytes);
    }
    let mut targets = Vec::new();
    for p in &probed {
        let o = match (&p.probe, &p.store) {
            (Probe::Empty, Some(store)) => {
                let copied = store.create_dirs(&repository_dirs()).and_then(|()| {
                    // config last: a target counts as holding the repository only once its keys are there.
                    let mut bytes = 0;
                    for (f, c) in files.iter().zip(&contents).rev() {
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
            (probe, _) => {
                let (state, why) = unusable(probe);
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

fn create<P: ProgressBars>(
    probed: Vec<crate::session::Probed>,
    password: &Secret,
    observer: Arc<dyn Observer>,
    pb: P,
) -> Result<InitReport> {
    let empty: Vec<_> = probed
        .iter()
        .filter(|p| matches!(p.probe, Probe::Empty))
        .collect();
    if empty.is_empty() {
        let why: Vec<String> = probed
            .iter()
            .map(|p| format!("`{}`: {}", p.cfg.name, unusable(&p.probe).1))
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
    let fanout = Fanout::new(members, observer);
    let repo = Repository::new_with_progress(
        &RepositoryOptions::default().no_cache(true),
        &RepositoryBackends::new(Arc::new(fanout.clone()), None),
        pb,
    )?
    .init(
        &Credentials::password(password.expose()),
        &KeyOptions::default(),
        &ConfigOptions::default().set_version(2u32),
    )?;
    let repository_id = repo.config().id.to_hex().to_string();
    let targets = probed
        .iter()
        .map(|p| match &p.probe {
            Probe::Empty => match fanout.members().iter().find(|m| m.name == p.cfg.name) {
                Some(m) => match m.failure() {
                    Some(f) => outcome(p, TargetState::Failed, Some(f), 0, 0),
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
            other => {
                let (state, why) = unusable(other);
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

/// The state and reason of a target that cannot take part.
fn unusable(p: &Probe) -> (TargetState, String) {
    match p {
        Probe::Offline(m) => (TargetState::Offline, m.clone()),
        Probe::Unreachable(m) => (TargetState::Unreachable, m.clone()),
        Probe::Ready { .. } => (TargetState::Failed, "holds a repository".into()),
        Probe::Empty => (TargetState::Unreachable, "could not be opened".into()),
    }
}
