//! Trust, round 2: one target keeps what it was sent and puts it back later (a prune's record
//! that was called off; index and snapshot files deleted long ago). Nothing of it may take data
//! from a kept snapshot: afterwards stock `restic check --read-data` passes on every target and
//! every kept snapshot restores, from each target alone. One local and one SFTP target; the
//! hostile one is each kind in turn.

mod common;

use std::{fs, path::Path};

use common::*;

/// Two targets, `a` local and `b` SFTP, backing up `tmp/src`; returns the configuration and
/// each target's folder on this machine (restic reads the SFTP one there).
fn local_and_sftp(tmp: &Path, extra: &str) -> (std::path::PathBuf, String, String) {
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("stays.txt"), pseudo_random(1, 50_000)).unwrap();
    let a = tmp.join("a");
    let (sftp, b) = sftp_target("b", &unique("replay"));
    let config = write_config(tmp, &[&src], &format!("{}{sftp}", local_target("a", &a)));
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, format!("{extra}{text}")).unwrap();
    (config, a.to_str().unwrap().to_string(), b)
}

/// Every snapshot restic lists on each folder restores there with `x.bin` as `content`, where
/// it holds one; restic's full check passes; cairn restores `latest` from each target alone.
fn intact(config: &Path, folders: &[&str], content: &[u8]) {
    let tmp = config.parent().unwrap();
    for (name, repo) in ["a", "b"].iter().zip(folders) {
        restic_check(repo);
        for id in snapshot_ids(repo) {
            let dest = tmp.join(unique("restic-restore"));
            let out = restic(repo, &["restore", &id, "--target", dest.to_str().unwrap()]);
            assert!(out.status.success(), "{repo} {id}: {}", text(&out));
            if let Some(x) = find_file(&dest, "x.bin") {
                assert_eq!(fs::read(x).unwrap(), content, "{repo} {id}");
            }
        }
        x_restored_by_cairn(config, name, content);
    }
}

/// cairn restores `latest` from target `name` alone, with `x.bin` as `content`.
fn x_restored_by_cairn(config: &Path, name: &str, content: &[u8]) {
    let dest = config.parent().unwrap().join(unique("cairn-restore"));
    let target = dest.to_str().unwrap();
    let out = cairn(
        config,
        &["restore", "latest", "--from", name, "--target", target],
    );
    expect_code(&out, 0);
    let x = find_file(&dest, "x.bin").expect("x.bin in the latest snapshot");
    assert_eq!(fs::read(x).unwrap(), content, "cairn from `{name}`");
}

fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).ok()? {
            let p = e.ok()?.path();
            if p.file_name().is_some_and(|n| n == name) {
                return Some(p);
            }
            if p.is_dir() {
                todo.push(p);
            }
        }
    }
    None
}

/// x.bin backed up, removed and backed up again, and the first snapshot forgotten: a prune
/// would remove x.bin's data.
fn x_forgotten(config: &Path) -> Vec<u8> {
    let src = config.parent().unwrap().join("src");
    let content = pseudo_random(7, 400_000);
    fs::write(src.join("x.bin"), &content).unwrap();
    expect_code(&cairn(config, &["backup", "--init"]), 0);
    fs::remove_file(src.join("x.bin")).unwrap();
    expect_code(&cairn(config, &["backup"]), 0);
    expect_code(&cairn(config, &["forget", "--keep-last", "1"]), 0);
    content
}

fn a_called_off_prune_put_back_later(hostile: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = local_and_sftp(tmp.path(), "");
    let folders = [a.as_str(), b.as_str()];
    let content = x_forgotten(&config);
    // The hostile target refuses the prune's record and keeps its bytes: called off.
    let hostile_folder = if hostile == "a" { &a } else { &b };
    let kept = tmp.path().join("kept");
    let out = cairn_cmd(&config)
        .args(["--json", "prune", "--max-unused", "0"])
        .env("CAIRN_PASSWORD", PASSWORD)
        .env(
            "CAIRN_TEST_REFUSE",
            format!("{hostile_folder}|.cairn-deletions|{}", kept.display()),
        )
        .output()
        .unwrap();
    expect_code(&out, 3);
    assert!(json(&out)["record"].is_null(), "{}", text(&out));
    // What it kept, in order: the prune's record first (then the record voiding it).
    let record = kept.join(
        fs::read_dir(&kept)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.starts_with("0-"))
            .expect("the prune's record, kept by the hostile target"),
    );
    // x.bin comes back: the backup deduplicates it against the data the prune meant to remove.
    fs::write(tmp.path().join("src/x.bin"), &content).unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    // The hostile target puts the record in place; catch-up and a later prune run.
    let name = record.file_name().unwrap().to_str().unwrap();
    fs::copy(
        &record,
        Path::new(hostile_folder)
            .join(".cairn-deletions")
            .join(&name[2..]),
    )
    .unwrap();
    expect_code(&cairn(&config, &["sync"]), 0);
    expect_code(&cairn(&config, &["prune"]), 0);
    intact(&config, &folders, &content);
}

