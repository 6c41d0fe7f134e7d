//! `cairn restore`.

use std::path::PathBuf;

use anyhow::Result;
use cairn::{
    error::Error,
    ops::restore::{self, RestoreOptionsCairn},
    report::human_bytes,
    session::password,
};

use super::{Ctx, exit, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot: an id prefix, `latest`, or `@TIME` (the newest at or before: `@2026-11-17`,
    /// `@2026-11-17T22:00`), optionally with `:PATH` inside it.
    #[arg(value_parser = super::select::selector)]
    snapshot: cairn::selection::Selector,
    #[command(flatten)]
    filter: super::select::FilterArgs,
    /// Destination folder.
    #[arg(long, short = 't')]
    target: PathBuf,
    /// Read from this target only (default: the first that answers).
    #[arg(long)]
    from: Option<String>,
    /// Replace files that already exist in the destination.
    #[arg(long)]
    overwrite: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = password(&ctx.cfg)?;
    let opts = RestoreOptionsCairn {
        selector: args.filter.apply(args.snapshot),
        dest: args.target,
        from: args.from,
        overwrite: args.overwrite,
    };
    let r =
        restore::run(&ctx.cfg, &pw, &opts, ctx.observer(), ctx.reporter.clone()).map_err(|e| {
            match e {
                Error::WouldOverwrite { .. } => anyhow::anyhow!(
                    "{e}. Use --overwrite to replace them, or restore into an empty folder"
                ),
                e => e.into(),
            }
        })?;
    if ctx.json {
        print_json(&r)?;
    } else {
        println!(
            "restored {} file(s), {} folder(s), {} to {}",
            r.files,
            r.dirs,
            human_bytes(r.bytes),
            r.dest.display()
        );
    }
    Ok(exit::OK)
}
