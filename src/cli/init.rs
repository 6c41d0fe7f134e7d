//! `cairn init`.

use anyhow::Result;
use cairn::{ops::init, report::is_partial};

use super::{Ctx, print_targets, write_exit};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Create a new repository even though a target that may already hold one cannot be
    /// reached (a second repository would then exist beside the first).
    #[arg(long)]
    force_new: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let report = init::run(&ctx.core, &pw, args.force_new, ctx.reporter.clone())?;
    let code = write_exit(is_partial(&report.targets));
    if ctx.json {
        ctx.print_json(&report)?;
    } else {
        let what = if report.created {
            "created"
        } else {
            "extended"
        };
        println!("repository {} {what}", &report.repository_id);
        print_targets(&report.targets);
    }
    Ok(code)
}
