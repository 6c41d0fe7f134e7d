//! `cairn snapshots`: every snapshot, and which targets hold it.

use std::collections::BTreeMap;

use rustic_core::{FileType, Id, ProgressBars, repofile::SnapshotFile};
use serde::Serialize;

use crate::{
    context::Context,
    error::Result,
    fanout::list_type,
    probe::unusable_by,
    report::{TargetOutcome, is_partial},
    secret::Secret,
    session::Session,
};

/// One snapshot.
#[derive(Debug, Serialize)]
pub struct SnapshotRow {
    /// Full id.
    pub id: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// Host it was taken on.
    pub host: String,
    /// Paths backed up.
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Bytes of all files in it.
    pub bytes: u64,
    /// Names of the targets holding its snapshot file.
    pub targets: Vec<String>,
}

/// Snapshots and the state of every target.
#[derive(Debug, Serialize)]
pub struct SnapshotsReport {
    /// Oldest first.
    pub snapshots: Vec<SnapshotRow>,
    /// Whether a required target could not be listed (the table may then be incomplete).
    pub partial: bool,
    /// Every target's state.
    pub targets: Vec<TargetOutcome>,
}

/// Lists snapshots across targets.
///
/// # Errors
/// No target holds the repository; wrong password.
pub fn run<P: ProgressBars>(ctx: &Context, password: &Secret, pb: P) -> Result<SnapshotsReport> {
    let session = Session::open(ctx, None, password)?;
    let repo = session.repository(password, pb)?;

    // Which target holds which snapshot file.
    let mut holders: BTreeMap<Id, Vec<String>> = BTreeMap::new();
    let mut unlisted = Vec::new();
    for m in session.fanout.members() {
        match list_type(m.store().as_ref(), FileType::Snapshot) {
            Ok(ids) => ids
                .into_iter()
                .for_each(|(id, _)| holders.entry(id).or_default().push(m.name.clone())),
            Err(e) => unlisted.push((m.name.clone(), e)),
        }
    }
    // Read through the fan-out: a snapshot only some targets hold is read from one of them; one
    // a deletion record deletes is not listed, whoever still holds it.
    let mut snaps: Vec<SnapshotFile> = repo.get_all_snapshots()?;
    snaps.sort_by(|a, b| a.time.cmp(&b.time));
    let snapshots = snaps
        .into_iter()
        .map(|s| SnapshotRow {
            id: s.id.to_hex().to_string(),
            time: s.time.timestamp().to_string(),
            host: s.hostname.clone(),
            paths: s.paths.iter().cloned().collect(),
            tags: s.tags.iter().cloned().collect(),
            bytes: s.summary.as_ref().map_or(0, |x| x.total_bytes_processed),
            targets: holders.remove(&*s.id).unwrap_or_default(),
        })
        .collect();
    let mut targets = session.outcomes();
    for (name, e) in unlisted {
        if let Some(t) = targets.iter_mut().find(|t| t.name == name) {
            let (state, why) = unusable_by(&e);
            t.state = state;
            t.detail = Some(why);
        }
    }
    Ok(SnapshotsReport {
        snapshots,
        partial: is_partial(&targets),
        targets,
    })
}
