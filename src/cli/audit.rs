//! `cairn audit show|verify`: the audit log of this configuration.

use anyhow::Result;
use cairn::audit::{self, Record};

use super::{Ctx, exit};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum AuditCommand {
    /// Print the records, oldest first.
    Show {
        /// Only records at or after this time (`2026-12-01`, `2026-12-01T08:00:00Z`).
        #[arg(long)]
        since: Option<String>,
        /// Only this operator's records.
        #[arg(long = "operator", value_name = "NAME")]
        only: Option<String>,
    },
    /// Check the chain of the local log and, with the repository password, compare it with the
    /// copy sealed on every reachable target; names the first record changed, removed or
    /// reordered.
    Verify,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let path = audit::path(ctx.cfg())?;
    let lines = audit::read_lines(&path)?;
    match args.command {
        AuditCommand::Show { since, only } => {
            let records: Vec<Record> = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<Record>(l).ok())
                .filter(|r| since.as_deref().is_none_or(|s| r.time.as_str() >= s))
                .filter(|r| only.as_deref().is_none_or(|o| r.operator == o))
                .collect();
            if ctx.json {
                ctx.print_json(&records)?;
                return Ok(exit::OK);
            }
            for r in &records {
                let mut extra = Vec::new();
                if !r.snapshots.is_empty() {
                    extra.push(format!("snapshots {}", r.snapshots.join(",")));
                }
                if let Some(b) = r.bytes {
                    extra.push(format!("{b} bytes"));
                }
                if let Some(m) = &r.message {
                    extra.push(m.clone());
                }
                println!(
                    "{:>5} {} {:<10} {}@{} {:<12} {:<8} {}",
                    r.seq,
                    r.time,
                    r.operator,
                    r.user,
                    r.host,
                    r.command,
                    r.result,
                    extra.join("; ")
                );
            }
            Ok(exit::OK)
        }
        AuditCommand::Verify => verify(ctx, &path, &lines),
    }
}

fn verify(ctx: &Ctx, path: &std::path::Path, lines: &[String]) -> Result<i32> {
    let mut faults: Vec<serde_json::Value> = Vec::new();
    let mut say = |place: &str, what: String| {
        if !ctx.json {
            println!("FAULT [{place}] {what}");
        }
        faults.push(serde_json::json!({ "where": place, "fault": what }));
    };
    if let Some(f) = audit::verify(lines) {
        say(
            "local",
            format!("{} (line {} of {})", f.what, f.line, path.display()),
        );
    }
    let local_log = lines
        .first()
        .and_then(|l| serde_json::from_str::<Record>(l).ok())
        .map(|r| r.log);
    let mut compared = Vec::new();
    let mut unreachable = Vec::new();
    if let Ok(pw) = ctx.core.password() {
        let probed = cairn::probe::probe_all(&ctx.core, None)?;
        let proof = cairn::unlock::unlock(&ctx.core, &probed, &pw)?;
        let cipher = proof.cipher();
        for p in &probed {
            let Some(store) = p.store.as_ref().filter(|_| p.unusable().is_none()) else {
                unreachable.push(p.cfg.name.clone());
                continue;
            };
            if let cairn::probe::Probe::Ready { config, .. } = &p.probe
                && config != proof.config()
            {
                say(&p.cfg.name, "holds another repository: not compared".into());
                continue;
            }
            match audit::replicated(store.as_ref(), cipher) {
                Ok((logs, foreign)) => {
                    for (name, why) in foreign {
                        say(&p.cfg.name, format!("{name} {why}"));
                    }
                    for (log, remote) in &logs {
                        if let Some(f) = audit::verify(remote) {
                            say(&p.cfg.name, format!("log {log}: {}", f.what));
                        }
                        if local_log.as_deref() == Some(log.as_str()) || local_log.is_none() {
                            for what in audit::compare(lines, remote) {
                                say(&p.cfg.name, what);
                            }
                        }
                    }
                    match audit::heads(store.as_ref(), cipher, path) {
                        Ok(heads) => {
                            for what in audit::check_heads(path, lines, &heads) {
                                say(&p.cfg.name, what);
                            }
                        }
                        Err(e) => say(&p.cfg.name, format!("cannot read its log notes: {e}")),
                    }
                    compared.push(p.cfg.name.clone());
                }
                Err(e) => {
                    say(&p.cfg.name, format!("cannot list its audit records: {e}"));
                }
            }
        }
    }
    let ok = faults.is_empty();
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "records": lines.len(),
            "intact": ok,
            "faults": faults,
            "compared_with": compared,
            "unreachable": unreachable,
        }))?;
    } else {
        let with = if compared.is_empty() {
            " (no password: not compared with the targets)".to_string()
        } else {
            format!("; compared with the copy on {}", compared.join(", "))
        };
        let state = if ok { "intact" } else { "NOT intact" };
        println!("{} records, {state}{with}", lines.len());
        if !unreachable.is_empty() {
            println!("not compared (unreachable): {}", unreachable.join(", "));
        }
    }
    Ok(if !ok {
        exit::VERIFY_FAILED
    } else if !unreachable.is_empty() {
        // Intact as far as it could be compared; a target not compared is not proven.
        exit::UNREACHABLE
    } else {
        exit::OK
    })
}
