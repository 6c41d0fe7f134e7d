//! Rotated USB disks (issue 26): prune goes on while a disk is away, storage stays bounded, a
//! backup a disk got alone while away reaches every target with its data, and a prune or a
//! returning disk's catch-up killed at any step loses nothing. Real disks stand in as tmpfs
//! folders bind-mounted at their mount points; the always-on side is a local folder and the
//! SFTP server. restic is the oracle.

mod common;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use common::*;

/// The nightly edit: ~5% of the `files` files in `src` rewritten (seeded by `night`).
fn change(src: &Path, files: u64, night: u64) {
    for k in 0..files.div_ceil(20) {
        let f = (night * 7 + k * 13) % files;
        fs::write(
            src.join(format!("f{f:03}")),
            pseudo_random(night * 1000 + f, 16 << 10),
        )
        .unwrap();
    }
}

/// Bytes of a single, freshly pruned repository of the snapshots `repo` holds: a copy,
/// pruned by stock restic down to no unused byte (cairn's own folders left out).
fn fresh_size(repo: &str, scratch: &Path) -> u64 {
    let copy = scratch.join(unique("fresh"));
    copy_tree(Path::new(repo), &copy);
    for d in [".cairn-deletions", ".cairn-quarantine", ".cairn-tmp"] {
        let _ = fs::remove_dir_all(copy.join(d));
    }
    let out = restic(copy.to_str().unwrap(), &["prune", "--max-unused", "0"]);
    assert!(out.status.success(), "restic prune: {}", text(&out));
    let size = tree_bytes(&copy);
    fs::remove_dir_all(&copy).unwrap();
    size
}

fn night_time(night: u64) -> String {
    let day = jiff::civil::date(2026, 1, 1)
        .checked_add(jiff::Span::new().days(i64::try_from(night).unwrap()))
        .unwrap();
    format!("{day} 03:00:00")
}

