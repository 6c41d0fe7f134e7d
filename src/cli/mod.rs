//! The command line: clap arguments, one file per verb (arguments -> library call -> output).

mod audit;
mod backup;
mod check;
mod diff;
mod dump;
mod erase;
pub mod exit;
mod find;
mod forget;
mod init;
mod key;
mod lock_extend;
mod ls;
mod progress;
mod prune;
mod purge;
mod recover;
mod report;
mod restore;
mod run;
mod schedule;
mod select;
mod snapshots;
mod status;
mod sync;
mod vault;
mod verify;

use std::{path::PathBuf, sync::Arc};

use anyhow::Result;
use cairn::{
    config::Config,
    context::Context,
    notify::Ping,
    report::{Cause, TargetOutcome, TargetState, human_bytes, label},
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
    /// Who is at work, for the audit log (default: the OS user). For `key add|remove`: whose
    /// key (the audit log then names `CAIRN_OPERATOR`, else the OS user, as who did it).
    #[arg(long, global = true, env = "CAIRN_OPERATOR", value_name = "NAME")]
    pub operator: Option<String>,
    /// The repository to work on, by its `[[repository]]` name (repeatable). Without it:
    /// every repository, except for the verbs that need exactly one.
    #[arg(long = "repo", global = true, value_name = "NAME")]
    pub repo: Vec<String>,
    /// Read the targets as they stood at TIME (`2026-12-01`, `2026-12-01T08:00`, with `Z` or an
    /// offset): only a bucket that keeps versions (S3 `object_lock`) can be read so, the newest
    /// version of each file written by then; later deletions and overwrites are not seen. For
    /// `snapshots`, `ls`, `find`, `diff`, `restore`, `dump`, `verify`, `check` (with `--from`)
    /// and `recover`.
    #[arg(long = "as-of", global = true, value_name = "TIME")]
    pub as_of: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
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
    /// Remove data no snapshot needs, on every target (a USB disk that is away obeys when back).
    #[command(after_help = exit::TABLE)]
    Prune(prune::Args),
    /// Remove paths (one person's files) from every snapshot and their data from every target
    /// (GDPR article 17); a target that is away obeys at its next catch-up.
    #[command(after_help = exit::TABLE)]
    Purge(purge::Args),
    /// Erase a client's repository from every target it uses (`--repo NAME`, asks first); a
    /// target that is away is erased by the next command of this configuration file.
    #[command(after_help = exit::TABLE)]
    Erase(erase::Args),
    /// The erasure certificates of this configuration file (erase and purge), per target.
    #[command(after_help = exit::TABLE)]
    Erasures(erase::ListArgs),
    /// List snapshots and which targets hold each.
    #[command(after_help = exit::TABLE)]
    Snapshots(snapshots::Args),
    /// List the files of a snapshot.
    #[command(after_help = exit::TABLE)]
    Ls(ls::Args),
    /// Restore a snapshot (or a path in it) into a folder.
    #[command(after_help = exit::TABLE)]
    Restore(restore::Args),
    /// Which snapshots hold files matching a pattern (newest first).
    #[command(after_help = exit::TABLE)]
    Find(find::Args),
    /// What changed between two snapshots: added, removed, modified files.
    #[command(after_help = exit::TABLE)]
    Diff(diff::Args),
    /// Write a file of a snapshot to standard output (a folder: as a tar stream).
    #[command(after_help = exit::TABLE)]
    Dump(dump::Args),
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
    /// The nightly job: backup (after catching targets up), forget, prune and verify when due,
    /// then metrics, a report, hooks and a ping.
    #[command(after_help = exit::TABLE)]
    Run(run::Args),
    /// Extend the Object Lock of everything the kept snapshots still need (S3 `object_lock`
    /// targets), so that nothing needed today runs out of its lock.
    #[command(name = "lock-extend", after_help = exit::TABLE)]
    LockExtend(lock_extend::Args),
    /// Copy a locked bucket's repository as it stood at `--as-of TIME` into an empty target
    /// (after an attack); stock restic reads the result.
    #[command(after_help = exit::TABLE)]
    Recover(recover::Args),
    /// Evidence for an auditor: problems in words and, per target, the last backup,
    /// verification and read check; `--html FILE` writes it as one self-contained page.
    #[command(after_help = exit::TABLE)]
    Report(report::Args),
    /// Print, install or remove the systemd timers for `cairn run` (and a separate verify).
    Schedule(schedule::Args),
    /// Operators' keys: add, list, remove (on every target).
    #[command(after_help = exit::TABLE)]
    Key(key::Args),
    /// The credentials vault: init, set, get, list, rm, passwd.
    #[command(after_help = exit::TABLE)]
    Vault(vault::Args),
    /// The audit log: show it, verify its chain and its copies on the targets.
    #[command(after_help = exit::TABLE)]
    Audit(audit::Args),
}

