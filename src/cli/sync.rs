//! `cairn sync`.

use anyhow::Result;
use cairn::{
    ops::sync::{self, SyncState},
    report::human_bytes,
    session::probe_all,
};

use super::{Ctx, exit, label, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bring only this target level.
    #[arg(long)]
    only: Option<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    if let Some(name) = &args.only {
        ctx.cfg.target(name)?;
    }
    let _lock = cairn::lock::acquire(&ctx.cfg, "sync", &ctx.observer())?;
    let probed = probe_all(&ctx.cfg, None)?;
    let r = sync::run_and_record(
        &ctx.cfg,
        &probed,
        args.only.as_deref(),
        &ctx.observer(),
        &ctx.reporter,
    )?;
    if ctx.json {
        print_json(&r)?;
    } else {
        println!(
            "{:<16} {:<12} {:>8} {:>8} {:>12}  detail",
            "target", "state", "missing", "copied", "bytes"
        );
        for t in &r.targets {
            let state = label(t.state);
            println!(
                "{:<16} {:<12} {:>8} {:>8} {:>12}  {}",
                t.name,
                state,
                t.missing,
                t.files_copied,
                human_bytes(t.bytes_copied),
                t.detail.as_deref().unwrap_or("")
            );
        }
    }
    let incomplete = r.targets.iter().any(|t| t.state == SyncState::Incomplete);
    Ok(if r.partial || incomplete {
        exit::PARTIAL
    } else {
        exit::OK
    })
}
