//! Resilience against the real servers: a removable disk absent for two backups and caught up
//! at the third; damage on each kind of target found by `check` and healed; the repository
//! lock (held, stale, and a live concurrent run); SIGKILL at many points of a backup.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

fn add_file(src: &Path, name: &str, seed: u64, len: usize) {
    fs::write(src.join(name), pseudo_random(seed, len)).unwrap();
}

#[test]
fn a_removable_disk_absent_for_two_backups_is_caught_up_at_the_third() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    add_file(&src, "first.bin", 1, 3 << 20);
    // The mount point: an empty folder on this filesystem while the disk is unplugged.
    let mount = tmp.path().join("mnt/usb");
    fs::create_dir_all(&mount).unwrap();
    let disk = Disk::new();
    let usb_repo = mount.join("cairn");
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!(
            "{}[[target]]\nname = \"usb\"\nkind = \"local\"\npath = \"{}\"\nremovable = true\n\
             mount_point = \"{}\"\n\n",
            local_target("disk", &tmp.path().join("disk")),
            usb_repo.display(),
            mount.display()
        ),
    );

    // The disk is away at the first run: creating the repository without it is asked for.
    for (i, args) in [
        &["--json", "backup", "--init", "--force-new"][..],
        &["--json", "backup"],
    ]
    .iter()
    .enumerate()
    {
        let o = cairn(&config, args);
        expect_code(&o, 0); // an optional target's absence is not a failure
        assert_eq!(json(&o)["targets"][1]["state"], "offline");
        assert!(!usb_repo.exists(), "nothing written into the mount point");
        add_file(&src, &format!("more-{i}.bin"), 10 + i as u64, 1 << 20);
    }
    let o = cairn_with_password(&config, PASSWORD, &["--json", "status"]);
    let r = json(&o);
    assert_eq!(r["targets"][1]["state"], "offline", "{r}");
    assert!(
        r["targets"][1]["recorded"]["lagging_since"].is_string(),
        "{r}"
    );

    // Plug it in: a filesystem is mounted at the mount point.
    let _plugged = Mounted::bind(&disk.0, &mount);
    let o = cairn(&config, &["--json", "backup"]);
    expect_code(&o, 0);
    let r = json(&o);
    assert_eq!(r["caught_up"][0]["name"], "usb", "{r}");
    assert_eq!(r["targets"][1]["state"], "complete", "{r}");

    assert_eq!(
        repo_files(open_store(&config, "disk").as_ref()),
        repo_files(open_store(&config, "usb").as_ref()),
        "the disk is byte-identical to the other target"
    );
    let snaps = fs::read_dir(disk.0.join("cairn/snapshots"))
        .unwrap()
        .count();
    assert_eq!(snaps, 3);
    let o = cairn(&config, &["--json", "status"]);
    expect_code(&o, 0);
    let r = json(&o);
    assert_eq!(r["targets"][1]["state"], "level", "{r}");
    assert!(
        r["targets"][1]["recorded"]["lagging_since"].is_null(),
        "{r}"
    );
    let repo = usb_repo.to_str().unwrap();
    let o = restic(repo, &["check", "--read-data"]);
    assert!(o.status.success(), "{}", text(&o));
    let dest = tmp.path().join("restored");
    let o = restic(
        repo,
        &["restore", "latest", "--target", dest.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_same_tree(&src, &restored(&dest, &src));
}

/// (target, kind, path) of every file-level problem in a `check --json` report.
fn problems(o: &std::process::Output) -> std::collections::BTreeSet<(String, String, String)> {
    json(o)["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] != "structure")
        .map(|p| {
            (
                p["target"].as_str().unwrap().to_string(),
                p["kind"].as_str().unwrap().to_string(),
                p["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn check_finds_each_fault_on_each_kind_attributes_it_and_heal_repairs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_corpus(&src);
    let prefix = unique("heal");
    let (sftp, _) = sftp_target("dc", &prefix);
    let (smb, _) = smb_target("nas", &prefix);
    let targets = format!(
        "{}{sftp}{smb}{}{}",
        local_target("disk", &tmp.path().join("disk")),
        azblob_target("azure", &prefix),
        s3_target("s3", &prefix),
    );
    let config = write_config(tmp.path(), &[&src], &targets);
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let names = ["disk", "dc", "nas", "azure", "s3"];
    let stores: Vec<_> = names.iter().map(|n| open_store(&config, n)).collect();
    // Every pack (data and tree packs alike), and an index file.
    let packs: Vec<String> = stores[0]
        .list("data")
        .unwrap()
        .into_iter()
        .map(|(rel, _)| format!("data/{rel}"))
        .collect();
    assert!(packs.len() >= 2, "{packs:?}");
    let index = format!("index/{}", stores[0].list("index").unwrap()[0].0);
    let (flipped, deleted, stray) = (&packs[0], &packs[1], "data/ab/left-over.tmp");
    let t = |target: &str, kind: &str, path: &str| {
        (target.to_string(), kind.to_string(), path.to_string())
    };

    // Five rounds; in each, four targets get one fault each, so every kind meets every fault.
    for round in 0..names.len() {
        let at = |fault: usize| (round + fault) % names.len();
        // a byte flipped in a pack (same size: only hashing can see it)
        flip_byte(stores[at(0)].as_ref(), flipped);
        // an index file truncated
        let whole = stores[at(1)].read(&index).unwrap();
        stores[at(1)]
            .write(&index, vec![whole.slice(..whole.len() / 2)])
            .unwrap();
        // a pack deleted
        stores[at(2)].delete(deleted).unwrap();
        // a stray file in a repository folder
        stores[at(3)]
            .write(stray, vec![bytes::Bytes::from_static(b"junk")])
            .unwrap();
        let listed = [
            t(names[at(1)], "size-mismatch", &index),
            t(names[at(2)], "missing", deleted),
            t(names[at(3)], "extra", stray),
        ];

        // Without the password and without hashing: listings compared, disagreeing copies
        // hashed.
        let o = cairn_cmd(&config)
            .args(["--json", "check"])
            .output()
            .unwrap();
        expect_code(&o, 5);
        assert_eq!(
            problems(&o),
            listed.iter().cloned().collect(),
            "round {round}"
        );
        assert_eq!(json(&o)["targets"][0]["structure"], "skipped (no password)");
        // Hashing finds the flipped byte too.
        let o = cairn_cmd(&config)
            .args(["--json", "check", "--read-data"])
            .output()
            .unwrap();
        expect_code(&o, 5);
        let mut all: std::collections::BTreeSet<_> = listed.iter().cloned().collect();
        all.insert(t(names[at(0)], "corrupt", flipped));
        assert_eq!(problems(&o), all, "round {round}");

        let o = cairn(&config, &["--json", "check", "--read-data", "--heal"]);
        expect_code(&o, 0);
        let r = json(&o);
        assert!(
            r["problems"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["healed"] == true),
            "round {round}: {r}"
        );
        // Clean afterwards, rustic_core's structural check included, and all five identical.
        let o = cairn(&config, &["--json", "check", "--read-data"]);
        expect_code(&o, 0);
        let r = json(&o);
        assert_eq!(
            r["problems"].as_array().unwrap().len(),
            0,
            "round {round}: {r}"
        );
        for target in r["targets"].as_array().unwrap() {
            assert_eq!(target["structure"], "ok", "round {round}: {r}");
        }
        let reference = repo_files(stores[0].as_ref());
        for store in &stores[1..] {
            assert_eq!(repo_files(store.as_ref()), reference, "round {round}");
        }
    }
}

/// Runs `cairn backup` on `config` in the background.
fn spawn_backup(config: &Path) -> std::process::Child {
    cairn_cmd(config)
        .args(["--json", "backup"])
        .env("CAIRN_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_second_writer_is_refused_with_the_holder_named_and_stale_locks_are_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    add_file(&src, "a.bin", 1, 1 << 20);
    let repo = tmp.path().join("disk");
    let config = write_config(tmp.path(), &[&src], &local_target("disk", &repo));
    expect_code(&cairn(&config, &["init"]), 0);

    // A live run, held still (test hook) after its first write, so it holds the lock: a
    // second writer stops at once, naming it, and `status` names it too.
    let mut first = halted_backup(&config);
    let o = cairn(&config, &["backup"]);
    let status = cairn(&config, &["--json", "status"]);
    expect_code(&o, 11);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {}", first.id())) && err.contains("cairn backup"),
        "{err}"
    );
    assert_eq!(
        json(&status)["locked_by"]["pid"],
        first.id(),
        "{}",
        text(&status)
    );
    // Killed while holding it: the next run takes its lock over and releases it when done.
    first.kill().unwrap();
    first.wait().unwrap();
    let o = cairn(&config, &["backup"]);
    expect_code(&o, 0);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("stale lock"),
        "{}",
        text(&o)
    );
    assert_eq!(
        count_files(&repo.join(".cairn-locks")),
        0,
        "released after the run"
    );
    let status = cairn(&config, &["--json", "status"]);
    assert!(json(&status)["locked_by"].is_null(), "{}", text(&status));

    // A lock file left on the target by a process of this host that died: taken over.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let stale = serde_json::json!({
        "id": "0000000000000001", "host": host.trim(), "pid": dead_pid, "user": "root",
        "command": "backup", "started": "2026-01-01T00:00:00Z", "refreshed": 0, "seq": 7,
    });
    let lock_file = repo.join(".cairn-locks/0000000000000001");
    fs::write(&lock_file, stale.to_string()).unwrap();
    let o = cairn(&config, &["backup"]);
    expect_code(&o, 0);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("stale lock"),
        "{}",
        text(&o)
    );
    assert!(!lock_file.exists());
    // One held by a process on another host, whose clock says it was refreshed long ago (clock
    // skew): refused all the same, since this machine has not yet watched it stand still.
    let mut live = stale.clone();
    live["host"] = "another-host".into();
    fs::write(&lock_file, live.to_string()).unwrap();
    let o = cairn(&config, &["backup"]);
    expect_code(&o, 11);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another-host"),
        "{}",
        text(&o)
    );
    // Read-only commands take no lock: they run under that live lock and leave it alone.
    expect_code(&cairn(&config, &["snapshots"]), 0);
    assert_eq!(fs::read_to_string(&lock_file).unwrap(), live.to_string());
    // It refreshes (its count moves): still live. Then it stands still for an hour by this
    // machine's clock (the sighting aged by hand, as an hour passing would): stale.
    live["seq"] = 8.into();
    fs::write(&lock_file, live.to_string()).unwrap();
    expect_code(&cairn(&config, &["backup"]), 11);
    // The configuration's own state folder (the state base also holds this machine's lockout
    // counts).
    let sightings = tmp
        .path()
        .join("state")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap()
        .join("lock-sightings.json");
    let mut seen: serde_json::Value =
        serde_json::from_slice(&fs::read(&sightings).unwrap()).unwrap();
    for (_, v) in seen.as_object_mut().unwrap() {
        assert_eq!(v[0], 8);
        v[1] = (v[1].as_i64().unwrap() - 3600).into();
    }
    fs::write(&sightings, seen.to_string()).unwrap();
    let o = cairn(&config, &["backup"]);
    expect_code(&o, 0);
    assert!(!lock_file.exists());

    // A lock file that cannot be read: that target is refused (left out), never skipped over.
    fs::write(&lock_file, b"{ not json").unwrap();
    let o = cairn(&config, &["--json", "backup"]);
    expect_code(&o, 4);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("could not be locked")
            || String::from_utf8_lossy(&o.stderr).contains("could not be locked"),
        "{}",
        text(&o)
    );
    assert!(lock_file.exists(), "an unreadable lock is never deleted");
}