#[test]
fn rotated_disks_stay_bounded_and_every_copy_restores_every_kept_snapshot() {
    const FILES: u64 = 100;
    const NIGHTS: u64 = 21;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for f in 0..FILES {
        fs::write(src.join(format!("f{f:03}")), pseudo_random(f, 16 << 10)).unwrap();
    }
    let office = tmp.path().join("office");
    let (nas, nas_dir) = sftp_target("nas", &unique("rotation"));
    let mut disks = [
        Usb::new(tmp.path().join("mnt/usb-a")),
        Usb::new(tmp.path().join("mnt/usb-b")),
    ];
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!(
            "{}{nas}{}{}[retention]\nkeep_daily = 7\n",
            local_target("office", &office),
            disks[0].target("usb-a"),
            disks[1].target("usb-b")
        ),
    );
    let names = ["usb-a", "usb-b"];
    let mut contents: BTreeMap<String, PathBuf> = BTreeMap::new();
    for night in 1..=NIGHTS {
        // Both disks at the first night; then one at a time, swapped every 7 nights.
        let (here, away) = (
            ((night - 1) / 7 % 2) as usize,
            1 - ((night - 1) / 7 % 2) as usize,
        );
        disks[here].plug();
        if night > 1 {
            disks[away].unplug();
            change(&src, FILES, night);
        } else {
            disks[away].plug();
        }
        let time = night_time(night);
        let args: &[&str] = if night == 1 {
            &["--json", "backup", "--init", "--time", &time]
        } else {
            &["--json", "backup", "--time", &time]
        };
        let out = cairn(&config, args);
        expect_code(&out, 0);
        let id = json(&out)["snapshot"].as_str().unwrap().to_string();
        let keep = tmp.path().join(format!("content-{night}"));
        copy_tree(&src, &keep);
        contents.insert(id, keep);

        let out = cairn(&config, &["--json", "forget", "--prune"]);
        expect_code(&out, 0);
        let r = json(&out);
        if night > 7 {
            // The away disk is never waited for: the prune ran, and said without whom.
            assert!(r["prune"]["deferred"].is_null(), "night {night}: {r}");
            if r["prune"]["record"].is_string() {
                assert_eq!(
                    r["prune"]["without"],
                    serde_json::json!([names[away]]),
                    "night {night}: {r}"
                );
            }
        }
        let fresh = fresh_size(&nas_dir, tmp.path());
        for (name, dir) in [("office", office.clone()), ("nas", PathBuf::from(&nas_dir))] {
            let size = tree_bytes(&dir);
            assert!(
                size * 10 <= fresh * 13,
                "night {night}: {name} holds {size} bytes, a freshly pruned repository {fresh}"
            );
        }
        // The disk that came back tonight is within the bound after this one run.
        if night > 1 && (night - 1) % 7 == 0 {
            let size = tree_bytes(Path::new(&disks[here].repo()));
            assert!(
                size * 10 <= fresh * 13,
                "night {night}: {} holds {size} bytes one run after it returned, a freshly \
                 pruned repository {fresh}",
                names[here]
            );
        }
        if night == 14 {
            let status = json(&cairn(&config, &["--json", "status"]));
            let usb_a = &status["targets"][2];
            assert_eq!(usb_a["state"], "offline", "{status}");
            assert!(
                usb_a["recorded"]["pruned_without"]["prunes"]
                    .as_u64()
                    .is_some_and(|n| n >= 1),
                "{status}"
            );
            assert!(status["prune_deferred"].is_null(), "{status}");
        }
    }
    contents.retain(|id, _| snapshot_ids(&nas_dir).contains(id));
    assert_eq!(contents.len(), 7, "keep_daily = 7");

    // The disk away since night 14 comes back: one run brings it level and within the bound.
    disks[1].plug();
    let out = cairn(&config, &["--json", "sync"]);
    expect_code(&out, 0);
    let fresh = fresh_size(&nas_dir, tmp.path());
    let size = tree_bytes(Path::new(&disks[1].repo()));
    assert!(
        size * 10 <= fresh * 13,
        "usb-b holds {size} bytes one run after it returned, a freshly pruned repository {fresh}"
    );
    let files = |name: &str| repo_files(open_store(&config, name).as_ref());
    for name in ["nas", "usb-a", "usb-b"] {
        assert_eq!(files(name), files("office"), "{name}");
    }
    for repo in [
        office.display().to_string(),
        nas_dir.clone(),
        disks[0].repo(),
        disks[1].repo(),
    ] {
        restic_check(&repo);
        assert_eq!(
            snapshot_ids(&repo),
            contents.keys().cloned().collect(),
            "{repo}"
        );
    }
    for (id, content) in &contents {
        for target in ["office", "nas", "usb-a", "usb-b"] {
            restores_from(&config, target, id, &src, content);
        }
    }
}

