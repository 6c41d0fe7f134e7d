//! `cairn backup`: the configured sources to one snapshot, written once to every usable target.
//!
//! Policy when a target fails (see the README): a target that fails any write is dropped for
//! the rest of the run and gets no snapshot; the others complete. The run is *partially done*
//! when any required target is not complete (failed, offline, unreachable, lagging or not
//! initialised), and *failed* when no target received the snapshot.

use std::path::PathBuf;

use rustic_core::{
    BackupOptions as RusticBackupOptions, Excludes, LocalSourceFilterOptions, PathList,
    ProgressBars, SnapshotOptions,
};
use serde::Serialize;

use crate::{
    context::Context,
    error::{Error, Result},
    lock::LockedTargets,
    ops::{
        init,
        sync::{self, SyncTarget},
    },
    probe::Probe,
    replica::{Foreign, clean_tmp},
    report::{Cause, TargetOutcome, TargetState, is_partial},
    secret::Secret,
    source::{self, Unread, UnreadLog},
};

/// Options of one backup run, beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Extra tags for this snapshot.
    pub tags: Vec<String>,
    /// Host name to record (default: configuration, then this machine's).
    pub host: Option<String>,
    /// Create the repository first if no target holds one.
    pub init: bool,
    /// With `init`: create it even though a target that may hold it cannot be reached.
    pub force_new: bool,
    /// The snapshot's time instead of now ([`parse_time`]), as restic's `--time`: for importing
    /// history, and for testing retention over years of snapshots.
    pub time: Option<jiff::Zoned>,
}

/// A snapshot time as given on the command line: RFC 3339 (`2024-01-21T14:15:23Z`,
/// `2024-01-21T14:15:23+01:00`) or restic's `2024-01-21 14:15:23`, in this machine's time zone.
///
/// # Errors
/// [`Error::Input`] saying which forms are understood.
pub fn parse_time(s: &str) -> Result<jiff::Zoned> {
    let t = parse_any_time(s)?;
    // A snapshot from the future would be `latest`, and the parent of every later backup.
    if t.timestamp() > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1) {
        return Err(Error::Usage(format!(
            "time {s:?} lies in the future: the snapshot would stay `latest` and the parent \
             of every later backup"
        )));
    }
    Ok(t)
}

fn parse_any_time(s: &str) -> Result<jiff::Zoned> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.to_zoned(jiff::tz::TimeZone::system()));
    }
    s.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|t| t.to_zoned(jiff::tz::TimeZone::system()).ok())
        .ok_or_else(|| {
            Error::Input(format!(
                "time {s:?}: expected `YYYY-MM-DD HH:MM:SS` (this machine's time zone) or RFC \
                 3339 such as `2024-01-21T14:15:23Z`"
            ))
        })
}

/// Why source entries are not in the snapshot: entries that share it are one cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadCause {
    /// What went wrong, without the path and figures of one entry.
    pub what: String,
}

/// Groups the entries a backup could not read by what went wrong.
#[must_use]
pub fn unread_causes(unread: &[Unread]) -> Vec<Cause<UnreadCause>> {
    crate::report::causes(unread.iter().map(|u| {
        let path = u.path.to_string_lossy();
        let what = if path.is_empty() {
            u.error.clone()
        } else {
            u.error.replace(path.as_ref(), "…")
        };
        let key = UnreadCause {
            what: crate::report::template(&what).0,
        };
        (key, (!path.is_empty()).then(|| path.into_owned()))
    }))
}