impl Command {
    /// The verb, as recorded in the state folder and the metrics.
    fn name(&self) -> &'static str {
        match self {
            Self::Init(_) => "init",
            Self::Backup(_) => "backup",
            Self::Forget(_) => "forget",
            Self::Prune(_) => "prune",
            Self::Purge(_) => "purge",
            Self::Erase(_) => "erase",
            Self::Erasures(_) => "erasures",
            Self::Snapshots(_) => "snapshots",
            Self::Ls(_) => "ls",
            Self::Restore(_) => "restore",
            Self::Find(_) => "find",
            Self::Diff(_) => "diff",
            Self::Dump(_) => "dump",
            Self::Check(_) => "check",
            Self::Status(_) => "status",
            Self::Sync(_) => "sync",
            Self::Verify(_) => "verify",
            Self::Run(_) => "run",
            Self::Report(_) => "report",
            Self::Recover(_) => "recover",
            Self::LockExtend(_) => "lock-extend",
            Self::Schedule(_) => "schedule",
            Self::Key(_) => "key",
            Self::Vault(_) => "vault",
            Self::Audit(_) => "audit",
        }
    }

    /// Whether it writes to the targets: such a command also finishes pending erasures.
    fn writes(&self) -> bool {
        matches!(
            self,
            Self::Init(_)
                | Self::Backup(_)
                | Self::Forget(_)
                | Self::Prune(_)
                | Self::Purge(_)
                | Self::Sync(_)
                | Self::Run(_)
        )
    }

    /// Whether it can read the targets as they stood at a moment (`--as-of`).
    fn reads_as_of(&self) -> bool {
        matches!(
            self,
            Self::Snapshots(_)
                | Self::Ls(_)
                | Self::Find(_)
                | Self::Diff(_)
                | Self::Restore(_)
                | Self::Dump(_)
                | Self::Verify(_)
                | Self::Check(_)
                | Self::Recover(_)
        )
    }

    /// Whether its outcome is recorded and the metrics rewritten after it: the commands that
    /// change or look at the targets (`run` records itself).
    fn is_recorded(&self) -> bool {
        (self.writes() && !matches!(self, Self::Run(_)))
            || matches!(
                self,
                Self::Erase(_)
                    | Self::Check(_)
                    | Self::Status(_)
                    | Self::Verify(_)
                    | Self::LockExtend(_)
            )
    }
}

/// What every verb is given: the library's context of the loaded configuration (observed by
/// the reporter), and how to print.
pub struct Ctx {
    pub core: Context,
    pub json: bool,
    pub reporter: Reporter,
    /// Every repository of the configuration file (`schedule` covers them all).
    pub file: Arc<Vec<Config>>,
    /// Whether this is one of several repositories the command runs on.
    pub among_several: bool,
    /// `--as-of`: the targets are read as they stood then.
    pub as_of: Option<jiff::Timestamp>,
    /// With several repositories in one `--json` run, each verb's document is kept here and
    /// printed with the others as one.
    collected: Option<std::cell::RefCell<Option<serde_json::Value>>>,
}

