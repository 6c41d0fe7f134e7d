//! `cairn diff`.

use anyhow::Result;
use cairn::{ops::diff, report::human_bytes, selection::Selector};

use super::{Ctx, exit, select::FilterArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The first snapshot (id prefix, `latest`, `@TIME`), optionally with `:PATH`.
    #[arg(value_parser = super::select::selector)]
    from: Selector,
    /// The second.
    #[arg(value_parser = super::select::selector)]
    to: Selector,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let r = diff::run(
        &ctx.core,
        &pw,
        &args.filter.apply(args.from),
        &args.filter.apply(args.to),
        ctx.reporter.clone(),
    )?;
    if ctx.json {
        ctx.print_json(&r)?;
        return Ok(exit::OK);
    }
    println!("comparing snapshot {} to {}:", &r.from[..8], &r.to[..8]);
    for c in &r.changes {
        let dir = if c.kind == "dir" { "/" } else { "" };
        println!("{}    {}{dir}", c.change.mark(), c.path);
    }
    println!(
        "\n{} added, {} removed, {} modified, {} metadata only, {} type changed; {} added, {} \
         removed",
        r.added,
        r.removed,
        r.modified,
        r.metadata,
        r.type_changed,
        human_bytes(r.bytes_added),
        human_bytes(r.bytes_removed)
    );
    Ok(exit::OK)
}
