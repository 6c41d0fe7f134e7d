//! The commands run in-process over memory stores (no servers): each test is a whole command,
//! from configuration to report, in milliseconds. The same behaviours are tested against real
//! servers through the binary in `tests/`.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use rustic_core::NoProgressBars;

use super::{backup, check, init, restore, status, sync};
use crate::{
    config::Config,
    context::Context,
    progress::{Observer, Silent},
    report::TargetState,
    secret::Secret,
    store::{MemStore, Store},
};

/// A configuration over memory targets (registered under unique names) and a source folder.
struct Setup {
    dir: tempfile::TempDir,
    names: Vec<String>,
    stores: Vec<Arc<MemStore>>,
}

impl Setup {
    fn new(targets: usize) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::tempdir().unwrap();
        let run = N.fetch_add(1, Ordering::Relaxed);
        let names: Vec<String> = (0..targets).map(|i| format!("m{run}-{i}")).collect();
        let stores = names.iter().map(|_| Arc::new(MemStore::new())).collect();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        for (name, body) in [
            ("a.txt", "alpha\n".repeat(1000)),
            ("b.bin", "b".repeat(70_000)),
        ] {
            std::fs::write(dir.path().join("src").join(name), body).unwrap();
        }
        Self { dir, names, stores }
    }

    /// A context over the configuration `cfg`, its targets opening as their memory stores.
    fn over(&self, cfg: Config) -> Context {
        let ctx = Context::new(cfg, silent());
        for (name, store) in self.names.iter().zip(&self.stores) {
            ctx.use_memory(name, store.clone());
        }
        ctx
    }

    /// The context of the configuration over the first `n` targets.
    fn ctx(&self, n: usize) -> Context {
        self.over(self.config(n))
    }

    /// The context of the configuration over the targets at `which` only.
    fn ctx_of(&self, which: &[usize]) -> Context {
        self.over(self.config_of(which))
    }

    /// The configuration over the first `n` targets.
    fn config(&self, n: usize) -> Config {
        self.config_with(n, "")
    }

    /// The configuration over the first `n` targets, with `extra` sections.
    fn config_with(&self, n: usize, extra: &str) -> Config {
        let mut text = format!(
            "{extra}[backup]\nsources = [\"{}\"]\n",
            self.dir.path().join("src").display()
        );
        for name in &self.names[..n] {
            text.push_str(&format!(
                "[[target]]\nname = \"{name}\"\nkind = \"local\"\npath = \"unused-{name}\"\n"
            ));
        }
        Config::parse(&text, &self.dir.path().join(format!("t{n}.toml"))).unwrap()
    }

    /// The configuration over the targets at `which` only.
    fn config_of(&self, which: &[usize]) -> Config {
        let mut text = format!(
            "[backup]\nsources = [\"{}\"]\n",
            self.dir.path().join("src").display()
        );
        for &i in which {
            let name = &self.names[i];
            text.push_str(&format!(
                "[[target]]\nname = \"{name}\"\nkind = \"local\"\npath = \"unused-{name}\"\n"
            ));
        }
        let file = format!("only-{which:?}.toml").replace([' ', ',', '[', ']'], "-");
        Config::parse(&text, &self.dir.path().join(file)).unwrap()
    }

    fn files(&self, i: usize) -> Vec<String> {
        let s = &self.stores[i];
        ["keys", "data", "index", "snapshots"]
            .iter()
            .flat_map(|d| {
                s.list(d)
                    .unwrap()
                    .into_iter()
                    .map(move |(p, _)| format!("{d}/{p}"))
            })
            .chain(s.stat("config").unwrap().map(|_| "config".to_string()))
            .collect()
    }
}

fn pw() -> Secret {
    Secret::new("unit-test".into())
}

fn silent() -> Arc<dyn Observer> {
    Arc::new(Silent)
}

fn backed_up(setup: &Setup, n: usize) -> backup::BackupReport {
    let opts = backup::BackupOptions::default();
    backup::run(&setup.ctx(n), &pw(), &opts, NoProgressBars).unwrap()
}

#[test]
fn a_backup_lands_identically_on_every_target_and_restores() {
    let s = Setup::new(2);
    init::run(&s.ctx(2), &pw(), false, NoProgressBars).unwrap();
    let r = backed_up(&s, 2);
    assert!(!r.partial, "{:?}", r.targets);
    assert!(r.targets.iter().all(|t| t.state == TargetState::Complete));
    assert_eq!(s.files(0), s.files(1));

    let dest = s.dir.path().join("restored");
    let opts = restore::RestoreOptionsCairn {
        selector: "latest".parse().unwrap(),
        dest: dest.clone(),
        from: Some(s.names[1].clone()),
        ..Default::default()
    };
    restore::run(&s.ctx(2), &pw(), &opts, NoProgressBars).unwrap();
    let src = s.dir.path().join("src");
    let restored = find(&dest, "a.txt");
    assert_eq!(
        std::fs::read(restored).unwrap(),
        std::fs::read(src.join("a.txt")).unwrap()
    );
}

