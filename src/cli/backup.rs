//! `cairn backup`.

use anyhow::Result;
use cairn::{
    ops::backup::{self, BackupOptions},
    report::human_bytes,
};

use super::{Ctx, exit, print_cause, print_foreign, print_targets, write_exit};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Add a tag to this snapshot (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record (default: `[repository] host`, else this machine's).
    #[arg(long)]
    host: Option<String>,
    /// Create the repository first if no target holds one.
    #[arg(long)]
    init: bool,
    /// With --init: create a new repository even though a target that may already hold one
    /// cannot be reached.
    #[arg(long, requires = "init")]
    force_new: bool,
    /// The snapshot's time instead of now: `YYYY-MM-DD HH:MM:SS` (local time) or RFC 3339.
    #[arg(long, value_parser = |s: &str| backup::parse_time(s).map_err(|e| e.to_string()))]
    time: Option<jiff::Zoned>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let opts = BackupOptions {
        tags: args.tags,
        host: args.host,
        init: args.init,
        force_new: args.force_new,
        time: args.time,
    };
    let mut r = backup::run(&ctx.core, &pw, &opts, ctx.reporter.clone())?;
    let targets_short = r.partial;
    // What catch-up brought back from before a purge goes again now, not at the next run. A
    // failure leaves purged files on the targets: partly done, whatever the backup did.
    match cairn::ops::purge::again(&ctx.core, &pw, &ctx.reporter) {
        Ok(again) => {
            r.partial |= again.iter().any(|p| p.partial || !p.complete);
            r.purged_again = again;
        }
        Err(e) => {
            ctx.reporter.print(
                "WARN",
                &format!(
                    "snapshots from before a purge were not purged again (the next backup or \
                     run tries again): {e:#}"
                ),
            );
            r.partial = true;
        }
    }
    let purge_short = r.partial && !targets_short;
    if ctx.json {
        ctx.print_json(&r)?;
    } else {
        println!("snapshot {} saved", &r.snapshot[..8]);
        if let Some(p) = &r.parent {
            println!("parent   {} (unchanged files were not read)", &p[..8]);
        }
        println!(
            "files    {} new, {} changed, {} unmodified",
            r.files_new, r.files_changed, r.files_unmodified
        );
        println!(
            "bytes    {} total, {} new ({} stored per target) in {:.1}s",
            human_bytes(r.bytes_total),
            human_bytes(r.bytes_new),
            human_bytes(r.bytes_new_stored),
            r.duration_secs
        );
        print_foreign(&r.foreign, "target left out");
        for t in &r.caught_up {
            println!(
                "caught up `{}` first: {} file(s), {}{}",
                t.name,
                t.files_copied,
                human_bytes(t.bytes_copied),
                t.detail
                    .as_deref()
                    .map(|d| format!(" (incomplete: {d})"))
                    .unwrap_or_default()
            );
        }
        // One line per cause; every entry is in --json.
        for c in &r.unread_causes {
            print_cause("SKIPPED", "", "source", &c.key.what, c, "entry");
        }
        print_targets(&r.targets);
        for p in &r.purged_again {
            println!(
                "purged again: {} snapshot(s) from before a purge came back with a target \
                 that was cut off (certificate {})",
                p.snapshots.len(),
                p.certificate.as_ref().map_or("-", |c| c.id.as_str())
            );
        }
        if targets_short {
            println!("PARTIAL: a required target did not receive this snapshot (see above)");
        }
        if purge_short {
            println!(
                "PARTIAL: the snapshot is saved, but what came back from before a purge is not \
                 purged on every target (see above)"
            );
        }
        if r.incomplete {
            println!(
                "INCOMPLETE: {} source entr{} not backed up, or not faithfully (see SKIPPED above)",
                r.unread.len(),
                if r.unread.len() == 1 {
                    "y is"
                } else {
                    "ies are"
                }
            );
        }
    }
    Ok(if r.incomplete {
        exit::INCOMPLETE
    } else {
        write_exit(r.partial)
    })
}
