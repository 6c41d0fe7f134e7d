//! Sources, targets and restore folders that must not overlap: a target inside a source stores
//! the repository inside itself at every backup, a source inside a target backs the repository
//! up, two names for one folder make one copy look like two (and lock each other out), and a
//! restore into a target's folder overwrites the repository. Folders are compared as they
//! resolve on this machine (symlinks followed as far as the path exists).

use std::path::{Path, PathBuf};

use super::{TargetConfig, TargetKind};

/// `path` with symlinks resolved as far as it exists, the rest appended as written: two
/// spellings of one folder (`/t`, `/t/`, a link to it) come out equal.
#[must_use]
pub fn real_path(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return rest.iter().rev().fold(real, |p, n| p.join(n));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
}

/// The folder of a local target, resolved.
pub(super) fn folder(t: &TargetConfig) -> Option<PathBuf> {
    match &t.kind {
        TargetKind::Local { path, .. } => Some(real_path(path)),
        _ => None,
    }
}

/// Whether `inner` is `outer` or below it.
pub(super) fn within(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

/// Whether an exclude pattern leaves out the folder `dir` whole (`DIR`, `DIR/` or `DIR/**`).
pub(super) fn excluded(excludes: &[String], dir: &Path) -> bool {
    excludes.iter().any(|g| {
        let g = g.trim_end_matches("/**").trim_end_matches('/');
        Path::new(g) == dir || real_path(Path::new(g)) == dir
    })
}
