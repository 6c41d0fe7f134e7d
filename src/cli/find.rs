//! `cairn find`.

use anyhow::Result;
use cairn::{
    ops::find::{self, FindOptions},
    selection::{self, Spec},
};

use super::{Ctx, exit, select::FilterArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Glob patterns: `*.pdf`, `Vertrag*`; with a `/`, matched against the whole path
    /// (`/srv/**/acme/*.docx`).
    #[arg(required = true)]
    patterns: Vec<String>,
    /// Match regardless of case.
    #[arg(short = 'i', long)]
    ignore_case: bool,
    /// Search only this snapshot (repeatable): an id prefix, `latest` or `@TIME`.
    #[arg(long = "snapshot", value_name = "SNAPSHOT", value_parser = |s: &str| s.parse::<Spec>().map_err(|e| e.to_string()))]
    snapshots: Vec<Spec>,
    /// Search only the N newest snapshots.
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Only files modified at or after this time (`2026-11-01`, `2026-11-01T08:00`).
    #[arg(long, value_name = "TIME", value_parser = |s: &str| selection::parse_time(s).map_err(|e| e.to_string()))]
    oldest: Option<jiff::Timestamp>,
    /// Only files modified at or before this time.
    #[arg(long, value_name = "TIME", value_parser = |s: &str| selection::parse_time(s).map_err(|e| e.to_string()))]
    newest: Option<jiff::Timestamp>,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let opts = FindOptions {
        patterns: args.patterns,
        ignore_case: args.ignore_case,
        snapshots: args.snapshots,
        filter: args.filter.filter(),
        last: args.last,
        oldest: args.oldest,
        newest: args.newest,
    };
    let mut found = Vec::new();
    let mut last_snapshot = String::new();
    let r = find::run(&ctx.core, &pw, &opts, ctx.reporter.clone(), |f| {
        if ctx.json {
            found.push(f);
            return;
        }
        if f.snapshot != last_snapshot {
            println!("snapshot {} of {}", &f.snapshot[..8], f.snapshot_time);
            last_snapshot.clone_from(&f.snapshot);
        }
        println!(
            "  {:<8} {:>12} {:<26} {}",
            f.kind,
            f.size,
            f.mtime.as_deref().map_or("-", |m| m.get(..19).unwrap_or(m)),
            f.path
        );
    })?;
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "matches": found, "summary": r }))?;
    } else {
        println!(
            "{} match(es) in {} snapshot(s) searched",
            r.matches, r.snapshots_searched
        );
    }
    Ok(exit::OK)
}
