//! `cairn vault init|set|get|list|rm|passwd`: the credentials vault (`[vault]`).

use std::io::{IsTerminal, Read};

use anyhow::Result;
use cairn::{secret::Secret, secret::is_vault_name, vault::Vault};

use super::Ctx;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: VaultCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum VaultCommand {
    /// Create an empty vault (its passphrase as configured, else asked twice).
    Init,
    /// Store a secret: the value is read from standard input (or asked on the terminal),
    /// never taken from the command line.
    Set {
        /// Its name, as in `vault:NAME`.
        name: String,
    },
    /// Print a secret on standard output.
    Get {
        /// Its name.
        name: String,
    },
    /// List the names held (never the values).
    List,
    /// Remove a secret.
    Rm {
        /// Its name.
        name: String,
    },
    /// Change the passphrase (the new one from `CAIRN_NEW_VAULT_PASSPHRASE`, else asked twice).
    Passwd,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let access = &ctx.cfg().vault;
    let open = || cairn::vault::open_configured(access, ctx.core.gate());
    match args.command {
        VaultCommand::Init => {
            ctx.core.trail().command("vault init");
            let pass = match &access.passphrase {
                Some(_) => cairn::vault::passphrase(access)?,
                None => cairn::tty::new_secret("CAIRN_VAULT_PASSPHRASE", "New vault passphrase: ")?,
            };
            Vault::create(&access.path, &pass)?.remember_header(ctx.core.gate());
            say(ctx, &format!("vault created: {}", access.path.display()))
        }
        VaultCommand::Set { name } => {
            ctx.core.trail().command("vault set");
            check_name(&name)?;
            let value = read_value(&name)?;
            let mut vault = open()?;
            let replaced = vault.set(&name, &value);
            vault.save()?;
            let verb = if replaced { "replaced" } else { "stored" };
            say(ctx, &format!("{name}: {verb}"))
        }
        VaultCommand::Get { name } => {
            ctx.core.trail().command("vault get");
            let vault = open()?;
            let value = vault
                .get(&name)
                .ok_or_else(|| anyhow::anyhow!("the vault holds no secret named {name:?}"))?;
            println!("{}", value.expose());
            Ok(0)
        }
        VaultCommand::List => {
            ctx.core.trail().command("vault list");
            let names = open()?.names();
            if ctx.json {
                ctx.print_json(&names)?;
            } else {
                for n in names {
                    println!("{n}");
                }
            }
            Ok(0)
        }
        VaultCommand::Rm { name } => {
            ctx.core.trail().command("vault rm");
            let mut vault = open()?;
            if !vault.remove(&name) {
                anyhow::bail!("the vault holds no secret named {name:?}; nothing was changed");
            }
            vault.save()?;
            say(ctx, &format!("{name}: removed"))
        }
        VaultCommand::Passwd => {
            ctx.core.trail().command("vault passwd");
            let vault = open()?;
            let new =
                cairn::tty::new_secret("CAIRN_NEW_VAULT_PASSPHRASE", "New vault passphrase: ")?;
            vault
                .change_passphrase(&new)?
                .remember_header(ctx.core.gate());
            say(ctx, "vault passphrase changed")
        }
    }
}

fn check_name(name: &str) -> Result<()> {
    if !is_vault_name(name) {
        anyhow::bail!("secret name {name:?}: use letters, digits, `-`, `_`, `.` and `/` only");
    }
    Ok(())
}

/// The value from standard input (a pipe or a file), else asked on the terminal.
fn read_value(name: &str) -> Result<Secret> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(cairn::tty::ask(
            &format!("Value of {name}: "),
            "no terminal",
        )?);
    }
    let mut value = String::new();
    stdin.lock().read_to_string(&mut value)?;
    let value = value.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        anyhow::bail!("no value on standard input; nothing was changed");
    }
    Ok(Secret::new(value))
}

fn say(ctx: &Ctx, text: &str) -> Result<i32> {
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "done": text }))?;
    } else {
        println!("{text}");
    }
    Ok(0)
}
