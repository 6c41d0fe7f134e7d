//! `cairn restore`: a snapshot, or a path inside it, into a folder, from one chosen target or
//! from whichever target answers. Existing files are never overwritten unless asked.

pub(crate) mod files;

use std::{
    collections::HashSet,
    io::Read,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use rustic_core::{
    IndexedFull, LocalDestination, LsOptions, Progress, ProgressBars, ProgressType, Repository,
    RestoreOptions,
    repofile::{Node, NodeType},
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    context::Context,
    destination,
    error::{Error, Result},
    report::TargetOutcome,
    secret::Secret,
    selection::{self, Patterns, Selector},
    session::Session,
    verified::Contents,
};

/// What to do with a file that already exists in the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overwrite {
    /// Restore nothing if any file exists (the default: nothing is replaced by surprise).
    #[default]
    Refuse,
    /// Leave existing files as they are; restore the others.
    Never,
    /// Replace an existing file only if its content differs (read and compared).
    IfChanged,
    /// Replace every existing file.
    Always,
}

impl std::str::FromStr for Overwrite {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "never" => Ok(Self::Never),
            "if-changed" => Ok(Self::IfChanged),
            "always" => Ok(Self::Always),
            _ => Err(format!("{s:?}: expected never, if-changed or always")),
        }
    }
}

/// Options of one restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptionsCairn {
    /// The snapshot and path.
    pub selector: Selector,
    /// Destination folder (created if missing).
    pub dest: PathBuf,
    /// Read only from this target.
    pub from: Option<String>,
    /// Existing files in the destination.
    pub overwrite: Overwrite,
    /// Restore only entries matching one of these globs (a name, or with `/` a whole path).
    pub include: Vec<String>,
    /// Leave out entries matching one of these globs (a folder with all it holds).
    pub exclude: Vec<String>,
    /// Say what would be written; write nothing.
    pub dry_run: bool,
    /// Read every restored file back and compare it with the snapshot.
    pub verify: bool,
}

/// What a restore did (or, with `dry_run`, would do).
#[derive(Debug, Serialize)]
pub struct RestoreReport {
    /// Files restored (or to be).
    pub files: u64,
    /// Folders restored.
    pub dirs: u64,
    /// Bytes of the restored files.
    pub bytes: u64,
    /// Of the files, how many existed in the destination already.
    pub existing: u64,
    /// Existing files left as they were (`--overwrite never`).
    pub skipped: u64,
    /// Existing files found identical to the snapshot by content and kept, not rewritten
    /// (`--overwrite if-changed`).
    pub unchanged: u64,
    /// Entries left out by `--include`/`--exclude`.
    pub filtered_out: u64,
    /// Nothing was written.
    pub dry_run: bool,
    /// Files read back and found identical to the snapshot (`--verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<u64>,
    /// Files that differ from the snapshot after the restore (`--verify`), with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<String>,
    /// Where.
    pub dest: PathBuf,
    /// Seconds the restore took (with `--verify`, the reading back too).
    pub seconds: f64,
    /// Targets' states (which were readable).
    pub targets: Vec<TargetOutcome>,
}

/// rustic_core's progress, with the restore's bar naming how many files it writes (rustic_core
/// counts only bytes; the files are known once the plan is made).
#[derive(Debug, Clone)]
struct Titled<P> {
    inner: P,
    files: Arc<AtomicU64>,
    /// Set once the contents are written: the metadata pass shows no bar of its own.
    quiet: Arc<AtomicBool>,
}

impl<P: ProgressBars> ProgressBars for Titled<P> {
    fn progress(&self, kind: ProgressType, prefix: &str) -> Progress {
        if self.quiet.load(Ordering::Relaxed) {
            return Progress::hidden();
        }
        let files = self.files.load(Ordering::Relaxed);
        if matches!(kind, ProgressType::Bytes) && files > 0 {
            let s = if files == 1 { "" } else { "s" };
            return self
                .inner
                .progress(kind, &format!("restoring {files} file{s}"));
        }
        self.inner.progress(kind, prefix)
    }
}

/// Refuses a destination inside a local target's folder, whatever `--overwrite` says: a restore
/// there would overwrite the repository (its `config`, its packs), and `check --heal` would
/// then remove what was restored.
///
/// # Errors
/// [`Error::Usage`] naming the target.
pub fn refuse_target_folder(cfg: &crate::config::Config, dest: &Path, what: &str) -> Result<()> {
    match cfg.target_holding(dest) {
        Some(t) => Err(Error::Usage(format!(
            "{what} {} is inside the folder of target `{}`: restoring there would overwrite \
             the repository; nothing was written. Choose a folder outside every target",
            dest.display(),
            t.name
        ))),
        None => Ok(()),
    }
}