impl Ctx {
    fn cfg(&self) -> &Config {
        self.core.cfg()
    }

    /// Prints `value` as JSON on stdout (or keeps it for the document of all repositories).
    fn print_json<T: Serialize>(&self, value: &T) -> Result<()> {
        match &self.collected {
            Some(slot) => *slot.borrow_mut() = Some(serde_json::to_value(value)?),
            None => println!("{}", serde_json::to_string_pretty(value)?),
        }
        Ok(())
    }
}

/// How a verb treats a file of several repositories when no `--repo` is given.
enum Scope {
    /// Every repository, one after another.
    All,
    /// Exactly one must be named.
    One,
    /// Not about a repository (the vault, the timers): once.
    File,
}

impl Command {
    fn scope(&self) -> Scope {
        match self {
            Self::Restore(_)
            | Self::Ls(_)
            | Self::Dump(_)
            | Self::Find(_)
            | Self::Diff(_)
            | Self::Forget(_)
            | Self::Prune(_)
            | Self::Purge(_)
            | Self::Erase(_)
            | Self::Recover(_)
            | Self::Key(_) => Scope::One,
            Self::Vault(_) | Self::Schedule(_) | Self::Erasures(_) => Scope::File,
            _ => Scope::All,
        }
    }
}

/// The repositories the command works on, in configuration order.
fn choose(all: Vec<Config>, asked: &[String], command: &Command) -> Result<Vec<Config>> {
    let name_of = |c: &Config| {
        c.client
            .clone()
            .or_else(|| c.repository.name.clone())
            .unwrap_or_default()
    };
    let names: Vec<String> = all.iter().map(name_of).collect();
    let usage = |m: String| anyhow::Error::new(cairn::error::Error::Usage(m));
    if let Some(unknown) = asked.iter().find(|a| !names.contains(a)) {
        return Err(usage(format!(
            "no repository named `{unknown}` in {} (configured: {})",
            all[0].path.display(),
            names.join(", ")
        )));
    }
    if !asked.is_empty() {
        return Ok(all
            .into_iter()
            .filter(|c| asked.contains(&name_of(c)))
            .collect());
    }
    if all.len() == 1 {
        return Ok(all);
    }
    match command.scope() {
        Scope::All => Ok(all),
        Scope::File => Ok(all.into_iter().take(1).collect()),
        Scope::One => Err(usage(format!(
            "`cairn {}` works on one repository: name it with --repo (configured: {})",
            command.name(),
            names.join(", ")
        ))),
    }
}

/// Of several repositories' exit codes, the one the whole command exits with: a failure (the
/// first, in configuration order) over unread files (6) over partially done (3) over success.
fn worst(codes: &[i32]) -> i32 {
    let rank = |c: i32| match c {
        exit::OK => 0,
        exit::PARTIAL => 1,
        exit::INCOMPLETE => 2,
        _ => 3,
    };
    codes
        .iter()
        .copied()
        .fold(exit::OK, |w, c| if rank(c) > rank(w) { c } else { w })
}

/// Runs the parsed command on each chosen repository; returns the exit code.
///
/// # Errors
/// Any failure of a single repository's command; `main` maps it to an exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let all = Config::load_all(&cli.config)?;
    let reporter = Reporter::new(Mode::detect(cli.json));
    let mut warned = std::collections::BTreeSet::new();
    for w in all.iter().flat_map(Config::warnings) {
        if warned.insert(w.clone()) {
            reporter.print("WARN", &w);
        }
    }
    let file = Arc::new(all.clone());
    let all = leave_out_erased(all, &cli, &reporter)?;
    let live = all.clone();
    let chosen = choose(all, &cli.repo, &cli.command)?;
    // The report is of the repositories together (one page), not one after another.
    if let Command::Report(a) = &cli.command {
        return report::run(&chosen, !cli.repo.is_empty(), &cli, &reporter, a);
    }
    let done = run_chosen(&cli, chosen, &reporter, &file);
    if matches!(cli.command, Command::Run(_)) {
        report::after_run(&live, cli.operator.as_deref(), &reporter);
    }
    // Last, so that targets this command caught up count as having obeyed.
    if cli.command.writes() {
        resume_erasures(&file[0], &reporter);
    }
    done
}

