//! `cairn find`: which snapshots hold files matching a pattern, newest snapshot first.

use globset::{Glob, GlobBuilder, GlobMatcher};
use jiff::Timestamp;
use rustic_core::{LsOptions, ProgressBars};
use serde::Serialize;

use crate::{
    context::Context,
    error::{Error, Result},
    secret::Secret,
    selection::{self, Filter, Spec},
    session::Session,
};

/// What to look for, and where.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    /// Glob patterns (`*.pdf`, `contracts/**/acme*`); a pattern without `/` matches file names,
    /// one with `/` the whole path.
    pub patterns: Vec<String>,
    /// Match regardless of case.
    pub ignore_case: bool,
    /// Only these snapshots (default: all that the filter keeps).
    pub snapshots: Vec<Spec>,
    /// Filters for the snapshots searched.
    pub filter: Filter,
    /// Only the N newest of them.
    pub last: Option<usize>,
    /// Only files modified at or after this.
    pub oldest: Option<Timestamp>,
    /// Only files modified at or before this.
    pub newest: Option<Timestamp>,
}

/// One match.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The snapshot's id.
    pub snapshot: String,
    /// Its time.
    pub snapshot_time: String,
    /// The path in it (absolute, as backed up).
    pub path: String,
    /// `file`, `dir`, `symlink`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes (files).
    pub size: u64,
    /// Modification time, if recorded.
    pub mtime: Option<String>,
}

/// What was searched.
#[derive(Debug, Clone, Serialize)]
pub struct FindReport {
    /// Snapshots searched.
    pub snapshots_searched: usize,
    /// Matches found.
    pub matches: usize,
}

/// Calls `each` for every match, newest snapshot first.
///
/// # Errors
/// A malformed pattern; no such snapshot; wrong password; no target usable.
pub fn run<P: ProgressBars>(
    ctx: &Context,
    password: &Secret,
    opts: &FindOptions,
    pb: P,
    mut each: impl FnMut(Found),
) -> Result<FindReport> {
    let matchers = opts
        .patterns
        .iter()
        .map(|p| {
            let glob: Glob = GlobBuilder::new(p)
                .case_insensitive(opts.ignore_case)
                .literal_separator(true)
                .build()
                .map_err(|e| Error::Input(format!("pattern {p:?}: {e}")))?;
            Ok((p.contains('/'), glob.compile_matcher()))
        })
        .collect::<Result<Vec<(bool, GlobMatcher)>>>()?;
    if matchers.is_empty() {
        return Err(Error::Input("give at least one pattern".into()));
    }
    let session = Session::open(ctx, None, password)?;
    let repo = session.repository(password, pb)?.to_indexed()?;
    let all = repo.get_all_snapshots()?;
    let mut snaps: Vec<_> = if opts.snapshots.is_empty() {
        all.iter()
            .filter(|s| opts.filter.keeps(s))
            .cloned()
            .collect()
    } else {
        opts.snapshots
            .iter()
            .map(|spec| selection::pick(&all, spec, &opts.filter).cloned())
            .collect::<Result<_>>()?
    };
    snaps.sort_by(|a, b| b.time.cmp(&a.time));
    snaps.dedup_by(|a, b| a.id == b.id);
    if let Some(n) = opts.last {
        snaps.truncate(n);
    }
    let mut matches = 0;
    for snap in &snaps {
        let root = repo.node_from_snapshot_and_path(snap, "")?;
        for item in repo.ls(&root, &LsOptions::default().recursive(true))? {
            let (path, node) = item?;
            let full = format!("/{}", path.display());
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let hit = matchers.iter().any(|(whole, m)| {
                if *whole {
                    m.is_match(&full) || m.is_match(full.trim_start_matches('/'))
                } else {
                    name.as_deref().is_some_and(|n| m.is_match(n))
                }
            });
            let mtime = node.meta.mtime;
            let in_time = mtime.is_none_or(|t| {
                opts.oldest.is_none_or(|o| t >= o) && opts.newest.is_none_or(|n| t <= n)
            });
            if !hit || !in_time {
                continue;
            }
            matches += 1;
            each(Found {
                snapshot: snap.id.to_hex().to_string(),
                snapshot_time: snap.time.timestamp().to_string(),
                path: full,
                kind: super::ls::kind(&node.node_type),
                size: node.meta.size,
                mtime: mtime.map(|t| t.to_string()),
            });
        }
    }
    Ok(FindReport {
        snapshots_searched: snaps.len(),
        matches,
    })
}
