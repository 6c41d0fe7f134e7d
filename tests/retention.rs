//! Retention: `cairn forget` decides as stock restic does, removes snapshots on every reachable
//! target through a deletion record, a target that was away obeys on return, and a record that
//! does not open with the repository key is never obeyed. Real local folders and the SFTP test
//! server; stock restic is the oracle.

mod common;

use std::{collections::BTreeSet, fs, path::Path};

use common::*;
use rustic_core::repofile::SnapshotFile;

/// restic's `forget --dry-run --json`: the ids it keeps.
fn restic_keeps(repo: &str, policy: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["forget", "--dry-run", "--json"];
    args.extend_from_slice(policy);
    let out = restic(repo, &args);
    assert!(out.status.success(), "restic forget: {}", text(&out));
    let groups: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["keep"].as_array().cloned().unwrap_or_default())
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// cairn's `forget --dry-run --json`: the ids it keeps, and the report.
fn cairn_keeps(config: &Path, policy: &[&str]) -> (BTreeSet<String>, serde_json::Value) {
    let mut args = vec!["--json", "forget", "--dry-run"];
    args.extend_from_slice(policy);
    let out = cairn(config, &args);
    expect_code(&out, 0);
    let r = json(&out);
    let keep = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["snapshots"].as_array().cloned().unwrap())
        .filter(|v| v["keep"] == true)
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    (keep, r)
}

fn listed(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir).map_or_else(
        |_| BTreeSet::new(),
        |d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        },
    )
}

/// About three years of nightly snapshots, irregular as real ones are: missed nights, a second
/// run some days, a second host, tagged ones, one in the future. Written as copies of one real
/// snapshot with other times, through rustic_core on target `a`.
fn three_years(config: &Path) {
    let repo = open_alone(config, "a");
    let base: SnapshotFile = repo.get_all_snapshots().unwrap().remove(0);
    let start: jiff::Zoned = "2023-01-01T03:00:00+00:00[UTC]".parse().unwrap();
    let mut snaps = Vec::new();
    for day in 0..1100i64 {
        if day % 13 == 5 {
            continue;
        }
        let mut s = base.clone();
        s.time = start.checked_add(jiff::Span::new().days(day)).unwrap();
        if day % 50 == 0 {
            s.hostname = "other-host".into();
        }
        if day % 90 == 0 {
            s.tags = "quarterly".parse().unwrap();
        }
        snaps.push(s.clone());
        if day % 7 == 3 {
            s.time = s.time.checked_add(jiff::Span::new().hours(12)).unwrap();
            snaps.push(s);
        }
    }
    let mut future = base;
    future.time = "2031-06-01T03:00:00+00:00[UTC]".parse().unwrap();
    snaps.push(future);
    repo.save_snapshots(snaps).unwrap();
}

#[test]
fn retention_keeps_what_restic_keeps_over_three_years_of_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"nightly").unwrap();
    let a = tmp.path().join("a");
    let config = write_config(tmp.path(), &[&src], &local_target("a", &a));
    expect_code(
        &cairn(
            &config,
            &["backup", "--init", "--time", "2022-12-31 03:00:00"],
        ),
        0,
    );
    three_years(&config);
    let repo = a.to_str().unwrap();
    let all = snapshot_ids(repo);
    assert!(all.len() > 1100, "{}", all.len());

    let policies: [&[&str]; 6] = [
        &[
            "--keep-daily",
            "7",
            "--keep-weekly",
            "5",
            "--keep-monthly",
            "12",
            "--keep-yearly",
            "3",
        ],
        &["--keep-last", "10"],
        &["--keep-within", "1y2m"],
        &["--keep-hourly", "30", "--keep-tag", "quarterly"],
        &["--keep-within", "45d", "--keep-monthly", "6"],
        &["--keep-weekly", "60", "--group-by", "paths"],
    ];
    for policy in policies {
        let (cairn_keep, report) = cairn_keeps(&config, policy);
        let restic_keep = restic_keeps(repo, policy);
        assert_eq!(
            cairn_keep, restic_keep,
            "policy {policy:?}: cairn and restic disagree"
        );
        assert!(cairn_keep.len() < all.len(), "{policy:?} keeps everything");
        assert_eq!(report["dry_run"], true);
    }
    // Nothing was removed by the dry runs.
    assert_eq!(snapshot_ids(repo), all);

    // The policy from the file, for real.
    let text_cfg = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        format!(
            "{text_cfg}\n[retention]\nkeep_daily = 7\nkeep_weekly = 5\nkeep_monthly = 12\n\
             keep_yearly = 3\n"
        ),
    )
    .unwrap();
    let expected = restic_keeps(repo, policies[0]);
    let out = cairn(&config, &["--json", "forget"]);
    expect_code(&out, 0);
    let r = json(&out);
    assert_eq!(
        r["removed"].as_array().unwrap().len(),
        all.len() - expected.len()
    );
    assert_eq!(snapshot_ids(repo), expected);
    restic_check(repo);
}

