//! `cairn report`: the evidence of every repository shown (or of one, `--repo`): problems in
//! words, per target what was recorded; `--html FILE` writes it as one self-contained page.

use std::{path::Path, sync::Arc};

use anyhow::Result;
use cairn::{
    config::Config,
    context::Context,
    erasure::{self, Register},
    evidence::{self, Evidence},
    progress::Silent,
    state,
};

use super::progress::Reporter;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Write the report as one HTML page (no script, font or image from elsewhere) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
}

/// Gathers the evidence of `cfgs` (one client's page when `one_client`); each repository's
/// audit log records the report (it reads the keys with the password).
///
/// # Errors
/// The erasure register cannot be read.
pub fn gather(
    cfgs: &[Config],
    one_client: bool,
    operator: Option<&str>,
    reporter: &Reporter,
) -> Result<Evidence> {
    let Some(first) = cfgs.first() else {
        anyhow::bail!("no repository to report on");
    };
    let register = Register::load(&erasure::dir(first))?;
    // Silent: what goes wrong while reading the targets is said on the page, not on stderr.
    let contexts: Vec<Context> = cfgs
        .iter()
        .map(|c| Context::new(c.clone(), Arc::new(Silent)))
        .collect();
    for c in &contexts {
        c.trail().begin(c.cfg(), "report", operator);
    }
    let ev = evidence::gather(&contexts, &register, one_client);
    for c in &contexts {
        for lost in c.trail().finish(super::exit::OK, None).lost {
            reporter.print("ERROR", &lost);
        }
    }
    Ok(ev)
}

/// Writes the page for `ev` to `path` (atomically, owner only: it names clients and operators).
///
/// # Errors
/// The file cannot be written.
pub fn write_html(ev: &Evidence, path: &Path) -> Result<()> {
    state::replace_private(path, evidence::html::render(ev).as_bytes())?;
    Ok(())
}

/// The report's text, or its JSON; the page when `--html`. Exit 0 whatever it found: the
/// problems are its content, and each has its own alert.
pub fn run(
    cfgs: &[Config],
    one_client: bool,
    cli: &super::Cli,
    reporter: &Reporter,
    args: &Args,
) -> Result<i32> {
    let json = cli.json;
    let ev = gather(cfgs, one_client, cli.operator.as_deref(), reporter)?;
    if let Some(path) = &args.html {
        write_html(&ev, path)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&ev)?);
        return Ok(super::exit::OK);
    }
    if ev.problems.is_empty() {
        println!("no problems found");
    }
    for p in &ev.problems {
        println!("PROBLEM {}", p.text);
    }
    for c in &ev.clients {
        for t in &c.targets {
            println!(
                "{:<16} {:<16} {:<8} last backup {}; last verification {}",
                c.name,
                t.name,
                cairn::report::label(t.state),
                t.recorded.last_complete_at.as_deref().unwrap_or("never"),
                t.recorded.last_verify_at.as_deref().unwrap_or("never"),
            );
        }
        // Not met, it is among the problems above.
        if c.rule.met {
            println!("{:<16} {}", c.name, c.rule.line());
        }
    }
    if let Some(path) = &args.html {
        println!("report written to {}", path.display());
    }
    Ok(super::exit::OK)
}

/// After `cairn run`: rewrites `[report] html` with every repository of the file.
pub fn after_run(live: &[Config], operator: Option<&str>, reporter: &Reporter) {
    let Some(path) = live.first().and_then(|c| c.report.html.clone()) else {
        return;
    };
    match gather(live, false, operator, reporter).and_then(|ev| write_html(&ev, &path)) {
        Ok(()) => reporter.print("INFO", &format!("report written to {}", path.display())),
        Err(e) => reporter.print(
            "WARN",
            &format!("report {} not written: {e:#}", path.display()),
        ),
    }
}