/// Runs the command on each chosen repository (see [`run`]).
fn run_chosen(
    cli: &Cli,
    chosen: Vec<Config>,
    reporter: &Reporter,
    file: &Arc<Vec<Config>>,
) -> Result<i32> {
    if chosen.len() == 1 {
        let cfg = chosen
            .into_iter()
            .next()
            .expect("choose gives one at least");
        return run_one(cli, cli.command.clone(), cfg, reporter, file, false, None);
    }
    // One repository after another: memory stays that of one, and a client's failure is
    // reported for it while the others run. The file's ping URL hears of the whole run once,
    // so one client's success never hides another's failure.
    let ping = match &cli.command {
        Command::Run(_) => file[0].notify.ping_url.clone(),
        _ => None,
    };
    let timeout = file[0].notify.timeout();
    if let Some(url) = &ping {
        let p = cairn::notify::ping(url, Ping::Start, "cairn run started", timeout);
        if !p.ok() {
            reporter.print("WARN", &p.describe());
        }
    }
    let mut codes = Vec::new();
    let mut docs = Vec::new();
    for cfg in chosen {
        let name = cfg.client.clone().unwrap_or_default();
        if !cli.json {
            println!("== repository {name} ==");
        }
        let slot = cli.json.then(|| std::cell::RefCell::new(None));
        // A panic (a library's bug met on one client's data) fails that client only.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_one(
                cli,
                cli.command.clone(),
                cfg,
                reporter,
                file,
                true,
                slot.as_ref(),
            )
        }))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("stopped by an internal error (a panic)")));
        let (code, error) = match result {
            Ok(code) => (code, None),
            Err(e) => {
                let code = code_of(&e);
                reporter.print("ERROR", &format!("repository `{name}`: {e:#}"));
                (code, Some(format!("{e:#}")))
            }
        };
        codes.push(code);
        docs.push(serde_json::json!({
            "repository": name,
            "exit_code": code,
            "error": error,
            "report": slot.and_then(std::cell::RefCell::into_inner),
        }));
    }
    let code = worst(&codes);
    if let Some(url) = &ping {
        let mut body = format!("cairn run of {} repositories: exit {code}\n", docs.len());
        for d in &docs {
            body.push_str(&format!(
                "{}: exit {}\n",
                d["repository"].as_str().unwrap_or(""),
                d["exit_code"]
            ));
        }
        let which = if code == exit::OK {
            Ping::Success
        } else {
            Ping::Fail
        };
        let p = cairn::notify::ping(url, which, &body, timeout);
        if !p.ok() {
            reporter.print("WARN", &p.describe());
        }
    }
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "repositories": docs,
                "exit_code": code,
            }))?
        );
    } else {
        let failed: Vec<String> = docs
            .iter()
            .filter(|d| d["exit_code"] != 0)
            .map(|d| {
                format!(
                    "{} (exit {})",
                    d["repository"].as_str().unwrap_or(""),
                    d["exit_code"]
                )
            })
            .collect();
        if !failed.is_empty() {
            println!("not done in full: {}", failed.join(", "));
        }
    }
    Ok(code)
}