/// Files under `dir` (recursively).
fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

/// Ends, on drop, the ssh processes started with this key file.
struct SshGuard(PathBuf);

impl Drop for SshGuard {
    fn drop(&mut self) {
        for pid in ssh_with(&self.0) {
            let _ = Command::new("kill").arg(pid).status();
        }
    }
}

/// The pids of running processes whose command line names `key` (zombies left out).
fn ssh_with(key: &Path) -> Vec<String> {
    let key = key.to_string_lossy().into_owned();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(&key)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn sigkill_at_any_point_leaves_every_target_sound_and_the_next_run_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    // A key file at a path of its own finds this test's ssh processes: a killed run's must end
    // with it (its SFTP session's ssh sees its input close); the guard ends any left on failure.
    let key = tmp.path().join("kill-test-key");
    fs::copy(env("SFTP_KEY"), &key).unwrap();
    let _guard = SshGuard(key.clone());
    let (sftp, sftp_dir) = sftp_target("dc", &unique("kill"));
    let sftp = sftp.replace(&env("SFTP_KEY"), key.to_str().unwrap());
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{}{sftp}", local_target("a", &a), local_target("b", &b)),
    );
    expect_code(&cairn(&config, &["init"]), 0);
    let repos = [a.clone(), b.clone(), PathBuf::from(&sftp_dir)];

    // A backup of the new data below writes about six repository files (data and tree packs,
    // index, snapshot). Kill it after each number of them, then once while it is writing a
    // pack (a temporary file exists), the window a kill at any moment can hit.
    for trial in 0..8u64 {
        // New data each time (48 MiB of incompressible files), so every run writes packs.
        for i in 0..48 {
            add_file(
                &src,
                &format!("t{trial}-{i}.bin"),
                1000 * trial + i,
                1 << 20,
            );
        }
        let marker = tmp.path().join(format!("halted-{trial}"));
        let mut cmd = cairn_cmd(&config);
        cmd.args(["--json", "backup"])
            .env("CAIRN_PASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if trial < 7 {
            cmd.env("CAIRN_TEST_HALT_AFTER_WRITES", (trial + 1).to_string())
                .env("CAIRN_TEST_HALT_MARKER", &marker);
        }
        let mut run = cmd.spawn().unwrap();
        let tmp_dir = a.join(".cairn-tmp");
        wait_for("the chosen point of the backup", || {
            if trial < 7 {
                halted_targets(&marker) == repos.len() || run.try_wait().unwrap().is_some()
            } else {
                count_files(&tmp_dir) > 0 || run.try_wait().unwrap().is_some()
            }
        });
        let finished = run.try_wait().unwrap().is_some();
        let _ = run.kill(); // SIGKILL
        let _ = run.wait();
        wait_for("the killed run's ssh to end", || ssh_with(&key).is_empty());
        if trial < 5 {
            assert!(
                !finished,
                "trial {trial}: the backup ended before its kill point"
            );
        }
        for repo in &repos {
            // The dead run's restic lock stays (restic's own exclusive commands refuse while
            // it is there) until `restic unlock`, which an admin runs, removes it as stale.
            let o = restic(repo.to_str().unwrap(), &["unlock"]);
            assert!(o.status.success(), "trial {trial}: {}", text(&o));
            let o = restic(repo.to_str().unwrap(), &["check"]);
            assert!(
                o.status.success(),
                "trial {trial}: {}: {}",
                repo.display(),
                text(&o)
            );
        }
        // The next run takes over the dead run's lock, catches every target up, completes.
        let o = cairn(&config, &["--json", "backup"]);
        expect_code(&o, 0);
        let o = cairn(&config, &["--json", "check"]);
        expect_code(&o, 0);
        for repo in &repos {
            let o = restic(repo.to_str().unwrap(), &["check", "--read-data"]);
            assert!(o.status.success(), "trial {trial}: {}", text(&o));
            assert_eq!(
                count_files(&repo.join(".cairn-tmp")),
                0,
                "temporary files cleaned up"
            );
        }
    }
    let dest = tmp.path().join("restored");
    expect_code(
        &cairn(
            &config,
            &["restore", "latest", "--target", dest.to_str().unwrap()],
        ),
        0,
    );
    assert_same_tree(&src, &restored(&dest, &src));
}

