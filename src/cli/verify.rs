//! `cairn verify`.

use std::path::PathBuf;

use anyhow::Result;
use cairn::{
    config::{ByteCount, SnapshotSelection},
    ops::verify::{self, VerifyOptions},
    report::{TargetState, human_bytes},
    sample::SampleSpec,
};

use super::{Ctx, exit, label, print_cause};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Snapshot to sample (repeatable; `latest` works). Default: `[verify] snapshots`, else latest.
    #[arg(long = "snapshot")]
    snapshot: Vec<String>,
    /// Sample across the N newest snapshots, or `all`.
    #[arg(long, value_name = "N|all|latest")]
    snapshots: Option<SnapshotSelection>,
    /// Sample this many files, at least 1 (with --percent, the larger count wins).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    files: Option<usize>,
    /// Sample this percentage of the files.
    #[arg(long)]
    percent: Option<f64>,
    /// At most this many bytes in all, e.g. 2GiB.
    #[arg(long, value_name = "SIZE")]
    max_bytes: Option<ByteCount>,
    /// Seed of the random sample; the same seed samples the same files.
    #[arg(long)]
    seed: Option<u64>,
    /// Verify only this target (repeatable). Default: `[verify] targets`, else all.
    #[arg(long = "only", value_name = "TARGET")]
    only: Vec<String>,
    /// Keep the restored files in this folder (default: a scratch folder, removed).
    #[arg(long, value_name = "DIR")]
    restore_to: Option<PathBuf>,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let mut opts = VerifyOptions::from_config(&ctx.cfg().verify);
    // A count or percentage on the command line replaces both of the configuration's.
    if args.files.is_some() || args.percent.is_some() {
        opts.spec = SampleSpec {
            files: args.files,
            percent: args.percent,
            max_bytes: opts.spec.max_bytes,
        };
    }
    if let Some(b) = args.max_bytes {
        opts.spec.max_bytes = Some(b.0);
    }
    if args.percent.is_some_and(|p| !(p > 0.0 && p <= 100.0)) {
        return Err(cairn::error::Error::Usage(
            "--percent must be more than 0 and at most 100".into(),
        )
        .into());
    }
    opts.snapshots = args.snapshot;
    if let Some(s) = args.snapshots {
        opts.selection = s;
    }
    opts.seed = args.seed;
    if !args.only.is_empty() {
        opts.targets = args.only;
    }
    if args.restore_to.is_some() {
        opts.restore_to = args.restore_to;
    }

    let mut report = verify::run(&ctx.core, &pw, &opts, ctx.reporter.clone())?;
    // An empty sample proves nothing; it must not read as a pass.
    let code = report.exit_code();
    if report.sample.is_empty() {
        ctx.reporter.print(
            "ERROR",
            &format!(
                "nothing was verified: the sample is empty ({} files in the snapshots sampled)",
                report.candidates
            ),
        );
    }
    if let Some(path) = &args.report {
        verify::write_report(&report, path)?;
    }
    if code != exit::OK
        && let Some(command) = &ctx.cfg().verify.on_failure
    {
        // The hook gets a report file even without --report; it is kept for the incident.
        let path = match &args.report {
            Some(p) => p.clone(),
            None => {
                let p = std::env::temp_dir().join(format!(
                    "cairn-verify-{}-{}.json",
                    report.seed,
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                ));
                verify::write_report(&report, &p)?;
                p
            }
        };
        let hook = verify::run_hook(command, &path, &report, ctx.cfg().notify.timeout());
        ctx.reporter.print(
            if hook.ok() { "INFO" } else { "WARN" },
            &format!("{} (report: {})", hook.describe(), path.display()),
        );
        report.hook = Some(hook);
        if let Some(p) = &args.report {
            verify::write_report(&report, p)?;
        }
    }

    if ctx.json {
        ctx.print_json(&report)?;
        return Ok(code);
    }
    println!(
        "sampled {} of {} files ({}) from snapshot(s) {}; seed {}",
        report.sample.len(),
        report.candidates,
        human_bytes(report.sample.iter().map(|c| c.size).sum()),
        report
            .snapshots
            .iter()
            .map(|s| &s[..8])
            .collect::<Vec<_>>()
            .join(","),
        report.seed
    );
    // One line per cause; the per-file list is in --json and --report.
    for c in &report.causes {
        let k = &c.key;
        print_cause(
            "FAIL",
            &k.target,
            &label(k.class),
            &k.what,
            c,
            "sampled file",
        );
    }
    println!(
        "{:<16} {:<7} {:<12} {:>6} {:>10} {:>10} {:>6} {:>9} {:>8} {:>11} {:>9} {:>8} {:>7}",
        "target",
        "kind",
        "state",
        "files",
        "bytes",
        "read",
        "ok",
        "mismatch",
        "missing",
        "unreadable",
        "vs-source",
        "changed",
        "time"
    );
    for t in &report.targets {
        let state = label(t.state);
        println!(
            "{:<16} {:<7} {:<12} {:>6} {:>10} {:>10} {:>6} {:>9} {:>8} {:>11} {:>9} {:>8} {:>6.1}s",
            t.name,
            t.kind,
            state,
            t.files,
            human_bytes(t.bytes),
            human_bytes(t.bytes_read),
            t.ok,
            t.mismatch,
            t.missing,
            t.unreadable,
            t.compared_with_source,
            t.changed_since_snapshot,
            t.seconds
        );
        if matches!(t.state, TargetState::Unreachable | TargetState::Offline) {
            println!("    {}", t.detail.as_deref().unwrap_or(""));
        }
    }
    Ok(code)
}