/// The repositories of the file, less those erased: a command never works on an erased
/// client again (`erase` itself finishes or shows its erasure). Naming one is an error.
fn leave_out_erased(all: Vec<Config>, cli: &Cli, reporter: &Reporter) -> Result<Vec<Config>> {
    // `erase` finishes or shows its erasure; `erasures` lists them, even once every client of
    // the file is erased.
    if matches!(cli.command, Command::Erase(_) | Command::Erasures(_)) {
        return Ok(all);
    }
    let register = cairn::erasure::Register::load(&cairn::erasure::dir(&all[0]))?;
    let mut live = Vec::new();
    for cfg in all {
        let erased = cfg.client.as_deref().and_then(|n| register.erased(n));
        let Some(cert) = erased else {
            live.push(cfg);
            continue;
        };
        let why = format!(
            "repository `{}` was erased (decided {}, certificate {}, `cairn erasures`); take its \
             [[repository]] section out of {}",
            cert.repository,
            cert.decided,
            cert.id,
            cfg.path.display()
        );
        if cli.repo.contains(&cert.repository) {
            return Err(anyhow::Error::new(cairn::error::Error::Usage(why)));
        }
        if !matches!(cli.command.scope(), Scope::File) {
            let pending: Vec<&str> = cert.pending().map(|a| a.target.as_str()).collect();
            let pending = if pending.is_empty() {
                String::new()
            } else {
                format!(" (still to be erased on {})", pending.join(", "))
            };
            reporter.print("INFO", &format!("{why}; left out{pending}"));
        }
    }
    if live.is_empty() {
        return Err(anyhow::Error::new(cairn::error::Error::Usage(
            "every repository of the configuration was erased".into(),
        )));
    }
    Ok(live)
}

/// Erasures still pending on a target that is back, and copies of erased repositories that
/// came back, are dealt with by every command that writes, whatever client it is for.
fn resume_erasures(cfg: &Config, reporter: &Reporter) {
    let ctx = Context::new(cfg.clone(), Arc::new(reporter.clone()));
    let mut pending = std::collections::BTreeMap::new();
    for r in cairn::ops::erase::resume(&ctx) {
        if r.what == "pending" {
            pending
                .entry(r.repository.clone())
                .or_insert_with(Vec::new)
                .push(format!(
                    "`{}` ({})",
                    r.target,
                    r.detail.as_deref().unwrap_or("away")
                ));
            continue;
        }
        reporter.print(
            "INFO",
            &format!(
                "erasure of `{}`: {} on `{}` ({} file(s), {})",
                r.repository,
                r.what,
                r.target,
                r.files,
                human_bytes(r.bytes)
            ),
        );
    }
    for (repo, targets) in pending {
        reporter.print(
            "WARN",
            &format!(
                "erasure of `{repo}` still pending on {}; done when reachable",
                targets.join(", ")
            ),
        );
    }
}

/// The exit code of a failed command.
fn code_of(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<cairn::error::Error>()
        .map_or(exit::FAILED, exit::for_error)
}