#[test]
fn sshd_stopped_mid_backup_leaves_sftp_lagging_until_sync_brings_it_level() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sshd = PrivateSshd::start(tmp.path(), None);
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        add_file(&src, &format!("big-{i}.bin"), 500 + i, 24 << 20);
    }
    let prefix = unique("sshd-stop");
    let (sftp, sftp_dir) = sshd.sftp_target("dc", &prefix);
    let targets = format!(
        "{}{sftp}{}{}",
        local_target("disk", &tmp.path().join("disk")),
        azblob_target("azure", &prefix),
        s3_target("s3", &prefix),
    );
    let config = write_config(tmp.path(), &[&src], &targets);
    expect_code(&cairn(&config, &["init"]), 0);

    let backup = spawn_backup(&config);
    let data = Path::new(&sftp_dir).join("data");
    wait_for("a pack on the SFTP server", || count_files(&data) > 0);
    sshd.kill();
    let killed = Instant::now();
    let o = backup.wait_with_output().unwrap();
    assert!(
        killed.elapsed() < Duration::from_secs(60),
        "ended {:?} after sshd stopped",
        killed.elapsed()
    );
    expect_code(&o, 3);
    let r = json(&o);
    let states: Vec<&str> = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["complete", "failed", "complete", "complete"],
        "{r}"
    );
    assert_eq!(
        fs::read_dir(Path::new(&sftp_dir).join("snapshots"))
            .unwrap()
            .count(),
        0,
        "no snapshot on the target that failed"
    );

    // While it is down: unreachable now, and remembered as lagging with its error.
    let o = cairn(&config, &["--json", "status"]);
    expect_code(&o, 3);
    let r = json(&o);
    assert_eq!(r["targets"][1]["state"], "unreachable", "{r}");
    assert!(
        r["targets"][1]["recorded"]["lagging_since"].is_string(),
        "{r}"
    );
    assert!(r["targets"][1]["recorded"]["last_error"].is_string(), "{r}");

    // Back up: lagging, then brought level by `sync` (with the password, which proves what it
    // copies).
    sshd.restart();
    let o = cairn(&config, &["--json", "status"]);
    expect_code(&o, 3);
    assert_eq!(json(&o)["targets"][1]["state"], "lagging");
    let o = cairn(&config, &["--json", "sync"]);
    expect_code(&o, 0);
    let r = json(&o);
    assert_eq!(r["targets"][1]["state"], "caught-up", "{r}");
    let o = cairn(&config, &["--json", "status"]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["targets"][1]["state"], "level");
    assert_eq!(
        repo_files(open_store(&config, "disk").as_ref()),
        repo_files(open_store(&config, "dc").as_ref())
    );
    let o = restic(&sftp_dir, &["check", "--read-data"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_check_subset_is_a_seeded_share_of_the_files_and_repeats_with_its_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_corpus(&src);
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!(
            "{}{}",
            local_target("a", &tmp.path().join("a")),
            local_target("b", &tmp.path().join("b"))
        ),
    );
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let run = |args: &[&str]| {
        let o = cairn_cmd(&config)
            .args(["--json", "check"])
            .args(args)
            .output()
            .unwrap();
        expect_code(&o, 0);
        json(&o)
    };
    let first = run(&["--read-data-subset", "50"]);
    let seed = first["seed"].as_u64().expect("the seed is reported");
    let again = run(&["--read-data-subset", "50", "--seed", &seed.to_string()]);
    for i in 0..2 {
        for key in ["hashed_files", "hashed_bytes"] {
            assert_eq!(first["targets"][i][key], again["targets"][i][key], "{key}");
        }
    }
    let t = &first["targets"][0];
    let (hashed, files) = (
        t["hashed_files"].as_u64().unwrap(),
        t["files"].as_u64().unwrap(),
    );
    // 50% of the files, rounded up.
    assert_eq!(hashed, files.div_ceil(2), "{t}");
    let all = run(&["--read-data"]);
    assert_eq!(all["targets"][0]["hashed_files"].as_u64().unwrap(), files);
}