#[test]
fn a_target_away_during_forget_obeys_the_deletion_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let (a, usb) = (tmp.path().join("a"), tmp.path().join("usb"));
    let (sftp, sftp_dir) = sftp_target("nas", &unique("forget-away"));
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!(
            "{}{sftp}{}",
            local_target("a", &a),
            local_target("usb", &usb)
        ),
    );
    for day in 1..=6 {
        fs::write(src.join(format!("day{day}")), pseudo_random(day, 50_000)).unwrap();
        let time = format!("2024-03-0{day} 22:00:00");
        let init: &[&str] = if day == 1 { &["--init"] } else { &[] };
        let mut args = vec!["backup", "--time", &time];
        args.extend_from_slice(init);
        expect_code(&cairn(&config, &args), 0);
    }
    let all = snapshot_ids(usb.to_str().unwrap());
    assert_eq!(all.len(), 6);

    // The disk is away; forget keeps the 2 newest on the others.
    let away = tmp.path().join("usb-away");
    fs::rename(&usb, &away).unwrap();
    let out = cairn(&config, &["--json", "forget", "--keep-last", "2"]);
    // The away disk is required by default: partially done.
    expect_code(&out, 3);
    let r = json(&out);
    assert_eq!(r["removed"].as_array().unwrap().len(), 4);
    let kept = snapshot_ids(a.to_str().unwrap());
    assert_eq!(kept.len(), 2);
    assert_eq!(snapshot_ids(&sftp_dir), kept);
    let usb_state = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "usb")
        .unwrap()
        .clone();
    assert_eq!(usb_state["snapshots_removed"], 0, "{usb_state}");

    // Back, before any catch-up: pending, never missing on the others; readers never see
    // the deleted snapshots.
    fs::rename(&away, &usb).unwrap();
    let status = json(&cairn(&config, &["--json", "status"]));
    let by_name = |name: &str| {
        status["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("usb")["pending_deletions"], 4, "{status}");
    assert_eq!(by_name("usb")["state"], "lagging");
    assert_eq!(by_name("a")["missing_files"], 0, "{status}");
    assert_eq!(by_name("a")["state"], "level");
    let check = cairn(&config, &["--json", "check"]);
    let problems = json(&check)["problems"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p["kind"] == "pending-deletion" && p["target"] == "usb"),
        "{problems:?}"
    );
    let listed_snaps = json(&cairn(&config, &["--json", "snapshots"]));
    assert_eq!(listed_snaps["snapshots"].as_array().unwrap().len(), 2);

    // The next nightly backup catches the disk up: it obeys first, then gets the new snapshot.
    fs::write(src.join("day7"), b"seven").unwrap();
    let out = cairn(&config, &["--json", "backup"]);
    expect_code(&out, 0);
    let r = json(&out);
    let caught = r["caught_up"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "usb")
        .unwrap()
        .clone();
    assert_eq!(caught["deletions_applied"], 4, "{caught}");
    assert_eq!(caught["records_copied"], 1, "{caught}");
    let files = |name: &str| repo_files(open_store(&config, name).as_ref());
    assert_eq!(files("usb"), files("a"));
    assert_eq!(files("nas"), files("a"));
    assert_eq!(
        listed(&usb.join(".cairn-deletions")),
        listed(&a.join(".cairn-deletions"))
    );
    for repo in [a.to_str().unwrap(), usb.to_str().unwrap(), &sftp_dir] {
        assert_eq!(snapshot_ids(repo).len(), 3, "{repo}");
        restic_check(repo);
    }
    let status = json(&cairn(&config, &["--json", "status"]));
    for t in status["targets"].as_array().unwrap() {
        assert_eq!(t["pending_deletions"], 0, "{t}");
        assert_eq!(t["state"], "level", "{t}");
    }
}