/// What a backup did.
#[derive(Debug, Serialize)]
pub struct BackupReport {
    /// The new snapshot's id.
    pub snapshot: String,
    /// The parent snapshot whose unchanged files were not read again.
    pub parent: Option<String>,
    /// Files seen for the first time.
    pub files_new: u64,
    /// Files changed since the parent.
    pub files_changed: u64,
    /// Files unchanged since the parent (not read).
    pub files_unmodified: u64,
    /// Bytes of all files in the snapshot.
    pub bytes_total: u64,
    /// New data, before compression.
    pub bytes_new: u64,
    /// New data as stored (compressed, encrypted), written to each target.
    pub bytes_new_stored: u64,
    /// Seconds the backup took.
    pub duration_secs: f64,
    /// Targets that were behind and were brought level (or could not be) before the backup.
    pub caught_up: Vec<SyncTarget>,
    /// Files found foreign by the catch-up (not proven; quarantined where possible).
    pub foreign: Vec<Foreign>,
    /// Whether some required target is not complete.
    pub partial: bool,
    /// Whether some source entries are missing from the snapshot (or saved inconsistently).
    pub incomplete: bool,
    /// Those entries, each with what went wrong.
    pub unread: Vec<Unread>,
    /// Those entries grouped by what went wrong (a folder of files the job may not read is
    /// one cause).
    pub unread_causes: Vec<Cause<UnreadCause>>,
    /// Every target's outcome.
    pub targets: Vec<TargetOutcome>,
    /// Snapshots from before a purge that came back with a target and were purged again
    /// (`cairn backup`; `cairn run` does it as a step of its own).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub purged_again: Vec<super::purge::PurgeReport>,
}

