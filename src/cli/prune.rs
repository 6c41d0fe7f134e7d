//! `cairn prune` (and the prune of `cairn forget --prune`).

use anyhow::Result;
use cairn::{
    ops::prune::{self, PruneOptions, PruneReport},
    report::human_bytes,
};

use super::{Ctx, label, write_exit};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Show what would be removed and repacked; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Unused data tolerated after pruning: a percentage of the repository (`5%`), a size
    /// (`1GiB`), or `unlimited`. `0` removes every unused byte (erasure).
    #[arg(long, default_value = "5%", value_name = "LIMIT")]
    max_unused: String,
    /// Data repacked at most: a size, a percentage, or `unlimited`.
    #[arg(long, default_value = "unlimited", value_name = "LIMIT")]
    max_repack: String,
}

impl Args {
    pub fn options(&self) -> PruneOptions {
        PruneOptions {
            max_unused: self.max_unused.clone(),
            max_repack: self.max_repack.clone(),
            dry_run: self.dry_run,
            purge: false,
        }
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let r = prune::run(&ctx.core, &pw, &args.options(), &ctx.reporter)?;
    if ctx.json {
        ctx.print_json(&r)?;
    } else {
        print_text(&r);
    }
    Ok(write_exit(r.partial))
}

pub fn print_text(r: &PruneReport) {
    let p = &r.plan;
    println!(
        "plan: {} unused pack(s) to remove, {} to repack, {} kept, {} not indexed; {} to remove, \
         {} to repack, {} unused kept",
        p.packs_unused,
        p.packs_repack,
        p.packs_keep,
        p.packs_unindexed,
        human_bytes(p.bytes_remove),
        human_bytes(p.bytes_repack),
        human_bytes(p.bytes_unused_kept)
    );
    if let Some(why) = &r.deferred {
        println!("prune deferred: {why}");
    } else if r.dry_run {
        println!("dry run: nothing was changed");
    } else if let Some(rec) = &r.record {
        println!("deletion recorded as {rec}");
    } else {
        println!("nothing to remove");
    }
    println!(
        "{:<16} {:<15} {:>8} {:>12} {:>12}  detail",
        "target", "state", "removed", "bytes", "written"
    );
    for t in &r.targets {
        println!(
            "{:<16} {:<15} {:>8} {:>12} {:>12}  {}",
            t.name,
            label(t.state),
            t.files_removed,
            human_bytes(t.bytes_removed),
            human_bytes(t.bytes_written),
            t.detail.as_deref().unwrap_or("")
        );
    }
}