#[test]
fn a_backup_a_disk_got_alone_while_away_reaches_every_target_with_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let a = tmp.path().join("a");
    let (nas, nas_dir) = sftp_target("nas", &unique("rotation-split"));
    let mut usb = Usb::new(tmp.path().join("mnt/usb"));
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{nas}{}", local_target("a", &a), usb.target("usb")),
    );
    // A large file every snapshot shares, and small ones changing nightly.
    let shared = pseudo_random(7, 400_000);
    fs::write(src.join("shared"), &shared).unwrap();
    usb.plug();
    nightly_backups(&config, &src, 0..3, |_| {});

    // The disk goes home. The shared file leaves the source; the office forgets and prunes
    // without the disk, and the shared data is gone from the office's targets.
    usb.unplug();
    fs::remove_file(src.join("shared")).unwrap();
    fs::write(src.join("night"), pseudo_random(4, 20_000)).unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    let office_content = tmp.path().join("office-content");
    copy_tree(&src, &office_content);
    let out = cairn(
        &config,
        &["--json", "forget", "--keep-last", "1", "--prune"],
    );
    expect_code(&out, 0);
    let r = json(&out);
    let pruned = &r["prune"];
    assert!(pruned["deferred"].is_null(), "{r}");
    assert_eq!(pruned["without"], serde_json::json!(["usb"]), "{r}");
    assert!(pruned["record"].is_string(), "{r}");
    assert!(
        pruned["plan"]["bytes_remove"].as_u64().unwrap() >= 400_000,
        "{r}"
    );
    let status = json(&cairn(&config, &["--json", "status"]));
    assert_eq!(
        status["targets"][2]["recorded"]["pruned_without"]["prunes"], 1,
        "{status}"
    );

    // Elsewhere, the disk gets a backup alone (its own configuration, only that disk), of a
    // tree holding the shared file again: it deduplicates against the data the office pruned.
    let elsewhere = tmp.path().join("elsewhere");
    let solo_src = elsewhere.join("src");
    fs::create_dir_all(&solo_src).unwrap();
    fs::write(solo_src.join("shared"), &shared).unwrap();
    fs::write(solo_src.join("solo"), pseudo_random(42, 30_000)).unwrap();
    let solo = write_config(&elsewhere, &[&solo_src], &usb.target("usb"));
    usb.plug();
    let out = cairn(&solo, &["--json", "backup"]);
    expect_code(&out, 0);
    let r = json(&out);
    let solo_snapshot = r["snapshot"].as_str().unwrap().to_string();
    assert!(
        r["bytes_new_stored"].as_u64().unwrap_or(0) < 200_000,
        "the shared file was deduplicated against the disk's old data: {r}"
    );

    // The disk is back at the office; the nightly backup runs.
    let out = cairn(&config, &["--json", "backup"]);
    expect_code(&out, 0);
    for target in ["a", "nas", "usb"] {
        restores_from(&config, target, &solo_snapshot, &solo_src, &solo_src);
        restores_from(&config, target, "latest", &src, &office_content);
    }
    for repo in [a.display().to_string(), nas_dir.clone(), usb.repo()] {
        assert!(snapshot_ids(&repo).contains(&solo_snapshot), "{repo}");
        restic_check(&repo);
    }

    // The next prune, every target present, leaves identical repositories.
    let out = cairn(&config, &["--json", "prune"]);
    expect_code(&out, 0);
    let files = |name: &str| repo_files(open_store(&config, name).as_ref());
    assert_eq!(files("nas"), files("a"));
    assert_eq!(files("usb"), files("a"));
    for target in ["a", "nas", "usb"] {
        restores_from(&config, target, &solo_snapshot, &solo_src, &solo_src);
    }
    for repo in [a.display().to_string(), nas_dir, usb.repo()] {
        restic_check(&repo);
    }
}

/// Three nights on a local target, the SFTP server and a disk; the disk goes home before the
/// third, and the office forgets all but the last: the state a prune without the disk starts
/// from. The disk is left unplugged.
struct Away {
    config: PathBuf,
    a: PathBuf,
    nas_dir: String,
    usb: Usb,
    src: PathBuf,
    /// The source as the kept snapshot holds it.
    keep: PathBuf,
}

fn away_nights(tmp: &Path) -> Away {
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    let a = tmp.join("a");
    let (nas, nas_dir) = sftp_target("nas", &unique("rotation-kill"));
    let mut usb = Usb::new(tmp.join("mnt/usb"));
    let config = write_config(
        tmp,
        &[&src],
        &format!("{}{nas}{}", local_target("a", &a), usb.target("usb")),
    );
    fs::write(src.join("stays"), pseudo_random(3, 50_000)).unwrap();
    usb.plug();
    nightly_backups(&config, &src, 0..3, |night| {
        if night == 2 {
            usb.unplug();
        }
    });
    expect_code(&cairn(&config, &["forget", "--keep-last", "1"]), 0);
    let keep = tmp.join("expected");
    copy_tree(&src, &keep);
    Away {
        config,
        a,
        nas_dir,
        usb,
        src,
        keep,
    }
}

/// A fresh copy of `templates` (with the disk, unplugged, copied from `disk_tpl`): its
/// configuration, local folder, SFTP folder and disk.
fn fresh_copy(
    templates: &Templates,
    tpl: &Away,
    disk_tpl: &Path,
) -> (PathBuf, String, String, Usb) {
    let (cfg, ra, rnas) = templates.fresh();
    let usb = Usb::copy_of(disk_tpl, cfg.parent().unwrap().join("mnt/usb"));
    let text = fs::read_to_string(&cfg)
        .unwrap()
        .replace(tpl.usb.mount.to_str().unwrap(), usb.mount.to_str().unwrap());
    fs::write(&cfg, text).unwrap();
    (cfg, ra, rnas, usb)
}

