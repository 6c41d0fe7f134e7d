//! `cairn check`.

use anyhow::Result;
use cairn::{
    ops::check::{self, CheckOptions, ProblemKind, ReadData},
    report::human_bytes,
};

use super::{Ctx, exit, label, print_cause};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Hash every repository file and compare it with its name.
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Hash a random PERCENT of the files (the seed is reported; `--seed` repeats it).
    #[arg(long, value_name = "PERCENT")]
    read_data_subset: Option<f64>,
    /// Seed of `--read-data-subset`.
    #[arg(long)]
    seed: Option<u64>,
    /// Replace missing or damaged files with verified copies from other targets, and remove
    /// stray files from the repository folders (takes the repository lock).
    #[arg(long)]
    heal: bool,
    /// Prove, on every target that claims it (S3 `object_lock`), that this machine's own
    /// credentials cannot destroy what is there: a canary is written and attacked (exit 5
    /// when it can be destroyed). Nothing else is checked.
    #[arg(long, conflicts_with_all = ["read_data", "read_data_subset", "heal"])]
    immutability: bool,
}

fn immutability(ctx: &Ctx) -> Result<i32> {
    let r = check::immutability::run(&ctx.core);
    if ctx.json {
        ctx.print_json(&r)?;
        return Ok(r.exit_code());
    }
    for t in &r.targets {
        let line = match (&t.protection, &t.unreachable) {
            (Some(p), _) if p.immutable => format!("immutable ({}): {}", p.claim, p.detail),
            (Some(p), _) => format!("NOT immutable ({} claimed): {}", p.claim, p.detail),
            (None, Some(why)) => format!("not reached: {why}"),
            (None, None) => "claims no protection (its credentials can delete it)".into(),
        };
        println!("{:<16} {line}", t.name);
    }
    Ok(r.exit_code())
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    if ctx.as_of.is_some() && (args.heal || args.immutability) {
        anyhow::bail!(cairn::error::Error::Usage(
            "--as-of reads the past: `check --heal` and `check --immutability` work on the \
             targets as they are"
                .into()
        ));
    }
    if args.immutability {
        return immutability(ctx);
    }
    if let Some(p) = args.read_data_subset
        && !(p > 0.0 && p <= 100.0)
    {
        anyhow::bail!(cairn::error::Error::Input(
            "--read-data-subset must be more than 0 and at most 100".into()
        ));
    }
    let read_data = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(p)) => ReadData::Percent(p),
        (false, None) => ReadData::None,
    };
    // The password is optional: without it the file-level checks still run.
    let pw = ctx.core.password().ok();
    let opts = CheckOptions {
        read_data,
        heal: args.heal,
        seed: args.seed,
    };
    let r = check::run(&ctx.core, &opts, pw.as_ref(), &ctx.reporter)?;
    if ctx.json {
        ctx.print_json(&r)?;
    } else {
        // One line per cause; the per-file list is in --json.
        for c in &r.causes {
            let k = &c.key;
            let (level, what) = match k.healed {
                Some(true) => ("HEALED", format!("{} [healed]", k.what)),
                Some(false) => ("PROBLEM", format!("{} [NOT healed]", k.what)),
                None => ("PROBLEM", k.what.clone()),
            };
            let unit = if k.kind == ProblemKind::Structure {
                "finding"
            } else {
                "file"
            };
            print_cause(level, &k.target, &label(k.kind), &what, c, unit);
        }
        println!(
            "{:<16} {:<16} {:>7} {:>11} {:>7} {:>11} {:>8}  structure",
            "target", "state", "files", "bytes", "hashed", "hashed b", "problems"
        );
        for t in &r.targets {
            println!(
                "{:<16} {:<16} {:>7} {:>11} {:>7} {:>11} {:>8}  {}{}",
                t.name,
                label(t.state),
                t.files,
                human_bytes(t.bytes),
                t.hashed_files,
                human_bytes(t.hashed_bytes),
                t.problems,
                t.structure,
                t.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
        }
        if let Some(seed) = r.seed {
            println!("seed {seed}");
        }
    }
    Ok(if r.open_problems() > 0 {
        exit::VERIFY_FAILED
    } else if r.unreachable {
        exit::UNREACHABLE
    } else {
        exit::OK
    })
}
