//! The command line: clap arguments, one file per verb (arguments -> library call -> output).

mod backup;
mod check;
pub mod exit;
mod forget;
mod init;
mod ls;
mod progress;
mod prune;
mod restore;
mod snapshots;
mod status;
mod sync;
mod verify;

use std::{path::PathBuf, sync::Arc};

use anyhow::Result;
use cairn::{
    config::Config,
    report::{TargetOutcome, TargetState, human_bytes},
};
use clap::{Parser, Subcommand};
use serde::Serialize;

use progress::{Mode, Reporter};

/// cairn: one encrypted, deduplicated backup written to every target at once
/// (local/USB, SFTP, SMB, Azure Blob, S3), each a complete restic repository.
#[derive(Debug, Parser)]
#[command(version, after_help = exit::TABLE)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        global = true,
        default_value = "targets.toml",
        env = "CAIRN_CONFIG"
    )]
    pub config: PathBuf,
    /// Print one JSON document on stdout instead of text; no progress output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the repository on every target (or add it to targets that lack it).
    #[command(after_help = exit::TABLE)]
    Init(init::Args),
    /// Back up the configured sources to every target.
    #[command(after_help = exit::TABLE)]
    Backup(backup::Args),
    /// Remove snapshots by retention policy (`[retention]`, restic's rules) or by id, on every
    /// target; a target that is away obeys at its next catch-up.
    #[command(after_help = exit::TABLE)]
    Forget(forget::Args),
    /// Remove data no snapshot needs, on every target (nothing while a target is away).
    #[command(after_help = exit::TABLE)]
    Prune(prune::Args),
    /// List snapshots and which targets hold each.
    #[command(after_help = exit::TABLE)]
    Snapshots(snapshots::Args),
    /// List the files of a snapshot.
    #[command(after_help = exit::TABLE)]
    Ls(ls::Args),
    /// Restore a snapshot (or a path in it) into a folder.
    #[command(after_help = exit::TABLE)]
    Restore(restore::Args),
    /// Compare the targets' repository files (no password needed); hash them; heal.
    #[command(after_help = exit::TABLE)]
    Check(check::Args),
    /// Show every target: level, lagging, offline or unreachable, and what earlier runs recorded.
    #[command(after_help = exit::TABLE)]
    Status(status::Args),
    /// Copy to lagging targets the repository files they lack, from the others (no password).
    #[command(after_help = exit::TABLE)]
    Sync(sync::Args),
    /// Restore a random sample of files from each target on its own and prove them intact.
    #[command(after_help = exit::TABLE)]
    Verify(verify::Args),
}

/// What a verb hands back to `main`: its exit code.
pub struct Ctx {
    pub cfg: Config,
    pub json: bool,
    pub reporter: Reporter,
}

impl Ctx {
    fn observer(&self) -> Arc<dyn cairn::progress::Observer> {
        Arc::new(self.reporter.clone())
    }
}

/// Runs the parsed command; returns the exit code.
///
/// # Errors
/// Any failure; `main` maps it to an exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let cfg = Config::load(&cli.config)?;
    let reporter = Reporter::new(Mode::detect(cli.json));
    for w in cfg.warnings() {
        reporter.print("WARN", &w);
    }
    let ctx = Ctx {
        cfg,
        json: cli.json,
        reporter,
    };
    match cli.command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Forget(a) => forget::run(&ctx, a),
        Command::Prune(a) => prune::run(&ctx, a),
        Command::Snapshots(a) => snapshots::run(&ctx, a),
        Command::Ls(a) => ls::run(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Sync(a) => sync::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a),
    }
}

/// Prints `value` as JSON on stdout.
fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// How a unit enum is spelled in JSON (`not-initialised`), for text tables.
fn label<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The per-target table every write command prints.
/// Files that fail the proof of authenticity, each on its own target; `otherwise` says what was
/// done when one could not be moved aside.
fn print_foreign(foreign: &[cairn::replica::Foreign], otherwise: &str) {
    for f in foreign {
        let done = if f.quarantined {
            "quarantined, not copied".to_string()
        } else {
            format!("NOT quarantined; {otherwise}")
        };
        println!("FOREIGN  `{}` {}: {} ({done})", f.target, f.path, f.why);
    }
}

fn print_targets(targets: &[TargetOutcome]) {
    println!(
        "{:<16} {:<7} {:<15} {:>12} {:>7}  detail",
        "target", "kind", "state", "written", "files"
    );
    for t in targets {
        let state = label(t.state);
        let req = if t.required { "" } else { " (optional)" };
        println!(
            "{:<16} {:<7} {:<15} {:>12} {:>7}  {}{req}",
            t.name,
            t.kind,
            state,
            human_bytes(t.bytes_written),
            t.files_written,
            t.detail
                .as_deref()
                .unwrap_or(if t.state == TargetState::Complete {
                    "ok"
                } else {
                    ""
                }),
        );
    }
}

/// Exit code for a finished write command.
fn write_exit(partial: bool) -> i32 {
    if partial { exit::PARTIAL } else { exit::OK }
}
