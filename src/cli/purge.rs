//! `cairn purge`.

use anyhow::Result;
use cairn::ops::purge::{self, PurgeOptions};

use super::{Ctx, write_exit};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// List the snapshots and paths affected; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Why, for the erasure certificate ("request of 2026-12-01 by acme's DPO").
    #[arg(long, value_name = "TEXT", default_value = "request")]
    reason: String,
    /// Paths to remove from every snapshot: a pattern without `/` matches a name anywhere, one
    /// with `/` a whole path (`/srv/clients/acme/hr/j.jansen`); a folder goes with all it holds.
    #[arg(required = true, value_name = "PATTERN")]
    patterns: Vec<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let opts = PurgeOptions {
        patterns: args.patterns,
        dry_run: args.dry_run,
        reason: args.reason,
        only: None,
    };
    let r = purge::run(&ctx.core, &pw, &opts, &ctx.reporter)?;
    if ctx.json {
        ctx.print_json(&r)?;
        return Ok(write_exit(r.partial || !(r.complete || r.dry_run)));
    }
    if r.snapshots.is_empty() {
        println!(
            "no snapshot holds a path matching {}",
            r.patterns.join(", ")
        );
        return Ok(write_exit(false));
    }
    for s in &r.snapshots {
        println!(
            "{} {} -> {}: {} file(s) under {}",
            &s.id[..8],
            s.time,
            s.rewritten_as
                .as_deref()
                .map_or("(not rewritten)", |n| &n[..8]),
            s.files,
            s.paths.join(", ")
        );
    }
    if r.dry_run {
        println!(
            "dry run: {} snapshot(s) would be rewritten without these paths; nothing was changed",
            r.snapshots.len()
        );
        return Ok(write_exit(false));
    }
    println!(
        "{} chunk(s) in the purged files: {} removed, {} kept because kept files hold the same \
         bytes",
        r.chunks,
        r.chunks - r.kept_chunks.len(),
        r.kept_chunks.len()
    );
    for k in &r.kept_chunks {
        println!(
            "  kept {} (held by {} in {})",
            &k.chunk[..8],
            k.kept_by,
            &k.snapshot[..8]
        );
    }
    for c in &r.index_check {
        let verdict = match (c.checked, c.still_indexed.len(), c.still_in_packs.len()) {
            (true, 0, 0) => format!(
                "no purged chunk in any index file or in any of its {} pack(s)",
                c.packs_checked
            ),
            (true, i, p) => format!(
                "{i} purged chunk(s) still indexed, {p} still in a pack (obeyed at its next \
                 catch-up)"
            ),
            (false, _, _) => format!(
                "not checked: {}",
                c.detail.as_deref().unwrap_or("not reachable")
            ),
        };
        println!("{:<16} {verdict}", c.name);
    }
    if let Some(c) = &r.certificate {
        let state = c.done.as_deref().map_or_else(
            || "pending until every target has obeyed".to_string(),
            |t| format!("final {t}"),
        );
        println!("certificate {} ({state}; `cairn erasures`)", c.id);
    }
    Ok(write_exit(r.partial || !r.complete))
}
