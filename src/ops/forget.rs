//! `cairn forget`: remove snapshots by retention policy (restic's rules, [`crate::retention`])
//! or by id, on every reachable target, through a deletion record ([`crate::deletion`]).
//!
//! Order: the lock; the snapshots every target holds, less those already deleted; the verdict;
//! then one record naming the snapshot files is written to every reachable target, and only a
//! target holding the record loses the files. A target that is away gets the record (and obeys
//! it) at its next catch-up, so it can never bring the snapshots back. The data the snapshots
//! referenced stays until `prune`.

use rustic_core::NoProgressBars;
use serde::Serialize;

use crate::{
    context::Context,
    deletion::{self, Record, Recorded},
    error::{Error, Result},
    lock::LockedTargets,
    probe::{Probe, Probed},
    report::{TargetState, is_partial},
    retention::{self, GroupBy, GroupVerdict, Policy, Snap},
    secret::Secret,
    session::{Mode, Session},
    store::Named,
};

/// What to forget.
#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    /// Rules that override `[retention]`'s.
    pub policy: Policy,
    /// Overrides `[retention] group_by`.
    pub group_by: Option<GroupBy>,
    /// Forget exactly these snapshots (ids or unique prefixes) instead of applying the policy.
    pub ids: Vec<String>,
    /// Decide and report, remove nothing.
    pub dry_run: bool,
}

/// One target's part.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetTarget {
    /// Target name.
    pub name: String,
    /// Whether it is required.
    pub required: bool,
    /// `complete` when it holds the record and lost the snapshot files.
    pub state: TargetState,
    /// Snapshot files removed from it.
    pub snapshots_removed: usize,
    /// Why not, if not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

crate::outcome_fields!(ForgetTarget);

/// What a forget decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    /// The policy applied, in restic's words (`None` when ids were given).
    pub policy: Option<String>,
    /// Every group, newest snapshot first, each snapshot with its verdict.
    pub groups: Vec<GroupVerdict>,
    /// Ids of the snapshots removed (or, with `dry_run`, that would be).
    pub removed: Vec<String>,
    /// Nothing was removed on purpose.
    pub dry_run: bool,
    /// The deletion record written (its repository path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Every target.
    pub targets: Vec<ForgetTarget>,
    /// Whether a required target did not take part (it obeys at its next catch-up).
    pub partial: bool,
}