/// The three targets hold the same files (so checking the disk checks them all), one
/// snapshot, stock restic checks the disk, and it restores the snapshot.
fn level_and_restorable(at: &str, cfg: &Path, tpl: &Away, disk: &str) {
    let files = |name: &str| repo_files(open_store(cfg, name).as_ref());
    assert_eq!(files("nas"), files("a"), "{at}");
    assert_eq!(files("usb"), files("a"), "{at}");
    let out = restic(disk, &["check"]);
    assert!(
        out.status.success(),
        "{at}: restic check {disk}: {}",
        text(&out)
    );
    assert_eq!(snapshot_ids(disk).len(), 1, "{at}");
    restores_from(cfg, "usb", "latest", &tpl.src, &tpl.keep);
}

/// Kills `command` at each write and then each removal (from a fresh copy of `tpl` every
/// time, the disk plugged in when `plugged`), waiting for `halting` targets to stand still;
/// after each kill, every copy passes `restic check --read-data`, and `then` runs the next
/// runs on (where, configuration, disk). Returns how many kills.
fn kill_matrix(
    tmp: &Path,
    tpl: &Away,
    command: &str,
    (plugged, halting): (bool, usize),
    then: impl Fn(&str, &Path, &mut Usb),
) -> usize {
    let templates = Templates::keep(tmp, &tpl.config, &tpl.a, &tpl.nas_dir);
    let mut steps = 0;
    for hook in [
        "CAIRN_TEST_HALT_AFTER_WRITES",
        "CAIRN_TEST_HALT_AFTER_DELETES",
    ] {
        for n in 1.. {
            let (cfg, ra, rnas, mut usb) = fresh_copy(&templates, tpl, &tpl.usb.disk.0);
            if plugged {
                usb.plug();
            }
            if !kill_at(&cfg, &[command], hook, n, halting) {
                assert!(n > 1, "{command} {hook}: never reached its first step");
                break;
            }
            steps += 1;
            let at = format!("{command} {hook}={n}");
            every_copy_checks(&at, &[&ra, &rnas, &usb.repo()]);
            then(&at, &cfg, &mut usb);
        }
    }
    steps
}

#[test]
fn a_prune_without_the_disk_killed_at_any_write_or_removal_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("template");
    fs::create_dir_all(&template).unwrap();
    let tpl = away_nights(&template);
    // Two targets take part (the disk is away): both halt.
    let steps = kill_matrix(tmp.path(), &tpl, "prune", (false, 2), |at, cfg, usb| {
        for target in ["a", "nas"] {
            restores_from(cfg, target, "latest", &tpl.src, &tpl.keep);
        }
        // The next runs finish the job, the disk away and then back.
        expect_code(&cairn(cfg, &["--json", "prune"]), 0);
        usb.plug();
        expect_code(&cairn(cfg, &["--json", "prune"]), 0);
        level_and_restorable(at, cfg, &tpl, &usb.repo());
        let again = json(&cairn(cfg, &["--json", "prune", "--dry-run"]));
        assert_eq!(again["plan"]["packs_unused"], 0, "{at}: {again}");
        assert_eq!(again["plan"]["packs_unindexed"], 0, "{at}: {again}");
    });
    assert!(steps >= 4, "only {steps} steps were interrupted");
}

#[test]
fn a_returning_disks_catch_up_killed_at_any_write_or_removal_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("template");
    fs::create_dir_all(&template).unwrap();
    let tpl = away_nights(&template);
    // The office prunes without the disk: the disk must obey when back.
    let r = json(&cairn(&tpl.config, &["--json", "prune"]));
    assert_eq!(r["without"], serde_json::json!(["usb"]), "{r}");
    assert!(r["record"].is_string(), "{r}");
    // Only the disk is written (it receives and obeys): it alone halts.
    let steps = kill_matrix(tmp.path(), &tpl, "sync", (true, 1), |at, cfg, usb| {
        // The next run completes and brings the disk level.
        expect_code(&cairn(cfg, &["--json", "backup"]), 0);
        expect_code(&cairn(cfg, &["--json", "forget", "--keep-last", "1"]), 0);
        level_and_restorable(at, cfg, &tpl, &usb.repo());
    });
    assert!(steps >= 6, "only {steps} steps were interrupted");
}