#[test]
fn check_heal_applies_a_pending_deletion() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = two_local_targets(tmp.path(), "f", b"one");
    fs::write(tmp.path().join("src/g"), b"two").unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    let ids = snapshot_ids(a.to_str().unwrap());
    let first = ids.iter().next().unwrap().clone();
    let away = tmp.path().join("b-away");
    fs::rename(&b, &away).unwrap();
    expect_code(&cairn(&config, &["forget", &first[..10]]), 3);
    fs::rename(&away, &b).unwrap();
    let out = cairn(&config, &["--json", "check", "--heal"]);
    expect_code(&out, 0);
    let problems = json(&out)["problems"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["kind"], "pending-deletion");
    assert_eq!(problems[0]["healed"], true);
    assert_eq!(snapshot_ids(b.to_str().unwrap()).len(), 1);
    assert!(!b.join("snapshots").join(&first).exists());
    expect_code(&cairn(&config, &["check"]), 0);
}

#[test]
fn a_deletion_record_not_sealed_with_the_repository_key_is_foreign_and_never_obeyed() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = two_local_targets(tmp.path(), "f", b"precious");
    let id = snapshot_ids(a.to_str().unwrap()).pop_first().unwrap();
    // Someone with write access to `b` only: a well-formed record naming the snapshot, sealed
    // with a key of their own, named by its hash; and plain junk.
    let record = serde_json::json!({
        "time": "2024-01-01T00:00:00Z", "command": "forget", "host": "x", "user": "x",
        "files": [format!("snapshots/{id}")],
    });
    let cipher = cairn::sealed::Cipher::new(&rustic_core::repofile::MasterKey::new()).unwrap();
    let (name, bytes) = cipher.seal(record.to_string().as_bytes()).unwrap();
    let dir = b.join(".cairn-deletions");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&name), &bytes).unwrap();
    let junk = b"not a record at all";
    let junk_name = hex(&<sha2::Sha256 as sha2::Digest>::digest(junk));
    fs::write(dir.join(&junk_name), junk).unwrap();

    // Readers ignore them; status counts nothing pending.
    let snaps = json(&cairn(&config, &["--json", "snapshots"]));
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 1);
    let status = json(&cairn(&config, &["--json", "status"]));
    for t in status["targets"].as_array().unwrap() {
        assert_eq!(t["pending_deletions"], 0, "{t}");
    }
    // check calls them foreign; sync quarantines them on `b` and copies nothing to `a`.
    let check = json(&cairn(&config, &["--json", "check"]));
    let foreign: Vec<&serde_json::Value> = check["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "foreign")
        .collect();
    assert_eq!(foreign.len(), 2, "{check}");
    let out = cairn(&config, &["--json", "sync"]);
    let r = json(&out);
    assert_eq!(r["foreign"].as_array().unwrap().len(), 2, "{r}");
    assert!(listed(&dir).is_empty());
    assert!(listed(&a.join(".cairn-deletions")).is_empty());
    assert!(
        b.join(".cairn-quarantine/.cairn-deletions")
            .join(&name)
            .exists()
    );
    for t in [&a, &b] {
        assert!(t.join("snapshots").join(&id).exists());
        restic_check(t.to_str().unwrap());
    }
}

