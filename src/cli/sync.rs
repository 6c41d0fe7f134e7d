//! `cairn sync`.

use anyhow::Result;
use cairn::{
    ops::sync,
    report::{TargetState, human_bytes},
};

use super::{Ctx, exit, label, print_foreign};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Bring only this target level.
    #[arg(long)]
    only: Option<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    // With the password, copies are proven before they spread; without it nothing is copied.
    let pw = ctx.core.password().ok();
    let r = sync::run_and_record(&ctx.core, pw.as_ref(), args.only.as_deref(), &ctx.reporter)?;
    if ctx.json {
        ctx.print_json(&r)?;
    } else {
        println!(
            "{:<16} {:<12} {:>8} {:>8} {:>9} {:>12}  detail",
            "target", "state", "missing", "copied", "held back", "bytes"
        );
        for t in &r.targets {
            let state = label(t.state);
            println!(
                "{:<16} {:<12} {:>8} {:>8} {:>9} {:>12}  {}",
                t.name,
                state,
                t.missing,
                t.files_copied,
                t.held_back,
                human_bytes(t.bytes_copied),
                t.detail.as_deref().unwrap_or("")
            );
        }
        print_foreign(&r.foreign, "left where it is");
    }
    let incomplete = r.targets.iter().any(|t| t.state == TargetState::Incomplete);
    Ok(if r.partial || incomplete {
        exit::PARTIAL
    } else {
        exit::OK
    })
}