/// Runs the command on one repository, with its audit record and state.
fn run_one(
    cli: &Cli,
    command: Command,
    cfg: Config,
    reporter: &Reporter,
    file: &Arc<Vec<Config>>,
    several: bool,
    collected: Option<&std::cell::RefCell<Option<serde_json::Value>>>,
) -> Result<i32> {
    let as_of = match &cli.as_of {
        None => None,
        Some(t) => {
            if !command.reads_as_of() {
                anyhow::bail!(cairn::error::Error::Usage(format!(
                    "`cairn {}` works on the targets as they are: --as-of is for snapshots, ls, \
                     find, diff, restore, dump, verify, check and recover",
                    command.name()
                )));
            }
            Some(cairn::selection::parse_time(t)?)
        }
    };
    let core = Context::new(cfg, Arc::new(reporter.clone()));
    let ctx = Ctx {
        core: match as_of {
            Some(t) => core.reading_as_of(t),
            None => core,
        },
        as_of,
        json: cli.json,
        reporter: reporter.clone(),
        file: file.clone(),
        among_several: several,
        collected: collected.map(|_| std::cell::RefCell::new(None)),
    };
    let (name, recorded) = (command.name(), command.is_recorded());
    // Every command on the repository or the vault leaves an audit record (`schedule` only
    // writes timers; `audit` reads the log).
    let audited = !matches!(
        command,
        Command::Schedule(_) | Command::Audit(_) | Command::Report(_)
    );
    let actor = match &command {
        Command::Key(_) => std::env::var("CAIRN_OPERATOR").ok(),
        _ => cli.operator.clone(),
    };
    if audited {
        ctx.core.trail().begin(ctx.cfg(), name, actor.as_deref());
    }
    let started = std::time::Instant::now();
    let mut outcome = match command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Forget(a) => forget::run(&ctx, a),
        Command::Prune(a) => prune::run(&ctx, a),
        Command::Purge(a) => purge::run(&ctx, a),
        Command::Erase(a) => erase::run(&ctx, a),
        Command::Erasures(a) => erase::list(&ctx, a),
        Command::Snapshots(a) => snapshots::run(&ctx, a),
        Command::Ls(a) => ls::run(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Find(a) => find::run(&ctx, a),
        Command::Diff(a) => diff::run(&ctx, a),
        Command::Dump(a) => dump::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Sync(a) => sync::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Run(a) => run::run(&ctx, a),
        Command::LockExtend(a) => lock_extend::run(&ctx, a),
        Command::Recover(a) => recover::run(&ctx, a),
        Command::Report(a) => report::run(
            std::slice::from_ref(ctx.cfg()),
            true,
            cli,
            &ctx.reporter,
            &a,
        ),
        Command::Schedule(a) => schedule::run(&ctx, a),
        Command::Key(a) => key::run(&ctx, a, cli.operator.as_deref()),
        Command::Vault(a) => vault::run(&ctx, a),
        Command::Audit(a) => audit::run(&ctx, a),
    };
    if audited {
        let (code, error) = match &outcome {
            Ok(c) => (*c, None),
            Err(e) => (code_of(e), Some(format!("{e:#}"))),
        };
        let finished = ctx.core.trail().finish(code, error.as_deref());
        if let Some(w) = &finished.pending {
            ctx.reporter.print("WARN", w);
        }
        for lost in &finished.lost {
            ctx.reporter.print("ERROR", lost);
        }
        // A command whose record is lost did not fully succeed: the trail has a gap.
        if !finished.lost.is_empty() && matches!(outcome, Ok(exit::OK)) {
            outcome = Ok(exit::FAILED);
        }
    }
    if recorded {
        let code = match &outcome {
            Ok(c) => *c,
            Err(e) => code_of(e),
        };
        let secs = started.elapsed().as_secs_f64();
        ctx.core
            .update_state(|s| s.record_command(name, code, secs));
        cairn::metrics::write_or_warn(ctx.cfg(), ctx.core.observer().as_ref());
    }
    if let (Some(out), Some(mine)) = (collected, &ctx.collected) {
        *out.borrow_mut() = mine.borrow_mut().take();
    }
    outcome
}

/// The per-target table every write command prints.
/// Files that fail the proof of authenticity, one line per target and reason; `otherwise` says
/// what was done when one could not be moved aside.
fn print_foreign(foreign: &[cairn::replica::Foreign], otherwise: &str) {
    let causes = cairn::report::causes(foreign.iter().map(|f| {
        let done = if f.quarantined {
            "quarantined, not copied".to_string()
        } else {
            format!("NOT quarantined; {otherwise}")
        };
        let why = f.why.replace(&f.path, "…");
        (
            (f.target.clone(), format!("{why} ({done})")),
            Some(f.path.clone()),
        )
    }));
    for c in &causes {
        let (target, what) = &c.key;
        print_cause("FOREIGN", target, "not proven", what, c, "file");
    }
}

/// One line per cause, before the per-target table: `LEVEL [target] class: what (N unit, e.g.
/// a, b, c)`; the per-file list is in `--json`.
fn print_cause<K>(level: &str, target: &str, class: &str, what: &str, c: &Cause<K>, unit: &str) {
    let target = if target.is_empty() {
        String::new()
    } else {
        format!(" [{target}]")
    };
    println!("{level}{target} {class}: {}", c.describe(what, unit));
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