#[test]
fn records_are_compacted_once_every_target_obeyed_them_long_enough_ago() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = two_local_targets(tmp.path(), "f", b"one");
    fs::write(tmp.path().join("src/g"), b"two").unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    let first = snapshot_ids(a.to_str().unwrap()).pop_first().unwrap();
    let records = |t: &Path| listed(&t.join(".cairn-deletions")).len();

    // Default margin (90 days): obeyed everywhere, but kept.
    expect_code(&cairn(&config, &["forget", &first]), 0);
    assert_eq!((records(&a), records(&b)), (1, 1));
    let r = json(&cairn(&config, &["--json", "sync"]));
    assert_eq!(r["records_compacted"], 0);
    assert_eq!((records(&a), records(&b)), (1, 1));

    // No margin: still kept while a target is away; gone once it has obeyed.
    let text_cfg = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        format!("{text_cfg}\n[retention]\ndeletion_records_for = \"0d\"\n"),
    )
    .unwrap();
    let second = snapshot_ids(a.to_str().unwrap()).pop_first().unwrap();
    let away = tmp.path().join("b-away");
    fs::rename(&b, &away).unwrap();
    expect_code(&cairn(&config, &["forget", &second]), 3);
    let r = json(&cairn(&config, &["--json", "sync"]));
    assert_eq!(r["records_compacted"], 0);
    assert_eq!(records(&a), 2);
    fs::rename(&away, &b).unwrap();
    let r = json(&cairn(&config, &["--json", "sync"]));
    assert_eq!(r["records_compacted"], 2, "{r}");
    // What they deleted is kept for good in one tombstone record, on each target.
    assert_eq!((records(&a), records(&b)), (1, 1));
    // Nothing came back.
    assert!(snapshot_ids(a.to_str().unwrap()).is_empty());
    assert!(snapshot_ids(b.to_str().unwrap()).is_empty());
}

#[test]
fn bad_retention_input_is_refused_and_removes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, _b) = two_local_targets(tmp.path(), "f", b"one");
    let base = fs::read_to_string(&config).unwrap();
    let before = snapshot_ids(a.to_str().unwrap());

    for (bad, key) in [
        ("keep_daily = -1", "keep_daily"),
        ("keep_dayly = 3", "keep_dayly"),
        ("keep_within = \"3w\"", "keep_within"),
        ("group_by = \"host,colour\"", "group_by"),
    ] {
        let with = format!("{base}\n[retention]\nkeep_last = 1\n{bad}\n");
        let line = with.lines().position(|l| l == bad).unwrap() + 1;
        fs::write(&config, &with).unwrap();
        let out = cairn(&config, &["forget"]);
        expect_code(&out, 2);
        let msg = text(&out);
        assert!(msg.contains(&format!("line {line}")), "{bad}: {msg}");
        assert!(msg.contains(key), "{bad}: {msg}");
    }
    fs::write(&config, &base).unwrap();

    // A policy that keeps nothing.
    let out = cairn(&config, &["forget"]);
    expect_code(&out, 1);
    assert!(text(&out).contains("keeps nothing"), "{}", text(&out));
    let out = cairn(&config, &["forget", "--keep-last", "0"]);
    expect_code(&out, 1);
    // A snapshot that does not exist.
    let out = cairn(&config, &["forget", "deadbeef"]);
    expect_code(&out, 1);
    assert!(
        text(&out).contains("no snapshot `deadbeef`"),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot_ids(a.to_str().unwrap()), before);

    // Another cairn holds the lock (its backup stands still after writing a pack).
    fs::write(tmp.path().join("src/new"), pseudo_random(9, 10_000)).unwrap();
    let mut held = halted_backup(&config);
    let forget = cairn(&config, &["forget", "--keep-last", "1"]);
    let prune = cairn(&config, &["prune"]);
    held.kill().unwrap();
    held.wait().unwrap();
    expect_code(&forget, 11);
    expect_code(&prune, 11);
    assert_eq!(snapshot_ids(a.to_str().unwrap()), before);
    assert!(listed(&a.join(".cairn-deletions")).is_empty());

    // A required target unreachable: prune removes nothing and says what it waits for.
    fs::write(tmp.path().join("src/new"), pseudo_random(10, 10_000)).unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    expect_code(&cairn(&config, &["forget", "--keep-last", "1"]), 0);
    let b = tmp.path().join("b");
    fs::rename(&b, tmp.path().join("b-away")).unwrap();
    let files_before = listed(&a.join("index"));
    let out = cairn(&config, &["--json", "prune"]);
    expect_code(&out, 3);
    let r = json(&out);
    assert!(r["deferred"].as_str().unwrap().contains("`b`"), "{r}");
    assert!(
        r["plan"]["packs_unused"].as_u64().unwrap() + r["plan"]["packs_repack"].as_u64().unwrap()
            > 0,
        "{r}"
    );
    assert_eq!(listed(&a.join("index")), files_before);
    assert!(
        listed(&a.join(".cairn-deletions")).len() == 1,
        "only forget's record"
    );
}
