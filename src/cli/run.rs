//! `cairn run`: the nightly job.

use std::io::IsTerminal;

use anyhow::Result;
use cairn::ops::run;

use super::{Ctx, label};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Create the repository first if no target holds one (as `backup --init`).
    #[arg(long)]
    init: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let r = run::run(
        &ctx.core,
        &run::RunOptions { init: args.init },
        ctx.core.password(),
        ctx.reporter.clone(),
    );
    if ctx.json {
        ctx.print_json(&r)?;
    } else {
        // Under systemd the step lines already went to the journal (stderr, with priorities);
        // on a terminal they were shown as each step ended, on the same screen.
        let journal = std::env::var_os("JOURNAL_STREAM").is_some();
        let seen = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        for s in r.steps.iter().filter(|_| !journal && !seen) {
            println!("{:<9} {:<13} {}", s.step, label(s.result), s.summary);
        }
        println!(
            "result: {} (exit {}){}",
            label(r.result),
            r.exit_code,
            r.report_path
                .as_ref()
                .map(|p| format!("; report {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(r.exit_code)
}
