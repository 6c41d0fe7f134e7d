//! `cairn recover`.

use anyhow::Result;
use cairn::{ops::recover, report::human_bytes};

use super::Ctx;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The locked bucket to read (as of `--as-of`).
    #[arg(long, value_name = "TARGET")]
    from: String,
    /// The empty target to write the repository into.
    #[arg(long, value_name = "TARGET")]
    to: String,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    if ctx.as_of.is_none() {
        anyhow::bail!(cairn::error::Error::Usage(
            "`cairn recover` reads a bucket as it stood at a moment: give --as-of TIME".into()
        ));
    }
    let pw = ctx.core.password()?;
    let now = ctx.core.reading_now();
    let r = recover::run(&ctx.core, &now, &args.from, &args.to, &pw)?;
    if ctx.json {
        ctx.print_json(&r)?;
    } else {
        for (path, why) in &r.left {
            println!("NOT COPIED {path}: {why}");
        }
        println!(
            "recovered {} file(s), {} from `{}` into `{}`",
            r.files,
            human_bytes(r.bytes),
            args.from,
            args.to
        );
    }
    Ok(if r.left.is_empty() {
        super::exit::OK
    } else {
        super::exit::VERIFY_FAILED
    })
}