/// Backs up the configured sources, holding the repository lock ([`crate::lock`]) throughout.
///
/// # Errors
/// A source is missing; no target holds the repository; wrong password; every target failed.
pub fn run<P: ProgressBars + Clone>(
    ctx: &Context,
    password: &Secret,
    opts: &BackupOptions,
    pb: P,
) -> Result<BackupReport> {
    let cfg = ctx.cfg();
    let observer = ctx.observer().clone();
    let started = std::time::Instant::now();
    let sources = check_sources(&cfg.backup.sources)?;
    // A target that missed earlier runs (the USB disk plugged in again, a server back up), or
    // lost files, is brought level first from the others (listings compared, copies
    // verified): it then takes part in this backup.
    let mut locked = LockedTargets::acquire(ctx, "backup")?;
    // Holding the lock, what sits in the temporary folders is left over from an interrupted
    // run (or from a holder that lost its lock, whose rename then fails harmlessly).
    for p in locked.probed() {
        if let (Probe::Ready { .. }, Some(store)) = (&p.probe, &p.store)
            && let Ok(n) = clean_tmp(store.as_ref())
            && n > 0
        {
            observer.warn(&format!(
                "`{}`: removed {n} temporary file(s) left by an interrupted run",
                p.cfg.name
            ));
        }
    }
    // The key proves what catch-up copies; without a repository anywhere there is nothing to
    // prove (and `--init` may create one below).
    locked.prove(password)?;
    // Without a repository on any reachable target there is nothing to catch up.
    let catch_up = if locked.proof().is_some() {
        sync::run(&locked, None, cfg.retention.records_for(), &observer, &pb)
    } else {
        Err(Error::NoRepository)
    };
    let (caught_up, foreign) = match catch_up {
        Ok(r) => (
            r.targets
                .into_iter()
                .filter(|t| matches!(t.state, TargetState::CaughtUp | TargetState::Incomplete))
                .collect(),
            r.foreign,
        ),
        Err(Error::NoRepository) => (Vec::new(), Vec::new()),
        Err(e) => {
            observer.warn(&format!("catch-up skipped: {e}"));
            (Vec::new(), Vec::new())
        }
    };
    // A target still holding a foreign file it could not move aside takes no part: its listing
    // would feed that file to rustic_core.
    let untrusted: Vec<(String, String)> = foreign
        .iter()
        .filter(|f| !f.quarantined)
        .map(|f| {
            (
                f.target.clone(),
                format!(
                    "holds {}, which is foreign ({}) and could not be quarantined",
                    f.path, f.why
                ),
            )
        })
        .collect();
    // The probes still hold unless catch-up changed a target.
    if !caught_up.is_empty() || !foreign.is_empty() {
        locked.reprobe()?;
    }
    let (session, locked) = match locked.writer(&untrusted) {
        Err(Error::NoRepository | Error::NoTargetUsable(_))
            if opts.init && locked.proof().is_none() =>
        {
            // `init` may create folders the lock could not cover yet: it takes the lock itself,
            // then this run takes it again over what now exists.
            drop(locked);
            init::run(ctx, password, opts.force_new, pb.clone())?;
            let mut locked = LockedTargets::acquire(ctx, "backup")?;
            locked.prove(password)?;
            (locked.writer(&[])?, locked)
        }
        other => (other?, locked),
    };
    let proof = locked.proof().ok_or(Error::NoRepository)?;
    let repo = session.archiving_repository(proof, pb)?.to_indexed_ids()?;

    let mut globs: Vec<String> = cfg
        .backup
        .excludes
        .iter()
        .map(|g| format!("!{g}"))
        .collect();
    globs.sort();
    let rustic_opts = RusticBackupOptions::default()
        .excludes(Excludes::default().globs(globs))
        .ignore_filter_opts(
            LocalSourceFilterOptions::default()
                .exclude_if_present(cfg.backup.exclude_if_present.clone())
                .one_file_system(cfg.backup.one_file_system),
        );
    let mut snap_opts = SnapshotOptions::default();
    if let Some(host) = opts.host.clone().or_else(|| cfg.repository.host.clone()) {
        snap_opts = snap_opts.host(host);
    }
    let tags: Vec<String> = cfg.backup.tags.iter().chain(&opts.tags).cloned().collect();
    if !tags.is_empty() {
        snap_opts = snap_opts.add_tags(&tags.join(","))?;
    }
    snap_opts.time.clone_from(&opts.time);
    let snap = snap_opts.to_snapshot()?;
    let paths = PathList::from_iter(sources)
        .sanitize()
        .map_err(|e| Error::Input(e.to_string()))?;

    let unread = UnreadLog::default();
    let src = source::local(&rustic_opts, &paths.paths(), unread.clone())?;
    observer.writing_to(session.fanout.members());
    let result = repo.archive(&rustic_opts, &src, snap, &paths.paths());
    session.fanout.settle();
    observer.writing_done();
    let snap = result?;
    let unread = unread.take();
    let unread_causes = unread_causes(&unread);
    for c in &unread_causes {
        observer.warn(&format!(
            "not backed up: {}",
            c.describe(&c.key.what, "entry")
        ));
    }

    let targets = session.outcomes();
    let snapshot = snap.id.to_hex().to_string();
    let s = snap.summary.clone().unwrap_or_default();
    if s.files_new + s.files_changed + s.files_unmodified == 0 {
        observer.warn(
            "the snapshot holds no file: every source entry was excluded, or the sources are \
             empty",
        );
    }
    ctx.update_state(|st| {
        st.record_backup(&snapshot, started.elapsed().as_secs_f64(), &targets);
    });
    ctx.trail().snapshot(&snapshot);
    ctx.trail().bytes(s.data_added_packed);
    Ok(BackupReport {
        snapshot,
        parent: snap.parent.map(|p| p.to_hex().to_string()),
        files_new: s.files_new,
        files_changed: s.files_changed,
        files_unmodified: s.files_unmodified,
        bytes_total: s.total_bytes_processed,
        bytes_new: s.data_added,
        bytes_new_stored: s.data_added_packed,
        duration_secs: s.backup_duration,
        // A target whose catch-up (copies or deletions) failed is behind, even when written.
        partial: is_partial(&targets) || is_partial(&caught_up),
        incomplete: !unread.is_empty(),
        unread,
        unread_causes,
        caught_up,
        foreign,
        targets,
        purged_again: Vec::new(),
    })
}

/// Every source must exist before anything is written, so a typo never yields a snapshot
/// that silently lacks a folder.
fn check_sources(sources: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if sources.is_empty() {
        return Err(Error::Usage(
            "no sources configured: [backup] key `sources` is empty or missing; name the \
             folders to back up"
                .into(),
        ));
    }
    for s in sources {
        std::fs::symlink_metadata(s)
            .map_err(|e| Error::Input(format!("source {}: {e}", s.display())))?;
        // A link whose target is gone cannot be backed up as a source (rustic_core resolves
        // each source path first).
        if std::fs::canonicalize(s).is_err() {
            return Err(Error::Input(format!(
                "source {} is a symbolic link to {}, which does not exist",
                s.display(),
                std::fs::read_link(s).map_or_else(|_| "?".into(), |t| t.display().to_string())
            )));
        }
    }
    Ok(sources.to_vec())
}