/// Keeps every warning.
#[derive(Debug, Default)]
struct Warnings(std::sync::Mutex<Vec<String>>);

impl Observer for Warnings {
    fn warn(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

#[test]
fn the_first_backup_with_init_creates_the_folders_without_a_warning() {
    // Real local folders that do not exist yet, as in targets.toml.example.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), "a").unwrap();
    let text = format!(
        "[backup]\nsources = [\"{}\"]\n[[target]]\nname = \"a\"\nkind = \"local\"\npath = \"new/a\"\n",
        src.display()
    );
    let cfg = Config::parse(&text, &dir.path().join("t.toml")).unwrap();
    let warnings = Arc::new(Warnings::default());
    let ctx = Context::new(cfg, warnings.clone());
    let opts = backup::BackupOptions {
        init: true,
        ..backup::BackupOptions::default()
    };
    let r = backup::run(&ctx, &pw(), &opts, NoProgressBars).unwrap();
    assert!(!r.partial, "{:?}", r.targets);
    assert!(dir.path().join("new/a/config").exists());
    let warned = warnings.0.lock().unwrap();
    assert!(warned.is_empty(), "{warned:?}");
}

#[test]
fn a_backup_given_a_time_records_it() {
    let s = Setup::new(1);
    init::run(&s.ctx(1), &pw(), false, NoProgressBars).unwrap();
    let opts = backup::BackupOptions {
        time: Some(backup::parse_time("2023-03-01T10:00:00Z").unwrap()),
        ..backup::BackupOptions::default()
    };
    backup::run(&s.ctx(1), &pw(), &opts, NoProgressBars).unwrap();
    let r = super::snapshots::run(&s.ctx(1), &pw(), NoProgressBars).unwrap();
    let shown: jiff::Timestamp = r.snapshots[0].time.parse().unwrap();
    assert_eq!(shown, "2023-03-01T10:00:00Z".parse().unwrap());
}

#[test]
fn snapshot_times_are_read_as_restic_writes_them_or_refused() {
    let local = backup::parse_time("2024-01-21 14:15:23").unwrap();
    assert_eq!(local.datetime().to_string(), "2024-01-21T14:15:23");
    let utc = backup::parse_time("2024-01-21T14:15:23+01:00").unwrap();
    assert_eq!(utc.timestamp(), "2024-01-21T13:15:23Z".parse().unwrap());
    let e = backup::parse_time("yesterday").unwrap_err().to_string();
    assert!(
        e.contains("\"yesterday\"") && e.contains("YYYY-MM-DD"),
        "{e}"
    );
}

#[test]
fn a_target_that_missed_the_backups_is_brought_level_by_sync() {
    let s = Setup::new(2);
    init::run(&s.ctx(1), &pw(), false, NoProgressBars).unwrap();
    backed_up(&s, 1);
    assert!(s.files(1).is_empty());

    let r = sync::run_and_record(&s.ctx(2), Some(&pw()), None, &NoProgressBars).unwrap();
    assert!(!r.partial, "{:?}", r.targets);
    assert_eq!(r.targets[1].state, TargetState::CaughtUp);
    assert_eq!(s.files(0), s.files(1));
}

#[test]
fn without_the_password_sync_copies_nothing() {
    let s = Setup::new(2);
    init::run(&s.ctx(1), &pw(), false, NoProgressBars).unwrap();
    backed_up(&s, 1);
    let r = sync::run_and_record(&s.ctx(2), None, None, &NoProgressBars).unwrap();
    assert_eq!(r.targets[1].state, TargetState::Incomplete);
    assert!(r.partial);
    assert!(s.files(1).is_empty(), "{:?}", s.files(1));
}

#[test]
fn check_names_a_damaged_pack_on_its_target_and_heal_repairs_it() {
    let s = Setup::new(2);
    init::run(&s.ctx(2), &pw(), false, NoProgressBars).unwrap();
    backed_up(&s, 2);
    let pack = s
        .files(1)
        .into_iter()
        .find(|p| p.starts_with("data/"))
        .unwrap();
    let good = s.stores[1].read(&pack).unwrap();
    let mut bad = good.to_vec();
    bad[10] ^= 0xff;
    s.stores[1].write(&pack, vec![Bytes::from(bad)]).unwrap();

    let mut opts = check::CheckOptions {
        read_data: check::ReadData::All,
        heal: false,
        seed: None,
    };
    let r = check::run(&s.ctx(2), &opts, Some(&pw()), &NoProgressBars).unwrap();
    // Named on the damaged target only (rustic_core's own check there may add a finding).
    assert!(
        r.problems.iter().all(|p| p.target == s.names[1]),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.path == pack && p.kind == check::ProblemKind::Corrupt),
        "{:?}",
        r.problems
    );

    opts.heal = true;
    let r = check::run(&s.ctx(2), &opts, Some(&pw()), &NoProgressBars).unwrap();
    assert_eq!(r.open_problems(), 0, "{:?}", r.problems);
    assert_eq!(s.stores[1].read(&pack).unwrap(), good);
}

/// The file called `name` anywhere below `dir` (a restore recreates the source's full path).
fn find(dir: &Path, name: &str) -> PathBuf {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == name) {
                return p;
            }
            if p.is_dir() {
                todo.push(p);
            }
        }
    }
    panic!("{name} not under {}", dir.display())
}

