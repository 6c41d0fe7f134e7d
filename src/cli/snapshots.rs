//! `cairn snapshots`.

use anyhow::Result;
use cairn::{
    ops::snapshots,
    report::{TargetState, human_bytes},
};

use super::{Ctx, label, write_exit};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let r = snapshots::run(&ctx.core, &pw, ctx.reporter.clone())?;
    if ctx.json {
        ctx.print_json(&r)?;
        return Ok(write_exit(r.partial));
    }
    println!(
        "{:<9} {:<26} {:<16} {:>10}  {:<24} paths",
        "id", "time", "host", "size", "targets"
    );
    for s in &r.snapshots {
        println!(
            "{:<9} {:<20} {:<16} {:>10}  {:<24} {}{}",
            &s.id[..8],
            s.time.get(..19).map_or(s.time.clone(), |t| format!("{t}Z")),
            s.host,
            human_bytes(s.bytes),
            s.targets.join(","),
            s.paths.join(" "),
            if s.tags.is_empty() {
                String::new()
            } else {
                format!("  [{}]", s.tags.join(","))
            }
        );
    }
    println!("{} snapshot(s)", r.snapshots.len());
    for t in r
        .targets
        .iter()
        .filter(|t| t.state != TargetState::Available)
    {
        let state = label(t.state);
        println!(
            "target `{}` {state}: {}",
            t.name,
            t.detail.as_deref().unwrap_or("")
        );
    }
    Ok(write_exit(r.partial))
}
