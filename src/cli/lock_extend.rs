//! `cairn lock-extend`.

use anyhow::Result;
use cairn::ops::lock_extend;

use super::Ctx;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let r = lock_extend::run(&ctx.core, &pw)?;
    if ctx.json {
        ctx.print_json(&r)?;
        return Ok(r.exit_code());
    }
    if r.targets.is_empty() {
        println!("no target locks what it holds (S3 `object_lock`): nothing to extend");
    }
    for t in &r.targets {
        match &t.error {
            None => println!(
                "{:<16} {} lock(s) extended until {}; {} pack(s) no kept snapshot needs left to run out",
                t.name,
                t.extended,
                t.until.as_deref().unwrap_or("-"),
                t.left
            ),
            Some(e) => println!(
                "{:<16} PARTIAL: {} lock(s) extended; {e}",
                t.name, t.extended
            ),
        }
    }
    Ok(r.exit_code())
}
