//! `cairn diff`: what changed between two snapshots (or a path in them).

use std::{collections::BTreeMap, path::PathBuf};

use rustic_core::{
    LsOptions, ProgressBars,
    repofile::{Node, NodeType},
};
use serde::Serialize;

use crate::{
    context::Context,
    error::Result,
    secret::Secret,
    selection::{self, Selector},
    session::Session,
};

/// How an entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Only in the second snapshot.
    Added,
    /// Only in the first.
    Removed,
    /// Its content changed (a file's data, a symlink's target).
    Modified,
    /// Only its metadata changed (mode, owner, modification time).
    Metadata,
    /// A file became a folder, or the like.
    Type,
}

impl Change {
    /// restic's one-letter mark: `+`, `-`, `M`, `U`, `T`.
    #[must_use]
    pub fn mark(self) -> char {
        match self {
            Self::Added => '+',
            Self::Removed => '-',
            Self::Modified => 'M',
            Self::Metadata => 'U',
            Self::Type => 'T',
        }
    }
}

/// One changed entry.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    /// How.
    pub change: Change,
    /// Its path (absolute, as backed up).
    pub path: String,
    /// `file`, `dir`, `symlink`, ... (in the second snapshot, or the first if removed).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its size in the first snapshot (files).
    pub size_before: Option<u64>,
    /// Its size in the second.
    pub size_after: Option<u64>,
}

/// Every change, and totals.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// The first snapshot's id.
    pub from: String,
    /// The second's.
    pub to: String,
    /// Entries added.
    pub added: usize,
    /// Entries removed.
    pub removed: usize,
    /// Entries whose content changed.
    pub modified: usize,
    /// Entries whose metadata only changed.
    pub metadata: usize,
    /// Entries whose type changed.
    pub type_changed: usize,
    /// Bytes of files added (and of the new versions of modified files).
    pub bytes_added: u64,
    /// Bytes of files removed (and of the old versions of modified files).
    pub bytes_removed: u64,
    /// Every change, by path.
    pub changes: Vec<Changed>,
}

/// Compares `a` and `b` (each `SNAPSHOT[:PATH]`).
///
/// # Errors
/// No such snapshot or path; wrong password; no target usable.
pub fn run<P: ProgressBars>(
    ctx: &Context,
    password: &Secret,
    a: &Selector,
    b: &Selector,
    pb: P,
) -> Result<DiffReport> {
    let session = Session::open(ctx, None, password)?;
    let repo = session.repository(password, pb)?.to_indexed()?;
    let (sa, na) = selection::node(&repo, a, ctx.trail())?;
    let (sb, nb) = selection::node(&repo, b, ctx.trail())?;
    let list = |node: &Node, base: &str| -> Result<BTreeMap<PathBuf, Node>> {
        let mut out = BTreeMap::new();
        if node.is_dir() {
            for item in repo.ls(node, &LsOptions::default().recursive(true))? {
                let (path, n) = item?;
                out.insert(PathBuf::from(base).join(path), n);
            }
        } else {
            out.insert(PathBuf::from(base), node.clone());
        }
        Ok(out)
    };
    // Both sides under the same names: the first side's path, so `A:/x B:/y` compares x with y.
    let base = if a.path.is_empty() { "/" } else { &a.path };
    let before = list(&na, base)?;
    let after = list(&nb, base)?;
    let mut r = DiffReport {
        from: sa.id.to_hex().to_string(),
        to: sb.id.to_hex().to_string(),
        added: 0,
        removed: 0,
        modified: 0,
        metadata: 0,
        type_changed: 0,
        bytes_added: 0,
        bytes_removed: 0,
        changes: Vec::new(),
    };
    let size = |n: &Node| (n.node_type == NodeType::File).then_some(n.meta.size);
    let mut paths: Vec<&PathBuf> = before.keys().chain(after.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let (old, new) = (before.get(path), after.get(path));
        let change = match (old, new) {
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (Some(o), Some(n)) => match compare(o, n) {
                Some(c) => c,
                None => continue,
            },
            (None, None) => continue,
        };
        let shown = new.or(old).map(kind).unwrap_or_default();
        let (sb, sa) = (old.and_then(size), new.and_then(size));
        match change {
            Change::Added => r.added += 1,
            Change::Removed => r.removed += 1,
            Change::Modified => r.modified += 1,
            Change::Metadata => r.metadata += 1,
            Change::Type => r.type_changed += 1,
        }
        if change != Change::Metadata {
            r.bytes_added += sa.unwrap_or(0);
            r.bytes_removed += sb.unwrap_or(0);
        }
        r.changes.push(Changed {
            change,
            path: path.display().to_string(),
            kind: shown,
            size_before: sb,
            size_after: sa,
        });
    }
    Ok(r)
}

/// How `o` became `n`, if it changed. A folder's own metadata changes whenever its content does,
/// so only its mode and owner count.
fn compare(o: &Node, n: &Node) -> Option<Change> {
    if std::mem::discriminant(&o.node_type) != std::mem::discriminant(&n.node_type) {
        return Some(Change::Type);
    }
    if o.content != n.content || o.node_type != n.node_type || o.meta.size != n.meta.size {
        return Some(Change::Modified);
    }
    let (a, b) = (&o.meta, &n.meta);
    let owner = a.mode != b.mode || a.uid != b.uid || a.gid != b.gid;
    (owner || (!o.is_dir() && a.mtime != b.mtime)).then_some(Change::Metadata)
}

fn kind(n: &Node) -> String {
    super::ls::kind(&n.node_type)
}
