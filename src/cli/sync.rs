//! `cairn sync`.

use anyhow::Result;
use cairn::{
    ops::sync,
    proof::Proof,
    report::{TargetState, human_bytes},
    session::{password, probe_all},
};

use super::{Ctx, exit, label, print_foreign, print_json};

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
    let probed = probe_all(&ctx.cfg, None)?;
    let mut lock = cairn::lock::acquire(&ctx.cfg, "sync", &probed, &ctx.observer())?;
    let probed = lock.restrict(probed);
    // With the password, copies are proven before they spread; without it nothing is copied.
    let proof = match password(&ctx.cfg) {
        Ok(pw) => Some(Proof::unlock(&probed, &pw)?),
        Err(_) => None,
    };
    let probed = match &proof {
        Some(proof) => {
            lock.hold_restic(proof, &probed, &ctx.observer());
            lock.restrict(probed)
        }
        None => probed,
    };
    let r = sync::run_and_record(
        &ctx.cfg,
        &probed,
        args.only.as_deref(),
        proof.as_ref(),
        &ctx.observer(),
        &ctx.reporter,
    )?;
    if ctx.json {
        print_json(&r)?;
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
