//! `cairn key add|list|remove`: one key per operator.

use anyhow::Result;
use cairn::ops::key::{self, KeyReport};

use super::{Ctx, label, write_exit};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum KeyCommand {
    /// Add a key for `--operator NAME` on every target (its password from `CAIRN_NEW_PASSWORD`, else
    /// asked twice on the terminal).
    Add,
    /// List the keys: operator, host, created, on which targets.
    List,
    /// Remove the key(s) of `--operator NAME` from every target; a target that is away loses it at its
    /// next catch-up. Not the key in use, never the last one.
    Remove,
}

pub fn run(ctx: &Ctx, args: Args, operator: Option<&str>) -> Result<i32> {
    let operator = || {
        operator
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("name the operator whose key it is: --operator NAME"))
    };
    let pw = ctx.core.password()?;
    match args.command {
        KeyCommand::Add => {
            ctx.core.trail().command("key add");
            let operator = operator()?;
            let new = cairn::tty::new_secret("CAIRN_NEW_PASSWORD", "New password: ")?;
            let r = key::add(&ctx.core, &pw, &operator, &new)?;
            report(ctx, &r, "added")
        }
        KeyCommand::List => {
            ctx.core.trail().command("key list");
            let keys = key::list(&ctx.core, &pw)?;
            if ctx.json {
                ctx.print_json(&keys)?;
                return Ok(0);
            }
            println!(
                "{:<3}{:<12} {:<16} {:<16} {:<26} targets",
                "", "id", "operator", "host", "created"
            );
            for k in &keys {
                let mark = if k.current { "*" } else { "" };
                let removed = if k.removed {
                    "  (removed; those targets lose it at their next catch-up)"
                } else if !k.proven {
                    "  (not proven: neither this password's nor endorsed by cairn; left alone)"
                } else {
                    ""
                };
                println!(
                    "{mark:<3}{:<12} {:<16} {:<16} {:<26} {}{removed}",
                    &k.id[..k.id.len().min(10)],
                    k.operator,
                    k.host,
                    k.created.get(..19).unwrap_or(&k.created),
                    k.targets.join(", ")
                );
            }
            Ok(0)
        }
        KeyCommand::Remove => {
            ctx.core.trail().command("key remove");
            let operator = operator()?;
            let r = key::remove(&ctx.core, &pw, &operator)?;
            report(ctx, &r, "removed")
        }
    }
}

fn report(ctx: &Ctx, r: &KeyReport, done: &str) -> Result<i32> {
    if ctx.json {
        ctx.print_json(r)?;
    } else {
        println!("key of `{}` {done}: {}", r.operator, r.keys.join(", "));
        println!("{:<16} {:<15}  detail", "target", "state");
        for t in &r.targets {
            println!(
                "{:<16} {:<15}  {}",
                t.name,
                label(t.state),
                t.detail.as_deref().unwrap_or("ok")
            );
        }
    }
    Ok(write_exit(r.partial))
}
