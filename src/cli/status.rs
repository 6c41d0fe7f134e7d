//! `cairn status`.

use anyhow::Result;
use cairn::ops::status;

use super::{Ctx, exit, label};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: Args) -> Result<i32> {
    // With the password (when one is configured), deletions still pending are shown. Not in an
    // overview of several repositories: each key derivation (restic's scrypt) costs about a
    // third of a second and 128 MiB; `--repo NAME` shows them.
    let pw = if ctx.among_several {
        None
    } else {
        ctx.core.password().ok()
    };
    let r = status::run(&ctx.core, pw.as_ref())?;
    if ctx.json {
        ctx.print_json(&r)?;
    } else {
        println!(
            "{:<16} {:<7} {:<16} {:>9} {:>8} {:>8}  {:<10} {:<26} {:<26} last error",
            "target",
            "kind",
            "now",
            "snapshots",
            "missing",
            "pending",
            "last snap",
            "complete at",
            "lagging since"
        );
        for t in &r.targets {
            let state = label(t.state);
            let rec = &t.recorded;
            let short = |s: &Option<String>| {
                s.as_deref()
                    .map_or("-", |s| &s[..s.len().min(8)])
                    .to_string()
            };
            let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
            println!(
                "{:<16} {:<7} {:<16} {:>9} {:>8} {:>8}  {:<10} {:<26} {:<26} {}",
                t.name,
                t.kind,
                state,
                t.snapshots,
                t.missing_files,
                t.pending_deletions
                    .map_or_else(|| "?".to_string(), |n| n.to_string()),
                short(&rec.last_complete_snapshot),
                or_dash(&rec.last_complete_at),
                or_dash(&rec.lagging_since),
                t.detail
                    .clone()
                    .or_else(|| rec.last_error.clone())
                    .unwrap_or_default(),
            );
        }
    }
    if !ctx.json
        && let Some(h) = &r.locked_by
    {
        println!("locked by {}", h.describe());
    }
    if !ctx.json
        && let Some(d) = &r.prune_deferred
    {
        println!(
            "prune deferred since {}: removes nothing until every target is back; waiting for {}",
            d.since,
            d.waiting_for.join(", ")
        );
    }
    if !ctx.json {
        println!("{}", r.rule.line());
        if let Some(w) = &r.contract_warning {
            println!("{w}");
        }
        for t in &r.targets {
            if let Some(line) = t.held_back() {
                println!("{}: {line}", t.name);
            }
        }
    }
    // Status reports; it fails only if a required target cannot be used or is behind.
    let behind = cairn::report::is_partial(&r.targets);
    Ok(if behind { exit::PARTIAL } else { exit::OK })
}