/// Restores files.
///
/// # Errors
/// Files would be overwritten with [`Overwrite::Refuse`]; no such snapshot or path; a bad
/// pattern; no target usable.
pub fn run<P: ProgressBars>(
    ctx: &Context,
    password: &Secret,
    opts: &RestoreOptionsCairn,
    pb: P,
) -> Result<RestoreReport> {
    let observer = ctx.observer().clone();
    refuse_target_folder(ctx.cfg(), &opts.dest, "--target")?;
    let include = Patterns::new(&opts.include)?;
    let exclude = Patterns::new(&opts.exclude)?;
    let started = Instant::now();
    let session = Session::open(ctx, opts.from.as_deref(), password)?;
    let planned = Arc::new(AtomicU64::new(0));
    let quiet = Arc::new(AtomicBool::new(false));
    let pb = Titled {
        inner: pb,
        files: planned.clone(),
        quiet: quiet.clone(),
    };
    let repo = session.repository(password, pb)?.to_indexed()?;
    let (_, node) = selection::node(&repo, &opts.selector, ctx.trail())?;
    let ls_opts = LsOptions::default().recursive(true);
    let is_file = !node.is_dir();
    let base = Path::new("/").join(opts.selector.path.trim_start_matches('/'));

    // Every name and path of the plan is checked before anything is written; a dry run creates
    // not even the destination.
    let dest_parent = if is_file {
        opts.dest.parent().unwrap_or(Path::new("."))
    } else {
        &opts.dest
    };
    let dest_dir = if opts.dry_run {
        std::fs::canonicalize(dest_parent)
            .or_else(|_| std::path::absolute(dest_parent))
            .map_err(|source| Error::Io {
                path: dest_parent.to_path_buf(),
                source,
            })?
    } else {
        destination::resolve(dest_parent)?
    };
    let dest_root = if is_file {
        dest_dir.join(opts.dest.file_name().unwrap_or_default())
    } else {
        dest_dir
    };
    let mut seen = destination::Seen::default();
    // First pass: what is kept, by the patterns; a folder is kept for what it holds.
    let mut kept: HashSet<PathBuf> = HashSet::new();
    let mut excluded_dirs: Vec<PathBuf> = Vec::new();
    let mut included_dirs: Vec<PathBuf> = Vec::new();
    let mut filtered_out = 0;
    let mut entries: Vec<(PathBuf, bool, bool, u64)> = Vec::new();
    for item in repo.ls(&node, &ls_opts)? {
        let (path, n) = item?;
        destination::check_name(&n.name())?;
        destination::check_relative(&path)?;
        seen.add(&path)?;
        let full = if is_file {
            base.clone()
        } else {
            base.join(&path)
        };
        if excluded_dirs.iter().any(|d| path.starts_with(d)) || exclude.matches(&full) {
            if n.is_dir() {
                excluded_dirs.push(path);
            }
            filtered_out += 1;
            continue;
        }
        let wanted = opts.include.is_empty()
            || included_dirs.iter().any(|d| path.starts_with(d))
            || include.matches(&full);
        if n.is_dir() {
            if wanted && !opts.include.is_empty() {
                included_dirs.push(path.clone());
            }
            // Kept if wanted, or later for a file it holds.
            if wanted {
                kept.insert(path.clone());
            }
            entries.push((path, true, n.is_symlink(), 0));
            continue;
        }
        if !wanted {
            filtered_out += 1;
            continue;
        }
        for a in path.ancestors().skip(1) {
            if !a.as_os_str().is_empty() && !kept.contains(a) {
                kept.insert(a.to_path_buf());
            }
        }
        kept.insert(path.clone());
        entries.push((path, false, n.is_symlink(), n.meta.size));
    }
    let (mut files, mut dirs, mut bytes, mut existing, mut skipped) = (0, 0, 0, 0, 0);
    let mut conflicts = Vec::new();
    let mut left_as_they_are = Vec::new();
    for (path, is_dir, _, size) in &entries {
        if !kept.contains(path) {
            if *is_dir {
                filtered_out += 1;
            }
            continue;
        }
        if *is_dir {
            dirs += 1;
            continue;
        }
        let target = dest_path(&dest_root, path, is_file);
        if target.symlink_metadata().is_ok() {
            existing += 1;
            if opts.overwrite == Overwrite::Never {
                skipped += 1;
                left_as_they_are.push(path.clone());
                continue;
            }
            conflicts.push(target);
        }
        files += 1;
        bytes += size;
    }
    for path in &left_as_they_are {
        kept.remove(path);
    }
    // The usual whole restore: no listing needs filtering again.
    let all_kept = filtered_out == 0 && left_as_they_are.is_empty();
    if !opts.include.is_empty() && files + skipped + dirs == 0 {
        return Err(Error::Usage(format!(
            "--include {} matches nothing in the snapshot; nothing was restored",
            opts.include.join(", ")
        )));
    }
    if opts.overwrite == Overwrite::Refuse && !conflicts.is_empty() {
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
    planned.store(files, Ordering::Relaxed);
    let mut report = RestoreReport {
        seconds: 0.0,
        files,
        dirs,
        bytes,
        existing,
        skipped,
        unchanged: 0,
        filtered_out,
        dry_run: opts.dry_run,
        verified: None,
        mismatches: Vec::new(),
        dest: opts.dest.clone(),
        targets: session.outcomes(),
    };
    if opts.dry_run {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let replace = matches!(opts.overwrite, Overwrite::IfChanged | Overwrite::Always);
    if is_file {
        if dest_root.is_symlink() {
            destination::clear_way(
                dest_root.parent().unwrap_or(Path::new("/")),
                Path::new(dest_root.file_name().unwrap_or_default()),
                false,
                replace,
            )?;
        }
    } else {
        for (path, _, is_link, _) in entries.iter().filter(|e| kept.contains(&e.0)) {
            destination::clear_way(&dest_root, path, *is_link, replace)?;
        }
    }
    if opts.overwrite == Overwrite::Always {
        // rustic_core keeps a file whose size and mtime match: `always` means rewritten.
        for t in &conflicts {
            if t.is_file() {
                std::fs::remove_file(t).map_err(|source| Error::Io {
                    path: t.clone(),
                    source,
                })?;
            }
        }
    }
    drop(entries);
    let dest_str = dest_root.to_string_lossy();
    let dest = LocalDestination::new(&dest_str, true, is_file)?;
    let chosen = || -> Result<_> {
        Ok(repo
            .ls(&node, &ls_opts)?
            .filter(|r| all_kept || r.as_ref().map_or(true, |(p, _)| kept.contains(p))))
    };
    observer.writing_to(&[]);
    let contents = Contents::new(&session.fanout, &repo.key()).map_err(Error::Input)?;
    let if_changed = opts.overwrite == Overwrite::IfChanged;
    let written = files::write_all(
        &repo,
        &contents,
        chosen()?,
        (&dest_root, is_file),
        bytes,
        if_changed,
    );
    quiet.store(true, Ordering::Relaxed);
    // Then rustic_core for the rest: folders, links, special files, hard links, files with
    // extended attributes, and their metadata. It takes a written file (size and mtime as in
    // the snapshot) as there; the files finished above it never sees.
    let restored = written.and_then(|unchanged| {
        report.unchanged = unchanged;
        let rest = || -> Result<_> {
            Ok(chosen()?.filter(|r| r.as_ref().map_or(true, |(_, n)| !files::finished_here(n))))
        };
        let mopts = RestoreOptions::default();
        let (listing, again) = (rest()?, rest()?);
        Ok(repo
            .prepare_restore(&mopts, listing, &dest, false)
            .and_then(|plan| repo.restore(plan, &mopts, again, &dest))?)
    });
    observer.writing_done();
    restored?;
    ctx.trail().bytes(bytes);
    #[cfg(feature = "test-hooks")]
    tamper(&dest_root);
    if opts.verify {
        let mut verified = 0;
        for item in chosen()? {
            let (path, n) = item?;
            if n.node_type != NodeType::File {
                continue;
            }
            let target = dest_path(&dest_root, &path, is_file);
            match same_as_snapshot(&repo, &n, &target) {
                Ok(()) => verified += 1,
                Err(why) => report
                    .mismatches
                    .push(format!("{}: {why}", target.display())),
            }
        }
        report.verified = Some(verified);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Crash tests only (`test-hooks`): `CAIRN_TEST_TAMPER_RESTORED=REL` flips the first byte of the
/// restored file REL before `--verify` reads it back, as a failing disk or another process would.
#[cfg(feature = "test-hooks")]
fn tamper(dest_root: &Path) {
    if let Ok(rel) = std::env::var("CAIRN_TEST_TAMPER_RESTORED") {
        let p = dest_root.join(rel);
        if let Ok(mut b) = std::fs::read(&p)
            && let Some(first) = b.first_mut()
        {
            *first ^= 1;
            let _ = std::fs::write(&p, b);
        }
    }
}

/// Whether the file at `path` holds exactly the node's content: read once, each chunk hashed
/// against its id (the chunk lengths come from the index; no repository data is read).
fn same_as_snapshot<S: IndexedFull>(
    repo: &Repository<S>,
    node: &Node,
    path: &Path,
) -> std::result::Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut total = 0u64;
    for id in node.content.iter().flatten() {
        let entry = repo
            .get_index_entry(id)
            .map_err(|e| crate::error::rustic_words(&e))?;
        let len = entry.location.uncompressed_length.map_or(
            entry.location.length.saturating_sub(32),
            std::num::NonZeroU32::get,
        );
        buf.resize(len as usize, 0);
        f.read_exact(&mut buf)
            .map_err(|_| format!("shorter than in the snapshot ({total} bytes)"))?;
        if rustic_core::Id::new(Sha256::digest(&buf).into()) != **id {
            return Err(format!("content differs at byte {total}"));
        }
        total += u64::from(len);
    }
    let mut rest = [0u8; 1];
    if f.read(&mut rest).map_err(|e| e.to_string())? > 0 {
        return Err(format!("longer than in the snapshot ({total} bytes)"));
    }
    Ok(())
}

fn dest_path(dest: &Path, path: &Path, is_file: bool) -> PathBuf {
    if is_file {
        dest.to_path_buf()
    } else {
        dest.join(path)
    }
}
