//! `cairn erase` and `cairn erasures`.

use anyhow::Result;
use cairn::{
    erasure::{Certificate, Register},
    ops::erase::{self, EraseOptions, EraseReport},
    report::human_bytes,
};

use super::Ctx;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Why, for the certificate ("request of 2026-12-01 by acme's DPO", "contract end").
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Do not ask: erase at once (scripts).
    #[arg(long)]
    yes: bool,
    /// Show the client, the targets and the size; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Also read every certificate's copies on the targets and check their seals.
    #[arg(long)]
    copies: bool,
}

fn print_plan(r: &EraseReport) {
    println!(
        "repository `{}`: {} on its largest copy",
        r.repository,
        human_bytes(r.bytes)
    );
    for t in &r.targets {
        let detail = t
            .detail
            .as_deref()
            .map(|d| format!("  ({d})"))
            .unwrap_or_default();
        println!(
            "  {:<16} {:<8} {:>7} file(s) {:>12}{detail}",
            t.name,
            t.state,
            t.files,
            human_bytes(t.bytes)
        );
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    if args.reason.trim().is_empty() {
        anyhow::bail!(cairn::error::Error::Usage(
            "--reason is empty: say why, for the certificate".into()
        ));
    }
    let pw = ctx.core.password()?;
    let opts = EraseOptions {
        reason: args.reason.clone(),
        dry_run: args.dry_run,
    };
    let json = ctx.json;
    let yes = args.yes;
    let mut refused = None;
    let mut confirm = |r: &EraseReport| {
        if yes {
            return true;
        }
        if !json {
            print_plan(r);
        }
        let asked = cairn::tty::ask_plain(
            &format!(
                "Erase `{}` from every target above, for good? Type its name to confirm: ",
                r.repository
            ),
            "no terminal to confirm on: pass --yes",
        );
        match asked {
            Ok(answer) if answer == r.repository => true,
            Ok(_) => {
                refused = Some("not confirmed; nothing was changed".to_string());
                false
            }
            Err(e) => {
                refused = Some(format!("{e}; nothing was changed"));
                false
            }
        }
    };
    let r = erase::run(&ctx.core, &pw, &opts, &mut confirm)?;
    if let Some(why) = refused {
        anyhow::bail!(cairn::error::Error::Usage(why));
    }
    let pending = r.targets.iter().any(|t| t.state == "pending");
    if json {
        ctx.print_json(&r)?;
    } else if r.dry_run {
        print_plan(&r);
        println!("dry run: nothing was changed");
    } else {
        print_plan(&r);
        if let Some(c) = &r.certificate {
            print_certificate(c);
        }
    }
    Ok(if r.dry_run || !pending {
        super::exit::OK
    } else {
        super::exit::PARTIAL
    })
}

fn print_certificate(c: &Certificate) {
    let state = match &c.done {
        Some(t) => format!("final {t}"),
        None => {
            let pending: Vec<&str> = c.pending().map(|a| a.target.as_str()).collect();
            format!("pending on {}", pending.join(", "))
        }
    };
    let what = match c.kind {
        cairn::erasure::Kind::Repository => "repository".to_string(),
        cairn::erasure::Kind::Purge => format!("purge {}", c.patterns.join(" ")),
    };
    println!(
        "certificate {} [{}] {what}: decided {} by {} ({}): {state}",
        c.id, c.repository, c.decided, c.operator, c.reason
    );
    for a in &c.targets {
        let when = a.applied.as_deref().unwrap_or("pending");
        let mut line = format!(
            "  {:<16} {when}  {} file(s), {}",
            a.target,
            a.files,
            human_bytes(a.bytes)
        );
        if let Some(n) = a.chunks_left {
            line.push_str(&format!(", {n} purged chunk(s) still indexed"));
        }
        if !a.returned.is_empty() {
            line.push_str(&format!(
                ", a copy came back and was erased again at {}",
                a.returned.join(", ")
            ));
        }
        if let Some(d) = &a.detail {
            line.push_str(&format!(" ({d})"));
        }
        println!("{line}");
    }
}

pub fn list(ctx: &Ctx, args: ListArgs) -> Result<i32> {
    let dir = cairn::erasure::dir(ctx.cfg());
    let register = Register::load(&dir)?;
    let copies = if args.copies {
        let mut folders: Vec<String> = register
            .certificates
            .iter()
            .map(|c| c.folder.clone())
            .chain(
                ctx.file
                    .iter()
                    .map(|c| c.client.clone().unwrap_or_default()),
            )
            .collect();
        folders.sort();
        folders.dedup();
        Some(erase::copies(&ctx.core, &folders)?)
    } else {
        None
    };
    let forged = copies.iter().flatten().any(|c| c.verdict == "not proven");
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "certificates": register.certificates,
            "copies": copies,
        }))?;
    } else {
        if register.certificates.is_empty() {
            println!(
                "no erasure or purge recorded for {}",
                ctx.cfg().path.display()
            );
        }
        for c in &register.certificates {
            print_certificate(c);
        }
        for c in copies.iter().flatten() {
            let what = c.id.as_deref().or(c.detail.as_deref()).unwrap_or("");
            println!("copy [{}] {} {}: {what}", c.target, c.path, c.verdict);
        }
    }
    Ok(if forged {
        super::exit::VERIFY_FAILED
    } else {
        super::exit::OK
    })
}