#[test]
fn a_called_off_prune_put_back_by_a_local_target_never_takes_effect() {
    a_called_off_prune_put_back_later("a");
}

#[test]
fn a_called_off_prune_put_back_by_an_sftp_target_never_takes_effect() {
    a_called_off_prune_put_back_later("b");
}

fn old_files_put_back_after_compaction(hostile: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) =
        local_and_sftp(tmp.path(), "[retention]\ndeletion_records_for = \"0h\"\n\n");
    let folders = [a.as_str(), b.as_str()];
    let content = x_forgotten(&config);
    let hostile_folder = Path::new(if hostile == "a" { &a } else { &b });
    let aside = tmp.path().join("aside");
    for dir in ["index", "snapshots"] {
        copy_dir(&hostile_folder.join(dir), &aside.join(dir));
    }
    expect_code(&cairn(&config, &["prune", "--max-unused", "0"]), 0);
    let synced = json(&cairn(&config, &["--json", "sync"]));
    assert!(
        synced["records_compacted"].as_u64().unwrap() >= 1,
        "{synced}"
    );
    // The old index and snapshot files come back on the hostile target.
    for dir in ["index", "snapshots"] {
        copy_dir(&aside.join(dir), &hostile_folder.join(dir));
    }
    fs::write(tmp.path().join("src/x.bin"), &content).unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    expect_code(&cairn(&config, &["prune"]), 0);
    // Deleted for good: on neither target again.
    for dir in ["index", "snapshots"] {
        for e in fs::read_dir(aside.join(dir)).unwrap() {
            let name = e.unwrap().file_name();
            let back: Vec<&str> = folders
                .iter()
                .copied()
                .filter(|f| Path::new(f).join(dir).join(&name).exists())
                .collect();
            assert!(
                back.is_empty() || back.len() == 2,
                "{dir}/{name:?} back on {back:?} only"
            );
        }
    }
    intact(&config, &folders, &content);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn old_index_and_snapshots_put_back_on_a_local_target_after_compaction_stay_deleted() {
    old_files_put_back_after_compaction("a");
}

#[test]
fn old_index_and_snapshots_put_back_on_an_sftp_target_after_compaction_stay_deleted() {
    old_files_put_back_after_compaction("b");
}

/// A source file named `config`, as in the reproduction: restoring over a target would replace
/// the repository's own `config`.
#[test]
fn restores_and_sample_restores_into_a_target_folder_are_refused_whatever_overwrite_says() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("config"), b"not a repository config").unwrap();
    let a = tmp.path().join("a");
    let config = write_config(tmp.path(), &[&src], &local_target("a", &a));
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let before = fs::read(a.join("config")).unwrap();
    let snapshot = format!("latest:{}", src.display());
    let zz = a.join("data/zz");
    for (dest, overwrite) in [(&a, "always"), (&a, "never"), (&zz, "never")] {
        let o = cairn(
            &config,
            &[
                "restore",
                &snapshot,
                "--target",
                dest.to_str().unwrap(),
                "--overwrite",
                overwrite,
            ],
        );
        expect_code(&o, 2);
        assert!(
            text(&o).contains("inside the folder of target `a`"),
            "{}",
            text(&o)
        );
    }
    let o = cairn(
        &config,
        &[
            "verify",
            "--restore-to",
            a.join("scratch").to_str().unwrap(),
        ],
    );
    expect_code(&o, 2);
    assert_eq!(fs::read(a.join("config")).unwrap(), before);
    assert!(!zz.exists() && !a.join("scratch").exists());
    restic_check(a.to_str().unwrap());
    expect_code(&cairn(&config, &["check"]), 0);
}

