//! `cairn restore`: a snapshot, or a path inside it, into a folder, from one chosen target or
//! from whichever target answers. Existing files are never overwritten unless asked.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustic_core::{LocalDestination, LsOptions, ProgressBars, RestoreOptions, repofile::NodeType};
use serde::Serialize;

use crate::{
    config::Config,
    destination,
    error::{Error, Result},
    progress::Observer,
    report::TargetOutcome,
    secret::Secret,
    selection::{self, Selector},
    session::Session,
};

/// Options of one restore.
#[derive(Debug, Clone)]
pub struct RestoreOptionsCairn {
    /// The snapshot and path.
    pub selector: Selector,
    /// Destination folder (created if missing).
    pub dest: PathBuf,
    /// Read only from this target.
    pub from: Option<String>,
    /// Replace files that already exist in the destination.
    pub overwrite: bool,
}

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct RestoreReport {
    /// Files restored.
    pub files: u64,
    /// Folders restored.
    pub dirs: u64,
    /// Bytes of the restored files.
    pub bytes: u64,
    /// Where.
    pub dest: PathBuf,
    /// Targets' states (which were readable).
    pub targets: Vec<TargetOutcome>,
}

/// Restores files.
///
/// # Errors
/// Files would be overwritten without `overwrite`; no such snapshot or path; no target usable.
pub fn run<P: ProgressBars>(
    cfg: &Config,
    password: &Secret,
    opts: &RestoreOptionsCairn,
    observer: Arc<dyn Observer>,
    pb: P,
) -> Result<RestoreReport> {
    let session = Session::open(cfg, opts.from.as_deref(), observer)?;
    let repo = session.repository(password, pb)?.to_indexed()?;
    let (_, node) = selection::node(&repo, &opts.selector)?;
    let ls_opts = LsOptions::default().recursive(true);
    let is_file = !node.is_dir();

    // Every name and path of the plan is checked before anything is written.
    let dest_dir = destination::resolve(if is_file {
        opts.dest.parent().unwrap_or(Path::new("."))
    } else {
        &opts.dest
    })?;
    let dest_root = if is_file {
        dest_dir.join(opts.dest.file_name().unwrap_or_default())
    } else {
        dest_dir
    };
    let (mut files, mut dirs, mut bytes) = (0, 0, 0);
    let mut conflicts = Vec::new();
    let mut seen = destination::Seen::default();
    let mut plan = Vec::new();
    for item in repo.ls(&node, &ls_opts)? {
        let (path, n) = item?;
        destination::check_name(&n.name())?;
        destination::check_relative(&path)?;
        seen.add(&path)?;
        let target = dest_path(&dest_root, &path, is_file);
        plan.push((path.clone(), n.is_symlink()));
        match n.node_type {
            NodeType::Dir => dirs += 1,
            _ => {
                files += 1;
                bytes += n.meta.size;
                if target.symlink_metadata().is_ok() {
                    conflicts.push(target);
                }
            }
        }
    }
    if !opts.overwrite && !conflicts.is_empty() {
        let shown: Vec<String> = conflicts
            .iter()
            .take(5)
            .map(|p| p.display().to_string())
            .collect();
        return Err(Error::WouldOverwrite {
            count: conflicts.len(),
            examples: shown.join(", "),
        });
    }
    if !is_file {
        for (path, is_link) in &plan {
            destination::clear_way(&dest_root, path, *is_link, opts.overwrite)?;
        }
    } else if dest_root.is_symlink() {
        destination::clear_way(
            dest_root.parent().unwrap_or(Path::new("/")),
            Path::new(dest_root.file_name().unwrap_or_default()),
            false,
            opts.overwrite,
        )?;
    }
    drop(plan);
    let dest_str = dest_root.to_string_lossy();
    let dest = LocalDestination::new(&dest_str, true, is_file)?;
    // With --overwrite, an existing file is compared by content, not only by size and mtime.
    let ropts = RestoreOptions::default().verify_existing(opts.overwrite);
    let plan = repo.prepare_restore(&ropts, repo.ls(&node, &ls_opts)?, &dest, false)?;
    repo.restore(plan, &ropts, repo.ls(&node, &ls_opts)?, &dest)?;
    Ok(RestoreReport {
        files,
        dirs,
        bytes,
        dest: opts.dest.clone(),
        targets: session.outcomes(),
    })
}

fn dest_path(dest: &Path, path: &Path, is_file: bool) -> PathBuf {
    if is_file {
        dest.to_path_buf()
    } else {
        dest.join(path)
    }
}
