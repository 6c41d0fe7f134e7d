//! `cairn forget`: restic's layout, then the targets.

use anyhow::Result;
use cairn::{
    ops::{
        forget::{self, ForgetOptions, ForgetReport},
        prune::{self, PruneOptions},
    },
    retention::{GroupBy, Policy, Verdict, Within},
};

use super::{Ctx, exit, label, write_exit};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Forget exactly these snapshots (ids or unique prefixes) instead of applying the policy.
    ids: Vec<String>,
    /// Show what would be removed; remove nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Then prune (with prune's defaults) if any snapshot was removed.
    #[arg(long)]
    prune: bool,
    /// Keep the newest N snapshots (overrides `[retention]`, as do the other --keep-*).
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// ... of each of the last N days.
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// ... of each of the last N weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// ... of each of the last N months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// ... of each of the last N years.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Keep every snapshot within this duration of the newest: `3y`, `1y6m`, `30d`, `36h`.
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<Within>,
    /// Keep every snapshot with all of these tags (`a,b`; repeatable).
    #[arg(long = "keep-tag", value_name = "TAGS")]
    keep_tags: Vec<String>,
    /// Group by these fields: `host`, `paths`, `tags`, comma-separated (`""`: one group).
    #[arg(long, value_name = "FIELDS")]
    group_by: Option<GroupBy>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let opts = ForgetOptions {
        policy: Policy {
            keep_last: args.keep_last,
            keep_hourly: args.keep_hourly,
            keep_daily: args.keep_daily,
            keep_weekly: args.keep_weekly,
            keep_monthly: args.keep_monthly,
            keep_yearly: args.keep_yearly,
            keep_within: args.keep_within,
            keep_tags: args.keep_tags,
        },
        group_by: args.group_by,
        ids: args.ids,
        dry_run: args.dry_run,
    };
    let r = forget::run(&ctx.core, &pw, &opts)?;
    // The forget is done whatever the prune does: its report is never hidden by a prune error.
    let pruned = (args.prune && !args.dry_run && !r.removed.is_empty())
        .then(|| prune::run(&ctx.core, &pw, &PruneOptions::default(), &ctx.reporter));
    let prune_failed = match &pruned {
        Some(Err(e)) => Some(exit::for_error(e)),
        _ => None,
    };
    if ctx.json {
        // The forget report, with the prune's under `prune` (null without --prune).
        let mut v = serde_json::to_value(&r)?;
        v["prune"] = match &pruned {
            Some(Ok(p)) => serde_json::to_value(p)?,
            Some(Err(e)) => serde_json::json!({ "error": format!("{e:#}") }),
            None => serde_json::Value::Null,
        };
        ctx.print_json(&v)?;
    } else {
        print_text(&r);
        if let Some(Ok(p)) = &pruned {
            super::prune::print_text(p);
        }
    }
    if let Some(Err(e)) = &pruned {
        eprintln!("error: prune: {e:#}");
    }
    Ok(prune_failed
        .unwrap_or_else(|| write_exit(r.partial || matches!(&pruned, Some(Ok(p)) if p.partial))))
}

fn print_text(r: &ForgetReport) {
    if let Some(p) = &r.policy {
        println!("Applying Policy: {p}");
    }
    for g in &r.groups {
        if r.groups.len() > 1 {
            let mut parts = Vec::new();
            if let Some(h) = &g.host {
                parts.push(format!("host [{h}]"));
            }
            if let Some(p) = &g.paths {
                parts.push(format!("paths [{}]", p.join(", ")));
            }
            if let Some(t) = &g.tags {
                parts.push(format!("tags [{}]", t.join(", ")));
            }
            println!("snapshots for ({}):", parts.join(", "));
        }
        let keep: Vec<&Verdict> = g.snapshots.iter().filter(|v| v.keep).collect();
        let remove: Vec<&Verdict> = g.snapshots.iter().filter(|v| !v.keep).collect();
        if !keep.is_empty() {
            println!("keep {} snapshots:", keep.len());
            table(&keep, true);
        }
        if !remove.is_empty() {
            println!("remove {} snapshots:", remove.len());
            table(&remove, false);
        }
    }
    if r.dry_run {
        println!(
            "dry run: would remove {} snapshot(s); nothing was removed",
            r.removed.len()
        );
        return;
    }
    if r.removed.is_empty() {
        println!("nothing to remove");
        return;
    }
    println!(
        "removed {} snapshot(s); deletion recorded as {}",
        r.removed.len(),
        r.record.as_deref().unwrap_or("-")
    );
    println!("{:<16} {:<15} {:>9}  detail", "target", "state", "removed");
    for t in &r.targets {
        println!(
            "{:<16} {:<15} {:>9}  {}",
            t.name,
            label(t.state),
            t.snapshots_removed,
            t.detail.as_deref().unwrap_or("")
        );
    }
}

/// restic's table: oldest first, with the reasons when kept.
fn table(rows: &[&Verdict], reasons: bool) {
    let width = |f: &dyn Fn(&Verdict) -> String, min: usize| {
        rows.iter().map(|v| f(v).len()).max().unwrap_or(0).max(min)
    };
    let host_w = width(&|v| v.host.clone(), 10);
    let tags_w = width(&|v| v.tags.join(","), 10);
    let why_w = width(&|v| v.reasons.join(", "), 7);
    let head = if reasons {
        format!(
            "{:<9} {:<20} {:<host_w$}  {:<tags_w$}  {:<why_w$}  Paths",
            "ID", "Time", "Host", "Tags", "Reasons"
        )
    } else {
        format!(
            "{:<9} {:<20} {:<host_w$}  {:<tags_w$}  Paths",
            "ID", "Time", "Host", "Tags"
        )
    };
    let rule = "-".repeat(head.len() + 8);
    println!("{head}\n{rule}");
    for v in rows.iter().rev() {
        let time = v.time.get(..19).unwrap_or(&v.time).replace('T', " ");
        let why = if reasons {
            format!("{:<why_w$}  ", v.reasons.join(", "))
        } else {
            String::new()
        };
        println!(
            "{:<9} {:<20} {:<host_w$}  {:<tags_w$}  {why}{}",
            &v.id[..8.min(v.id.len())],
            time,
            v.host,
            v.tags.join(","),
            v.paths.join(", ")
        );
    }
    println!("{rule}\n{} snapshots\n", rows.len());
}
