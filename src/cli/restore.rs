//! `cairn restore`.

use std::path::PathBuf;

use anyhow::Result;
use cairn::{
    error::Error,
    ops::restore::{self, Overwrite, RestoreOptionsCairn},
    report::human_bytes,
};

use super::{Ctx, exit};

#[derive(Debug, Clone, clap::Args)]
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
    /// Files that already exist in the destination: `never` (leave them), `if-changed`
    /// (replace those whose content differs; `--overwrite` alone), `always`. Without it,
    /// nothing is restored if any exists.
    #[arg(long, value_name = "MODE", num_args = 0..=1, default_missing_value = "if-changed")]
    overwrite: Option<Overwrite>,
    /// Restore only entries matching this glob (repeatable): a name (`*.pdf`), or with `/` a
    /// whole path in the snapshot (`/srv/clients/acme/**`).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave out entries matching this glob (repeatable); a folder with all it holds.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Show what would be restored, with totals; write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Read every restored file back and compare it with the snapshot (exit 5 if one differs).
    #[arg(long)]
    verify: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let opts = RestoreOptionsCairn {
        selector: args.filter.apply(args.snapshot),
        dest: args.target,
        from: args.from,
        overwrite: args.overwrite.unwrap_or_default(),
        include: args.include,
        exclude: args.exclude,
        dry_run: args.dry_run,
        verify: args.verify,
    };
    let r = restore::run(&ctx.core, &pw, &opts, ctx.reporter.clone()).map_err(|e| match e {
        Error::WouldOverwrite { .. } => anyhow::anyhow!(
            "{e}. Use --overwrite [never|if-changed|always], or restore into an empty \
                     folder"
        ),
        e => e.into(),
    })?;
    if ctx.json {
        ctx.print_json(&r)?;
    } else {
        let verb = if r.dry_run {
            "would restore"
        } else {
            "restored"
        };
        let rate = if r.dry_run || r.seconds <= 0.0 {
            String::new()
        } else {
            format!(
                " in {:.1}s ({}/s)",
                r.seconds,
                human_bytes((r.bytes as f64 / r.seconds) as u64)
            )
        };
        println!(
            "{verb} {} file(s), {} folder(s), {} to {}{rate}",
            r.files,
            r.dirs,
            human_bytes(r.bytes),
            r.dest.display()
        );
        if r.existing > 0 {
            println!(
                "{} file(s) existed already; {} left as they were",
                r.existing, r.skipped
            );
        }
        if r.unchanged > 0 {
            println!(
                "{} of them identical to the snapshot: kept, not rewritten",
                r.unchanged
            );
        }
        if r.filtered_out > 0 {
            println!(
                "{} entr(ies) left out by --include/--exclude",
                r.filtered_out
            );
        }
        if let Some(v) = r.verified {
            println!("verified {v} file(s) against the snapshot");
        }
        for m in &r.mismatches {
            println!("DIFFERS  {m}");
        }
        if r.dry_run {
            println!("dry run: nothing was written");
        }
    }
    Ok(if r.mismatches.is_empty() {
        exit::OK
    } else {
        exit::VERIFY_FAILED
    })
}