#[test]
fn wrong_passwords_tried_in_parallel_never_exceed_the_lockout() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _, _) = two_local_targets(tmp.path(), "f", b"x");
    let children: Vec<_> = (0..12)
        .map(|_| {
            cairn_cmd(&config)
                .args(["snapshots"])
                .env("CAIRN_PASSWORD", "not the password")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut codes: Vec<i32> = children
        .into_iter()
        .map(|mut c| c.wait().unwrap().code().unwrap())
        .collect();
    codes.sort_unstable();
    // Five tried (the default lockout), seven refused without a try.
    assert_eq!(codes, [[12; 5].as_slice(), &[13; 7]].concat());
    expect_code(&cairn(&config, &["snapshots"]), 13);
}

fn names_in(dir: &Path) -> std::collections::BTreeSet<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn key_add(config: &Path, operator: &str, with: &str, new: &str) -> std::process::Output {
    in_own_words(
        cairn_cmd(config)
            .args(["--operator", operator, "key", "add"])
            .env("CAIRN_PASSWORD", with)
            .env("CAIRN_NEW_PASSWORD", new)
            .output()
            .unwrap(),
    )
}

fn restic_opens(repo: &Path, password: &str) -> bool {
    restic_cmd(repo.to_str().unwrap(), &["snapshots", "--no-lock"])
        .env("RESTIC_PASSWORD", password)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_removed_key_put_back_after_compaction_opens_nothing_and_its_endorsement_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = two_local_targets(tmp.path(), "f", b"x");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        format!("[retention]\ndeletion_records_for = \"0h\"\n\n{text}"),
    )
    .unwrap();
    let bob = "bob's own password";
    let (keys_before, endorsed_before) =
        (names_in(&b.join("keys")), names_in(&b.join(".cairn-keys")));
    expect_code(&key_add(&config, "bob", PASSWORD, bob), 0);
    let bobs_key: Vec<String> = names_in(&b.join("keys"))
        .difference(&keys_before)
        .cloned()
        .collect();
    assert_eq!(bobs_key.len(), 1);
    let kept = fs::read(b.join("keys").join(&bobs_key[0])).unwrap();
    expect_code(&cairn(&config, &["--operator", "bob", "key", "remove"]), 0);
    let synced = json(&cairn(&config, &["--json", "sync"]));
    assert!(
        synced["records_compacted"].as_u64().unwrap() >= 1,
        "{synced}"
    );
    // Its endorsement went with it.
    for t in [&a, &b] {
        assert_eq!(
            names_in(&t.join(".cairn-keys")),
            endorsed_before,
            "{}",
            t.display()
        );
    }
    // Put back on b long after: never copied to a, taken off b again, opens nothing.
    fs::write(b.join("keys").join(&bobs_key[0]), &kept).unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    for t in [&a, &b] {
        assert!(
            !t.join("keys").join(&bobs_key[0]).exists(),
            "{}",
            t.display()
        );
        assert!(!restic_opens(t, bob), "{}", t.display());
    }
    expect_code(&cairn_with_password(&config, bob, &["snapshots"]), 12);
}

#[test]
fn a_removed_password_mints_no_key_through_a_target_that_was_away() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let [a, b, c] = ["a", "b", "c"].map(|n| tmp.path().join(n));
    let targets = format!(
        "{}{}{}",
        local_target("a", &a),
        local_target("b", &b),
        local_target("c", &c)
    );
    let config = write_config(tmp.path(), &[&src], &targets);
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let bob = "bob's own password";
    expect_code(&key_add(&config, "bob", PASSWORD, bob), 0);
    let away = |t: &Path| fs::rename(t, t.with_extension("away")).unwrap();
    let back = |t: &Path| fs::rename(t.with_extension("away"), t).unwrap();
    // Removed while c is away.
    away(&c);
    expect_code(&cairn(&config, &["--operator", "bob", "key", "remove"]), 3);
    // Only c is reachable, and it still holds bob's key: this machine refuses it all the same.
    back(&c);
    away(&a);
    away(&b);
    assert!(restic_opens(&c, bob), "c missed the removal");
    let o = key_add(&config, "mallory", bob, "mallory's password");
    expect_code(&o, 12);
    assert!(text(&o).contains("was removed"), "{}", text(&o));
    expect_code(&cairn_with_password(&config, bob, &["snapshots"]), 12);
    // Everyone back: c obeys, and no key of mallory's is anywhere.
    back(&a);
    back(&b);
    expect_code(&cairn(&config, &["sync"]), 0);
    for t in [&a, &b, &c] {
        assert!(!restic_opens(t, bob), "{}", t.display());
        assert!(!restic_opens(t, "mallory's password"), "{}", t.display());
    }
}

#[test]
fn a_replaced_or_shortened_local_audit_log_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _, _) = two_local_targets(tmp.path(), "f", b"x");
    expect_code(&cairn(&config, &["snapshots"]), 0);
    let state = tmp.path().join("state");
    let log = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path().join("audit.jsonl"))
        .find(|p| p.exists())
        .expect("the audit log");
    expect_code(&cairn(&config, &["audit", "verify"]), 0);
    let full = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = full.lines().collect();
    assert!(lines.len() >= 2);
    // Its last record cut off, cleanly (the chain itself stays intact).
    fs::write(&log, format!("{}\n", lines[..lines.len() - 1].join("\n"))).unwrap();
    let o = cairn(&config, &["audit", "verify"]);
    expect_code(&o, 5);
    assert!(text(&o).contains("was shortened"), "{}", text(&o));
    // (A clean cut was caught before too, by the records sealed on the targets: "removed
    // locally". A replaced log was not.)
    fs::write(&log, &full).unwrap();
    expect_code(&cairn(&config, &["audit", "verify"]), 0);
    // Replaced: removed, and a command run since starts a new log.
    fs::remove_file(&log).unwrap();
    expect_code(&cairn(&config, &["snapshots"]), 0);
    let o = cairn(&config, &["audit", "verify"]);
    expect_code(&o, 5);
    assert!(text(&o).contains("was replaced"), "{}", text(&o));
}