#[test]
fn a_target_failing_during_a_prune_means_nothing_is_removed_anywhere() {
    let s = Setup::new(2);
    let cfg = s.ctx(2);
    init::run(&cfg, &pw(), false, NoProgressBars).unwrap();
    backed_up(&s, 2);
    std::fs::write(s.dir.path().join("src/b.bin"), "c".repeat(90_000)).unwrap();
    backed_up(&s, 2);
    let opts = super::forget::ForgetOptions {
        policy: crate::retention::Policy {
            keep_last: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let forgot = super::forget::run(&cfg, &pw(), &opts).unwrap();
    assert_eq!(forgot.removed.len(), 1);
    let before: Vec<Vec<String>> = (0..2).map(|i| s.files(i)).collect();

    // The second target fails every write of the prune: the first keeps its old files too.
    s.stores[1].fail_writes(true);
    let prune_opts = super::prune::PruneOptions::default();
    let r = super::prune::run(&cfg, &pw(), &prune_opts, &NoProgressBars).unwrap();
    assert!(r.partial);
    assert!(r.record.is_none(), "{r:?}");
    let waiting = r.deferred.clone().unwrap_or_default();
    assert!(waiting.contains(&s.names[1]), "{waiting}");
    for (i, was) in before.iter().enumerate() {
        let now = s.files(i);
        assert!(was.iter().all(|f| now.contains(f)), "target {i} lost files");
    }
    assert!(
        s.stores[0].list(crate::deletion::DIR).unwrap().len() == 1,
        "only forget's record"
    );

    // Back in order: the next prune finishes, on both.
    s.stores[1].fail_writes(false);
    let r = super::prune::run(&cfg, &pw(), &prune_opts, &NoProgressBars).unwrap();
    assert!(!r.partial, "{r:?}");
    assert!(r.record.is_some());
    assert_eq!(s.files(0), s.files(1));
    assert!(r.targets.iter().all(|t| t.files_removed > 0), "{r:?}");
}

#[test]
fn a_target_that_missed_a_prune_and_backed_up_alone_brings_that_snapshot_with_its_data() {
    let s = Setup::new(2);
    let both = s.ctx(2);
    init::run(&both, &pw(), false, NoProgressBars).unwrap();
    backed_up(&s, 2);
    let b_bin = s.dir.path().join("src/b.bin");
    let old = std::fs::read(&b_bin).unwrap();
    std::fs::write(&b_bin, "c".repeat(90_000)).unwrap();
    backed_up(&s, 2);

    // The second target taken out of the configuration: forget and prune on the first alone
    // remove the old b.bin's data there.
    let first = s.ctx_of(&[0]);
    let keep_last = super::forget::ForgetOptions {
        policy: crate::retention::Policy {
            keep_last: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    super::forget::run(&first, &pw(), &keep_last).unwrap();
    let prune_opts = super::prune::PruneOptions {
        max_unused: "0".into(),
        ..Default::default()
    };
    let pruned = super::prune::run(&first, &pw(), &prune_opts, &NoProgressBars).unwrap();
    assert!(pruned.record.is_some());

    // The second, alone, backs up the old b.bin again: it deduplicates against the old data,
    // which it still holds.
    std::fs::write(&b_bin, &old).unwrap();
    let second = s.ctx_of(&[1]);
    let solo = backup::run(
        &second,
        &pw(),
        &backup::BackupOptions::default(),
        NoProgressBars,
    )
    .unwrap();

    // Status names the snapshot the prune never judged, before they meet again.
    let status = status::run(&both, Some(&pw())).unwrap();
    let behind = &status.targets[1];
    assert_eq!(behind.state, TargetState::Lagging);
    assert!(
        behind
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains(&solo.snapshot[..8]),
        "{behind:?}"
    );
    // Together again: the prune's deletions would break that snapshot, so they are voided,
    // and the snapshot reaches the first target with the data it needs.
    let r = sync::run_and_record(&both, Some(&pw()), None, &NoProgressBars).unwrap();
    assert!(!r.partial, "{:?}", r.targets);
    let snap = format!("snapshots/{}", solo.snapshot);
    assert!(s.files(0).contains(&snap));
    for from in &s.names {
        let dest = s.dir.path().join(format!("solo-restored-{from}"));
        let opts = restore::RestoreOptionsCairn {
            selector: solo.snapshot.parse().unwrap(),
            dest: dest.clone(),
            from: Some(from.clone()),
            ..Default::default()
        };
        restore::run(&both, &pw(), &opts, NoProgressBars).unwrap();
        assert_eq!(std::fs::read(find(&dest, "b.bin")).unwrap(), old, "{from}");
    }
    // The next prune with both judges every snapshot: identical targets again.
    let r = super::prune::run(&both, &pw(), &prune_opts, &NoProgressBars).unwrap();
    assert!(!r.partial, "{r:?}");
    assert_eq!(s.files(0), s.files(1));
}

/// One client's configuration for [`two_configurations_in_one_process_keep_to_their_own`]:
/// its own vault (holding its repository password), passphrase, lockout and audit log.
fn client(s: &Setup, name: &str, attempts: u32) -> (Context, String) {
    let dir = s.dir.path();
    let password = format!("{name}-repository-password");
    let passphrase = format!("{name}-vault-passphrase");
    std::fs::write(dir.join(format!("{name}.pass")), &passphrase).unwrap();
    let mut vault =
        crate::vault::Vault::create(&dir.join(format!("{name}.vault")), &Secret::new(passphrase))
            .unwrap();
    vault.set("repo", &Secret::new(password.clone()));
    vault.save().unwrap();
    let text = format!(
        "[repository]\nname = \"{name}\"\npassword = \"vault:repo\"\n\
         [backup]\nsources = [\"{src}\"]\n\
         [vault]\npath = \"{name}.vault\"\npassphrase = \"file:{name}.pass\"\n\
         [security]\nlockout_attempts = {attempts}\n\
         [[target]]\nname = \"{target}\"\nkind = \"local\"\npath = \"unused\"\n",
        src = dir.join("src").display(),
        target = s.names[0],
    );
    let cfg = Config::parse(&text, &dir.join(format!("{name}.toml"))).unwrap();
    (s.over(cfg), password)
}

/// The audit records of a context's log: (repository, command, result) of each.
fn audited(ctx: &Context) -> Vec<(String, String, String)> {
    let lines = crate::audit::read_lines(&crate::audit::path(ctx.cfg()).unwrap()).unwrap();
    assert_eq!(crate::audit::verify(&lines), None);
    lines
        .iter()
        .map(|l| serde_json::from_str::<crate::audit::Record>(l).unwrap())
        .map(|r| (r.repository.unwrap_or_default(), r.command, r.result))
        .collect()
}

#[test]
fn two_configurations_in_one_process_keep_to_their_own() {
    let (sa, sb) = (Setup::new(1), Setup::new(1));
    let (a, pw_a) = client(&sa, "client-a", 2);
    let (b, pw_b) = client(&sb, "client-b", 5);

    // Interleaved: both commands are under way at once, each with its own trail and vault.
    a.trail().begin(a.cfg(), "backup", Some("alice"));
    b.trail().begin(b.cfg(), "backup", Some("bob"));
    let (got_a, got_b) = (a.password().unwrap(), b.password().unwrap());
    assert_eq!(
        got_a.expose(),
        pw_a,
        "a's vault, opened with a's passphrase"
    );
    assert_eq!(
        got_b.expose(),
        pw_b,
        "b's vault, opened with b's passphrase"
    );
    let opts = backup::BackupOptions {
        init: true,
        ..Default::default()
    };
    let ra = backup::run(&a, &got_a, &opts, NoProgressBars).unwrap();
    let rb = backup::run(&b, &got_b, &opts, NoProgressBars).unwrap();
    assert_eq!(b.trail().finish(0, None).lost, Vec::<String>::new());
    assert_eq!(a.trail().finish(0, None).lost, Vec::<String>::new());
    assert_ne!(ra.snapshot, rb.snapshot);

    // Two wrong passwords lock a (2 attempts), not b (5), whose right password still opens.
    let wrong = Secret::new("wrong-password".into());
    for _ in 0..2 {
        a.trail().begin(a.cfg(), "snapshots", None);
        let e = super::snapshots::run(&a, &wrong, NoProgressBars).unwrap_err();
        assert!(matches!(e, crate::error::Error::WrongPassword), "{e}");
        b.trail().begin(b.cfg(), "snapshots", None);
        let e = super::snapshots::run(&b, &wrong, NoProgressBars).unwrap_err();
        assert!(matches!(e, crate::error::Error::WrongPassword), "{e}");
        a.trail().finish(crate::exit::WRONG_PASSWORD, None);
        b.trail().finish(crate::exit::WRONG_PASSWORD, None);
    }
    let e = super::snapshots::run(&a, &got_a, NoProgressBars).unwrap_err();
    assert!(matches!(e, crate::error::Error::LockedOut { .. }), "{e}");
    let listed = super::snapshots::run(&b, &got_b, NoProgressBars).unwrap();
    assert_eq!(listed.snapshots.len(), 1);

    // Each log holds its own records only, in its own order.
    let refused = |r: &str| {
        (
            r.to_string(),
            "snapshots".to_string(),
            "refused".to_string(),
        )
    };
    assert_eq!(
        audited(&a),
        vec![
            ("client-a".into(), "backup".into(), "ok".into()),
            refused("client-a"),
            refused("client-a"),
            refused("client-a"),
            refused("client-a"),
        ]
    );
    assert_eq!(
        audited(&b),
        vec![
            ("client-b".into(), "backup".into(), "ok".into()),
            refused("client-b"),
            refused("client-b"),
            refused("client-b"),
            refused("client-b"),
        ]
    );
}

mod replay;

/// A reading command begins the unlock (the key's derivation, a third of a second) on the
/// first target probed while a slow one is still being probed (a remote log-in): the slow
/// target's probe is held until a key was derived, and still takes part. The attempt begun
/// early is the command's one attempt: two wrong passwords lock a lockout of two, not one.
#[test]
fn the_unlock_begins_while_a_slow_target_is_probed_and_counts_once() {
    let s = Setup::new(2);
    init::run(&s.ctx(2), &pw(), false, NoProgressBars).unwrap();
    backed_up(&s, 2);
    let ctx = s.over(s.config_with(2, "[security]\nlockout_attempts = 2\n"));
    let (tx, rx) = std::sync::mpsc::channel();
    let waiting = ctx.clone();
    s.stores[1].hold_read("config", move || {
        let derived = waiting
            .keys()
            .wait_for_a_key(std::time::Duration::from_secs(60));
        tx.send(derived).unwrap();
    });
    let r = super::snapshots::run(&ctx, &pw(), NoProgressBars).unwrap();
    assert!(
        rx.recv().unwrap(),
        "the slow target's probe was held and no key was derived meanwhile"
    );
    assert_eq!(r.snapshots.len(), 1);
    assert_eq!(r.snapshots[0].targets.len(), 2, "{:?}", r.targets);

    let wrong = Secret::new("not-the-password".into());
    for _ in 0..2 {
        let e = super::snapshots::run(&ctx, &wrong, NoProgressBars).unwrap_err();
        assert!(matches!(e, crate::error::Error::WrongPassword), "{e}");
    }
    let e = super::snapshots::run(&ctx, &pw(), NoProgressBars).unwrap_err();
    assert!(matches!(e, crate::error::Error::LockedOut { .. }), "{e}");
}

/// The key `init` just made is not derived again by the commands after it in the same run
/// (`backup --init`, `run --init`): scrypt costs a third of a second and 128 MiB each time.
#[test]
fn a_key_made_by_init_is_not_derived_again_by_the_backup_after_it() {
    let s = Setup::new(2);
    let ctx = s.ctx(2);
    init::run(&ctx, &pw(), false, NoProgressBars).unwrap();
    let opts = backup::BackupOptions::default();
    backup::run(&ctx, &pw(), &opts, NoProgressBars).unwrap();
    assert_eq!(ctx.keys().derivations(), 0);
    // Another command derives it, once.
    let next = s.ctx(2);
    backup::run(&next, &pw(), &opts, NoProgressBars).unwrap();
    assert_eq!(next.keys().derivations(), 1);
}