/// Decides which snapshots go and removes them everywhere reachable, holding the lock.
///
/// # Errors
/// An empty policy; an unknown or ambiguous id; no repository; wrong password; the lock is
/// held; the record reached no target.
pub fn run(ctx: &Context, password: &Secret, opts: &ForgetOptions) -> Result<ForgetReport> {
    let cfg = ctx.cfg();
    let observer = ctx.observer().clone();
    let policy = cfg.retention.policy().overridden_by(&opts.policy);
    if opts.ids.is_empty() && policy.is_empty() {
        return Err(Error::Input(
            "the retention policy keeps nothing: set keep_* under [retention] or give --keep-* \
             (or name the snapshots to forget)"
                .into(),
        ));
    }
    let mut locked = LockedTargets::acquire(ctx, "forget")?;
    locked.prove(password)?;
    let proof = locked.proof().ok_or(Error::NoRepository)?;
    let session = Session::from_probed(ctx, locked.probed().to_vec(), Vec::new(), Mode::Read, &[])?;
    let repo = session.reader(proof, NoProgressBars)?;
    let snaps: Vec<Snap> = repo
        .get_all_snapshots()?
        .into_iter()
        .map(|s| Snap {
            id: s.id.to_hex().to_string(),
            time: s.time.clone(),
            host: s.hostname.clone(),
            paths: s.paths.iter().cloned().collect(),
            tags: s.tags.iter().cloned().collect(),
        })
        .collect();

    let (policy_text, groups) = if opts.ids.is_empty() {
        let group_by = opts.group_by.unwrap_or(cfg.retention.group_by);
        let groups = retention::apply(snaps, &policy, group_by, jiff::Timestamp::now());
        (Some(policy.describe()), groups)
    } else {
        (None, by_id(snaps, &opts.ids)?)
    };
    let removed: Vec<String> = groups
        .iter()
        .flat_map(|g| &g.snapshots)
        .filter(|v| !v.keep)
        .map(|v| v.id.clone())
        .collect();

    let mut report = ForgetReport {
        policy: policy_text,
        groups,
        removed,
        dry_run: opts.dry_run,
        record: None,
        targets: Vec::new(),
        partial: false,
    };
    if opts.dry_run || report.removed.is_empty() {
        report.targets = locked
            .probed()
            .iter()
            .map(|p| target(p, TargetState::Level, 0, None))
            .collect();
        return Ok(report);
    }

    let record = Record::new(
        "forget",
        report
            .removed
            .iter()
            .map(|id| format!("snapshots/{id}"))
            .collect(),
    );
    let reachable: Vec<(usize, Named<'_>)> = locked
        .probed()
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.probe, Probe::Ready { .. }))
        .filter_map(|(i, p)| Some((i, (p.cfg.name.as_str(), p.store.as_deref()?))))
        .collect();
    let stores: Vec<Named<'_>> = reachable.iter().map(|(_, s)| *s).collect();
    let (record_path, results) =
        deletion::record_and_remove(&stores, &record, proof, Recorded::Each)
            .map_err(Error::Input)?;
    if results.iter().all(Result::is_err) {
        let why: Vec<String> = stores
            .iter()
            .zip(&results)
            .filter_map(|((n, _), r)| r.as_ref().err().map(|e| format!("`{n}`: {e}")))
            .collect();
        return Err(Error::NoTargetUsable(format!(
            "the deletion was recorded nowhere, nothing was removed: {}",
            why.join("; ")
        )));
    }
    report.record = Some(record_path);
    for id in &report.removed {
        ctx.trail().snapshot(id);
    }
    report.targets = locked
        .probed()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            match reachable
                .iter()
                .position(|(j, _)| *j == i)
                .map(|k| &results[k])
            {
                Some(Ok(n)) => target(p, TargetState::Complete, n.files, n.left_note()),
                Some(Err(e)) => {
                    observer.target_failed(&p.cfg.name, e);
                    target(p, TargetState::Failed, 0, Some(e.clone()))
                }
                None => {
                    let (state, why) = p
                        .unusable()
                        .unwrap_or((TargetState::Unreachable, "not reachable".into()));
                    target(
                        p,
                        state,
                        0,
                        Some(format!("{why}; obeys the deletion at its next catch-up")),
                    )
                }
            }
        })
        .collect();
    report.partial = is_partial(&report.targets);
    Ok(report)
}

fn target(p: &Probed, state: TargetState, removed: usize, detail: Option<String>) -> ForgetTarget {
    let (state, detail) = match (state, p.unusable()) {
        (TargetState::Level, Some((s, why))) => (s, Some(why)),
        _ => (state, detail),
    };
    ForgetTarget {
        name: p.cfg.name.clone(),
        required: p.cfg.required,
        state,
        snapshots_removed: removed,
        detail,
    }
}

/// One group holding every snapshot, those named by `ids` (unique prefixes) to go.
fn by_id(snaps: Vec<Snap>, ids: &[String]) -> Result<Vec<GroupVerdict>> {
    let mut gone = std::collections::BTreeSet::new();
    for want in ids {
        let hits: Vec<&Snap> = snaps
            .iter()
            .filter(|s| s.id.starts_with(want.as_str()))
            .collect();
        match hits.as_slice() {
            [one] => {
                gone.insert(one.id.clone());
            }
            [] => {
                return Err(Error::Input(format!(
                    "no snapshot `{want}` (see `cairn snapshots`)"
                )));
            }
            _ => {
                return Err(Error::Input(format!(
                    "snapshot id `{want}` is ambiguous ({} snapshots start with it)",
                    hits.len()
                )));
            }
        }
    }
    let mut snapshots: Vec<retention::Verdict> = snaps
        .into_iter()
        .filter(|s| gone.contains(&s.id))
        .map(|s| retention::Verdict {
            keep: false,
            reasons: Vec::new(),
            time: s.time.timestamp().to_string(),
            id: s.id,
            host: s.host,
            paths: s.paths,
            tags: s.tags,
        })
        .collect();
    snapshots.sort_by(|a, b| b.time.cmp(&a.time));
    Ok(vec![GroupVerdict {
        host: None,
        paths: None,
        tags: None,
        snapshots,
    }])
}