/// Every target being written must hold each pack the backup deduplicates against. A pack lost
/// on every target (nothing can bring it back): the next backup writes its data again instead
/// of naming it, says which targets have a hole, and once the admin has rebuilt the index (as
/// the README says), its snapshot restores from each target alone.
#[test]
fn a_pack_lost_everywhere_is_not_deduplicated_against() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = local_and_sftp(tmp.path(), "");
    let content = pseudo_random(11, 600_000);
    fs::write(tmp.path().join("src/x.bin"), &content).unwrap();
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let packs = file_packs(&config, "a");
    let (_, x_packs) = packs.iter().find(|(p, _)| p.ends_with("x.bin")).unwrap();
    let pack = pack_path(x_packs.iter().next().unwrap());
    for folder in [&a, &b] {
        fs::remove_file(Path::new(folder).join(&pack)).unwrap();
    }

    let out = cairn(&config, &["--json", "backup"]);
    expect_code(&out, 3);
    let report = json(&out);
    for t in report["targets"].as_array().unwrap() {
        assert_eq!(t["state"], "incomplete", "{report}");
        let detail = t["detail"].as_str().unwrap();
        assert!(
            detail.contains(&pack) && detail.contains("lacks"),
            "{detail}"
        );
    }
    for (name, repo) in [("a", a.as_str()), ("b", b.as_str())] {
        let o = restic(repo, &["rebuild-index"]);
        assert!(
            o.status.success(),
            "restic rebuild-index on `{name}`: {}",
            text(&o)
        );
    }
    for (name, repo) in [("a", a.as_str()), ("b", b.as_str())] {
        let dest = tmp.path().join(unique("restic-latest"));
        let o = restic(
            repo,
            &["restore", "latest", "--target", dest.to_str().unwrap()],
        );
        assert!(o.status.success(), "restic on `{name}`: {}", text(&o));
        let x = find_file(&dest, "x.bin").expect("x.bin restored by restic");
        assert_eq!(fs::read(x).unwrap(), content, "restic on `{name}`");
        x_restored_by_cairn(&config, name, &content);
    }
}

/// A snapshot goes only where all it names can follow. `a` misses a backup (its snapshot is on
/// `b` alone), then `b` loses the packs that backup wrote: catch-up must not give `a` a snapshot
/// whose trees and data no target holds; `a` stays sound for restic and names what was held back.
#[test]
fn a_snapshot_whose_trees_no_target_holds_is_not_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = local_and_sftp(tmp.path(), "");
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    // The same repository through `b` alone: `a` is away for this backup.
    let alone = tmp.path().join("b-alone");
    fs::create_dir_all(&alone).unwrap();
    let both = fs::read_to_string(&config).unwrap();
    let b_only = &both[..both.find("[[target]]").unwrap()];
    let b_toml = &both[both.rfind("[[target]]").unwrap()..];
    let config_b = alone.join("targets.toml");
    fs::write(&config_b, format!("{b_only}{b_toml}")).unwrap();
    fs::write(tmp.path().join("src/y.bin"), pseudo_random(5, 300_000)).unwrap();
    expect_code(&cairn(&config_b, &["backup"]), 0);
    let before: std::collections::BTreeSet<String> = snapshot_ids(&a);
    let only_b: Vec<String> = snapshot_ids(&b).difference(&before).cloned().collect();
    assert_eq!(only_b.len(), 1);
    // `b` loses every pack that backup wrote.
    let packs_of = |folder: &str| -> std::collections::BTreeSet<String> {
        let data = Path::new(folder).join("data");
        fs::read_dir(&data)
            .unwrap()
            .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(folder)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect()
    };
    let (on_a, on_b) = (packs_of(&a), packs_of(&b));
    let lost: Vec<&String> = on_b.difference(&on_a).collect();
    assert!(!lost.is_empty());
    for p in lost {
        fs::remove_file(Path::new(&b).join(p)).unwrap();
    }

    let out = cairn(&config, &["--json", "sync"]);
    assert_eq!(snapshot_ids(&a), before, "nothing of it reached `a`");
    restic_check(&a);
    let report = json(&out);
    let t_a = &report["targets"][0];
    assert_eq!(t_a["name"], "a");
    // Its index file and the snapshot itself.
    assert!(t_a["held_back"].as_u64().unwrap() >= 2, "{report}");
    let said = text(&out);
    assert!(
        said.contains(&format!("snapshots/{} is not copied", only_b[0]))
            && said.contains("is in no pack a target holds"),
        "{said}"
    );
}
