//! `cairn ls`.

use anyhow::Result;
use cairn::ops::ls;

use super::{Ctx, exit};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Snapshot: an id prefix, `latest`, or `@TIME` (the newest at or before: `@2026-11-17`,
    /// `@2026-11-17T22:00`), optionally with `:PATH` inside it.
    #[arg(default_value = "latest", value_parser = super::select::selector)]
    snapshot: cairn::selection::Selector,
    #[command(flatten)]
    filter: super::select::FilterArgs,
    /// Read from this target only.
    #[arg(long)]
    from: Option<String>,
    /// Show type, size and time.
    #[arg(short, long)]
    long: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    ls::run(
        &ctx.core,
        &pw,
        &args.filter.apply(args.snapshot),
        args.from.as_deref(),
        ctx.reporter.clone(),
        |e| {
            use std::io::Write;
            // One JSON object per line: a listing can be larger than memory.
            let r = if ctx.json {
                serde_json::to_string(&e)
                    .map_err(std::io::Error::other)
                    .and_then(|s| writeln!(out, "{s}"))
            } else if args.long {
                writeln!(
                    out,
                    "{:<8} {:>12} {:<30} {}",
                    e.kind,
                    e.size,
                    e.mtime.as_deref().unwrap_or("-"),
                    e.path.display()
                )
            } else {
                writeln!(out, "{}", e.path.display())
            };
            if let Err(err) = r {
                failed.get_or_insert(err);
            }
        },
    )?;
    match failed {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        Some(e) => Err(e.into()),
        None => Ok(exit::OK),
    }
}
