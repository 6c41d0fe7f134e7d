//! `cairn schedule print|install|remove`: the systemd timers of the nightly job.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};
use cairn::schedule::{self, Units};

use super::{Ctx, exit};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum Action {
    /// Print the units (nothing is written).
    Print(Opts),
    /// Write the units, reload systemd and enable the timers.
    Install(Opts),
    /// Disable the timers and remove the units.
    Remove(Opts),
}

#[derive(Debug, Clone, clap::Args)]
struct Opts {
    /// User units (`~/.config/systemd/user`, `systemctl --user`) instead of system units.
    #[arg(long)]
    user: bool,
    /// Only write or remove the files; do not call systemctl.
    #[arg(long)]
    files_only: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let (Action::Print(o) | Action::Install(o) | Action::Remove(o)) = &args.action;
    let exe = std::env::current_exe().context("where is this cairn binary")?;
    let config = std::path::absolute(&ctx.cfg().path)?;
    let units = schedule::render(&ctx.file, &exe, &config, &cairn::state::base(), o.user);
    for w in &units.warnings {
        ctx.reporter.print("WARN", w);
    }
    let dir = schedule::unit_dir(o.user);
    match &args.action {
        Action::Print(_) => print(ctx, &units, &dir),
        Action::Install(o) => install(ctx, &units, &dir, o),
        Action::Remove(o) => remove(ctx, &units, &dir, o),
    }
}

fn print(ctx: &Ctx, units: &Units, dir: &Path) -> Result<i32> {
    if ctx.json {
        ctx.print_json(&units)?;
    } else {
        for u in &units.units {
            println!("# {}\n{}", dir.join(&u.name).display(), u.text);
        }
    }
    Ok(exit::OK)
}

fn install(ctx: &Ctx, units: &Units, dir: &Path, o: &Opts) -> Result<i32> {
    // The state folder must exist: the sandbox makes only existing paths writable.
    cairn::state::dir(ctx.cfg())?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for u in &units.units {
        let path = dir.join(&u.name);
        std::fs::write(&path, &u.text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if o.files_only {
        return Ok(exit::OK);
    }
    systemctl(o.user, &["daemon-reload"])?;
    let mut enable = vec!["enable", "--now"];
    enable.extend(units.timers.iter().map(String::as_str));
    systemctl(o.user, &enable)?;
    println!("enabled {}", units.timers.join(", "));
    Ok(exit::OK)
}

fn remove(_ctx: &Ctx, units: &Units, dir: &Path, o: &Opts) -> Result<i32> {
    if !o.files_only {
        let mut disable = vec!["disable", "--now"];
        disable.extend(units.timers.iter().map(String::as_str));
        systemctl(o.user, &disable)?;
    }
    for u in &units.units {
        let path = dir.join(&u.name);
        match std::fs::remove_file(&path) {
            Ok(()) => println!("removed {}", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    if !o.files_only {
        systemctl(o.user, &["daemon-reload"])?;
    }
    Ok(exit::OK)
}

fn systemctl(user: bool, args: &[&str]) -> Result<()> {
    let mut c = Command::new("systemctl");
    if user {
        c.arg("--user");
    }
    let status = c
        .args(args)
        .status()
        .context("cannot run systemctl (use --files-only without systemd)")?;
    if !status.success() {
        bail!("`systemctl {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
