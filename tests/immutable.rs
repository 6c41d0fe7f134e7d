//! Immutable copies (issue 28): an S3 target with `object_lock` against a real S3 server that
//! implements versioning and Object Lock (moto, started by the project's script). A bucket
//! that claims a lock and has none takes nothing; a locked bucket takes backups that stock
//! restic reads, and its versions survive deletion through cairn's own credentials; a
//! governance lock those credentials may bypass is reported as not immutable.

mod common;

use std::{fs, path::Path};

use common::*;

/// Every version in the bucket: (key, version id).
fn versions(bucket: &str) -> Vec<(String, String)> {
    let (code, body) = s3_lock_request("GET", &format!("{bucket}?versions"), &[], None);
    assert_eq!(code, 200, "{body}");
    body.split("<Version>")
        .skip(1)
        .map(|v| {
            let tag = |t: &str| {
                v.split(&format!("<{t}>"))
                    .nth(1)
                    .and_then(|r| r.split(&format!("</{t}>")).next())
                    .unwrap()
                    .to_string()
            };
            (tag("Key"), tag("VersionId"))
        })
        .collect()
}

fn source(tmp: &Path) -> std::path::PathBuf {
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("ledger.bin"), pseudo_random(7, 200_000)).unwrap();
    src
}

#[test]
fn a_bucket_that_claims_a_lock_it_does_not_have_takes_nothing_and_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    for lock in [None, Some(None), Some(Some(("GOVERNANCE", 1)))] {
        let b = lock_bucket(tmp.path(), lock);
        let local = tmp.path().join(format!("local-{b}"));
        let config = write_config(
            tmp.path(),
            &[&src],
            &format!(
                "{}{}",
                local_target("local", &local),
                locked_target("vault", &b, "compliance", 1)
            ),
        );
        // A new repository is made on the local target only (the vault is refused, so it
        // counts as away); the next backup is refused there again.
        expect_code(&cairn(&config, &["backup", "--init", "--force-new"]), 3);
        let out = cairn(&config, &["backup"]);
        expect_code(&out, 3);
        let why = match lock {
            None => "versioning is not enabled",
            Some(None) => "Object Lock has no default retention",
            Some(Some(_)) => "its default retention is GOVERNANCE, not COMPLIANCE",
        };
        assert!(
            text(&out).contains("vault") && text(&out).contains(why),
            "{}",
            text(&out)
        );
        assert!(versions(&b).is_empty(), "{:?}", versions(&b));
        // The local copy is whole: restic reads it.
        assert_eq!(snapshot_ids(&local.display().to_string()).len(), 2);
    }
}

/// A local target and `vault`, a bucket locked by default in `mode` for a day (the target
/// claiming the same), backed up once; (configuration, bucket).
fn backed_up(tmp: &Path, mode: &str) -> (std::path::PathBuf, String) {
    let src = source(tmp);
    let b = lock_bucket(tmp, Some(Some((mode, 1))));
    let config = write_config(
        tmp,
        &[&src],
        &format!(
            "{}{}",
            local_target("local", &tmp.join("local")),
            locked_target("vault", &b, &mode.to_lowercase(), 1)
        ),
    );
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    (config, b)
}

#[test]
fn a_locked_bucket_keeps_what_cairns_own_credentials_try_to_destroy() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, b) = backed_up(tmp.path(), "COMPLIANCE");
    let repo = format!("s3:{}/{b}/repo", env("S3LOCK_ENDPOINT"));
    let read = |args: &[&str]| {
        restic_cmd(&repo, args)
            .env("AWS_ACCESS_KEY_ID", "id")
            .env("AWS_SECRET_ACCESS_KEY", "key")
            .output()
            .unwrap()
    };
    let out = read(&["snapshots", "--json"]);
    assert!(out.status.success(), "{}", text(&out));

    let out = cairn(&config, &["check", "--immutability"]);
    expect_code(&out, 0);
    assert!(
        text(&out).contains("vault            immutable (S3 Object Lock, COMPLIANCE 1 day(s))"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("local            claims no protection"));
    let st = json(&cairn(&config, &["--json", "status"]));
    assert!(
        st["rule"]["offline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "vault"),
        "{st}"
    );

    // The attacker holds the same credentials: every version cairn wrote stays.
    let before = versions(&b);
    assert!(before.iter().any(|(k, _)| k == "repo/config"));
    for (key, version) in &before {
        let (code, _) = s3_lock_request(
            "DELETE",
            &format!("{b}/{key}?versionId={version}"),
            &["x-amz-bypass-governance-retention: true"],
            None,
        );
        assert_eq!(code, 403, "{key} {version} was deleted");
    }
    assert_eq!(versions(&b), before);

    // The nightly job proves it, and extends the locks, once a day.
    let steps = |out: &std::process::Output| -> Vec<(String, String)> {
        json(out)["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == "immutability" || s["step"] == "lock-extend")
            .map(|s| {
                (
                    s["step"].as_str().unwrap().to_string(),
                    s["result"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| {
        vec![
            ("immutability".to_string(), a.to_string()),
            ("lock-extend".to_string(), b.to_string()),
        ]
    };
    let out = cairn(&config, &["--json", "run"]);
    expect_code(&out, 0);
    assert_eq!(steps(&out), pair("ok", "ok"));
    let out = cairn(&config, &["--json", "run"]);
    expect_code(&out, 0);
    assert_eq!(steps(&out), pair("not-due", "not-due"));
}

#[test]
fn a_governance_lock_cairns_credentials_may_bypass_is_not_immutable() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = backed_up(tmp.path(), "GOVERNANCE");
    let out = cairn(&config, &["check", "--immutability"]);
    expect_code(&out, 5);
    assert!(
        text(&out).contains("vault            NOT immutable (S3 Object Lock, GOVERNANCE 1 day(s) claimed): the canary"),
        "{}",
        text(&out)
    );
    // The nightly job fails as it does on damage: its hooks and ping hear of it.
    let out = cairn(&config, &["--json", "run"]);
    expect_code(&out, 5);
    assert_eq!(json(&out)["failed_step"], "immutability");
    let st = json(&cairn(&config, &["--json", "status"]));
    let vault = st["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "vault")
        .unwrap();
    assert_eq!(vault["recorded"]["immutable"], false, "{st}");
    assert!(
        !st["rule"]["offline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "vault"),
        "{st}"
    );
}

/// The lock of every current object under `prefix`, by key (read back with HEAD).
fn locks(bucket: &str, prefix: &str) -> std::collections::BTreeMap<String, String> {
    let (code, body) = s3_lock_request(
        "GET",
        &format!("{bucket}?list-type=2&prefix={prefix}"),
        &[],
        None,
    );
    assert_eq!(code, 200, "{body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|r| r.split("</Key>").next())
        .map(|key| {
            let out = std::process::Command::new("curl")
                .args([
                    "-s",
                    "-I",
                    "--aws-sigv4",
                    "aws:amz:us-east-1:s3",
                    "--user",
                    "id:key",
                ])
                .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
                .arg(format!("{}/{bucket}/{key}", env("S3LOCK_ENDPOINT")))
                .output()
                .unwrap();
            let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
            let until = head
                .lines()
                .find_map(|l| l.strip_prefix("x-amz-object-lock-retain-until-date:"))
                .unwrap_or_else(|| panic!("{key} carries no lock: {head}"))
                .trim()
                .to_uppercase();
            (key.to_string(), until)
        })
        .collect()
}

#[test]
fn locks_are_extended_for_what_kept_snapshots_need_and_not_for_what_only_forgotten_ones_do() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, b) = backed_up(tmp.path(), "COMPLIANCE");
    let first = json(&cairn(&config, &["--json", "snapshots"]))["snapshots"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A second snapshot of the one file, changed: the first one's data and trees (two packs)
    // are needed by it alone.
    fs::write(tmp.path().join("src/ledger.bin"), pseudo_random(8, 200_000)).unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    expect_code(&cairn(&config, &["forget", &first]), 0);
    // (The audit log's head note is rewritten by every command, lock-extend's own included:
    // its newest version is locked by the bucket's default, like any new object.)
    let mut before = locks(&b, "repo/");
    before.retain(|k, _| !k.starts_with("repo/.cairn-audit/head-"));
    let out = cairn(&config, &["--json", "lock-extend"]);
    expect_code(&out, 0);
    let report = json(&out)["targets"][0].clone();
    assert_eq!(report["name"], "vault");
    assert_eq!(report["left"], 2, "{report}");
    let after = locks(&b, "repo/");
    // (lock-extend adds its own audit record's copy.)
    assert!(before.keys().all(|k| after.contains_key(k)), "{after:?}");
    let moved: Vec<&String> = before.keys().filter(|k| after[*k] > before[*k]).collect();
    let kept: Vec<&String> = before.keys().filter(|k| after[*k] == before[*k]).collect();
    // Only those two packs keep their old lock; config, keys, index, the kept snapshot and the
    // packs it needs are locked for the full period from now.
    assert_eq!(kept.len(), 2, "{before:?}\n{after:?}");
    assert!(kept.iter().all(|k| k.starts_with("repo/data/")), "{kept:?}");
    assert!(moved.iter().any(|k| *k == "repo/config"));
    assert!(moved.iter().filter(|k| k.starts_with("repo/data/")).count() >= 2);
    // Each of them, and the head note left out above, once.
    assert_eq!(
        report["extended"].as_u64().unwrap() as usize,
        moved.len() + 1,
        "{report}"
    );
}

/// Overwrites `key` in the bucket with junk, as an attacker holding cairn's credentials can.
fn overwrite(bucket: &str, key: &str, tmp: &Path) {
    let junk = tmp.join("junk");
    fs::write(&junk, b"overwritten by the attacker").unwrap();
    let md5 = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("openssl md5 -binary {} | base64", junk.display()))
        .output()
        .unwrap();
    let md5 = format!(
        "Content-MD5: {}",
        String::from_utf8(md5.stdout).unwrap().trim()
    );
    let (code, body) = s3_lock_request("PUT", &format!("{bucket}/{key}"), &[&md5], Some(&junk));
    assert_eq!(code, 200, "{body}");
}

/// What an attacker holding the bucket's credentials does through the S3 API: every object
/// deleted, then `config` and every key file overwritten.
fn destroy_through_s3(b: &str, tmp: &Path) {
    let (_, listing) = s3_lock_request("GET", &format!("{b}?list-type=2&prefix=repo/"), &[], None);
    let keys: Vec<&str> = listing
        .split("<Key>")
        .skip(1)
        .filter_map(|r| r.split("</Key>").next())
        .collect();
    for key in &keys {
        assert_eq!(
            s3_lock_request("DELETE", &format!("{b}/{key}"), &[], None).0,
            204
        );
    }
    overwrite(b, "repo/config", tmp);
    for key in keys.iter().filter(|k| k.starts_with("repo/keys/")) {
        overwrite(b, key, tmp);
    }
}

/// From `config`, each of `snapshots` (id, content of `ledger`) restored from `vault` as of
/// `before` is byte-identical, and `verify --as-of` of every snapshot passes there.
fn restores_and_verifies_as_of(
    config: &Path,
    before: &str,
    snapshots: &[(&str, &[u8])],
    tmp: &Path,
    ledger: &Path,
) {
    for (id, content) in snapshots {
        let dest = tmp.join(format!("restored-{id}"));
        let out = cairn(
            config,
            &[
                "--as-of",
                before,
                "restore",
                id,
                "--target",
                dest.to_str().unwrap(),
                "--from",
                "vault",
            ],
        );
        expect_code(&out, 0);
        assert_eq!(&fs::read(restored(&dest, ledger)).unwrap()[..], *content);
    }
    let out = cairn(
        config,
        &[
            "--as-of",
            before,
            "verify",
            "--only",
            "vault",
            "--snapshots",
            "all",
        ],
    );
    expect_code(&out, 0);
}

#[test]
fn after_an_attack_with_the_hosts_own_keys_the_bucket_is_read_and_recovered_as_it_stood() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, b) = backed_up(tmp.path(), "COMPLIANCE");
    let ledger = tmp.path().join("src/ledger.bin");
    let first = fs::read(&ledger).unwrap();
    fs::write(&ledger, pseudo_random(8, 200_000)).unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    let second = fs::read(&ledger).unwrap();
    let snaps = json(&cairn(&config, &["--json", "snapshots"]));
    let ids: Vec<String> = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    // A second operator's key, endorsed by cairn: it comes through the recovery too.
    let out = cairn_cmd(&config)
        .args(["--operator", "bob", "key", "add"])
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_NEW_PASSWORD", "bob's own password")
        .output()
        .unwrap();
    expect_code(&out, 0);
    // S3 dates versions to the second: the attack starts in the second after `before`.
    let before = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    while jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
        == before
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // The attacker holds the password and every credential: forget and prune through cairn,
    // then delete every object and overwrite `config` and the key through the S3 API.
    expect_code(
        &cairn(&config, &["forget", "--keep-last", "1", "--prune"]),
        0,
    );
    destroy_through_s3(&b, tmp.path());

    // A clean configuration on another machine: the bucket and an empty folder.
    let clean = tmp.path().join("clean");
    fs::create_dir_all(clean.join("src")).unwrap();
    let fresh = clean.join("fresh");
    let clean_config = write_config(
        &clean,
        &[&clean.join("src")],
        &format!(
            "{}{}",
            locked_target("vault", &b, "compliance", 1),
            local_target("fresh", &fresh)
        ),
    );
    let out = cairn(&clean_config, &["--json", "snapshots"]);
    assert!(
        !text(&out).contains(&ids[0]),
        "the attack left the snapshots visible: {}",
        text(&out)
    );
    let out = cairn(&clean_config, &["--as-of", &before, "--json", "snapshots"]);
    let listed = text(&out);
    for id in &ids {
        assert!(
            listed.contains(id.as_str()),
            "{id} not listed as of {before}: {listed}"
        );
    }
    let both: Vec<(&str, &[u8])> = vec![(&ids[0], &first), (&ids[1], &second)];
    restores_and_verifies_as_of(&clean_config, &before, &both, tmp.path(), &ledger);
    // Writing commands do not read the past.
    expect_code(&cairn(&clean_config, &["--as-of", &before, "backup"]), 2);
    expect_code(
        &cairn(&clean_config, &["--as-of", &before, "check", "--heal"]),
        2,
    );

    let out = cairn(
        &clean_config,
        &[
            "--as-of", &before, "recover", "--from", "vault", "--to", "fresh",
        ],
    );
    expect_code(&out, 0);
    let repo = fresh.display().to_string();
    let out = restic(&repo, &["check", "--read-data"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(snapshot_ids(&repo).len(), 2);
    let out = restic_cmd(&repo, &["snapshots"])
        .env("RESTIC_PASSWORD", "bob's own password")
        .output()
        .unwrap();
    assert!(out.status.success(), "bob's key: {}", text(&out));
}

/// Issue 28's compromised host: four targets (a local folder, an SFTP server, a bucket locked
/// in compliance mode for 30 days, an append-only SFTP account), ten nightly backups, then an
/// attacker with the password and every credential. What survives is read from a clean
/// configuration.
#[test]
fn a_host_taken_over_with_every_key_cannot_destroy_the_locked_bucket_nor_the_append_only_server() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let ledger = src.join("ledger.bin");
    let b = lock_bucket(tmp.path(), Some(Some(("COMPLIANCE", 30))));
    let local = tmp.path().join("local");
    let (sftp, sftp_dir) = sftp_target("sftp", &unique("host"));
    let (ao, ao_dir) = append_only_target("ao", &unique("host"), true);
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!(
            "{}{sftp}{}{ao}",
            local_target("local", &local),
            locked_target("vault", &b, "compliance", 30)
        ),
    );
    let mut nights: Vec<(String, Vec<u8>)> = Vec::new();
    for night in 1..=10u64 {
        let content = pseudo_random(night, 150_000);
        fs::write(&ledger, &content).unwrap();
        let time = format!("2026-11-{night:02} 03:00:00");
        let mut args = vec!["--json", "backup", "--time", &time];
        if night == 1 {
            args.push("--init");
        }
        let out = cairn(&config, &args);
        expect_code(&out, 0);
        nights.push((
            json(&out)["snapshot"].as_str().unwrap().to_string(),
            content,
        ));
    }
    let ids: std::collections::BTreeSet<String> = nights.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(snapshot_ids(&ao_dir), ids);
    let ao_before = files_below(Path::new(&ao_dir));
    let before = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    // S3 dates versions to the second: the attack starts in the second after `before`.
    while jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
        == before
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // The attack. Through cairn: forget all but the last, and prune.
    let out = cairn(&config, &["forget", "--keep-last", "1", "--prune"]);
    expect_code(&out, 0);
    assert!(
        text(&out).contains("left to the storage's owner"),
        "{}",
        text(&out)
    );
    // Through each storage's own API: every object deleted, `config` and the keys overwritten.
    destroy_through_s3(&b, tmp.path());
    let junk = tmp.path().join("junk");
    fs::write(&junk, b"overwritten by the attacker").unwrap();
    for (user, dir) in [
        (std::env::var("SFTP_USER").unwrap(), &sftp_dir),
        (std::env::var("SFTP_AO_USER").unwrap(), &ao_dir),
    ] {
        let held = files_below(Path::new(dir));
        let mut commands: Vec<String> = held
            .keys()
            .filter(|f| f.starts_with("keys/") || *f == "config")
            .map(|f| format!("put {} {dir}/{f}", junk.display()))
            .collect();
        for f in held.keys() {
            commands.push(format!("rm {dir}/{f}"));
            commands.push(format!("rename {dir}/{f} {dir}/{f}.moved"));
            commands.push(format!("chmod 666 {dir}/{f}"));
        }
        let said = sftp_batch(&user, &commands);
        if *dir == ao_dir {
            assert_eq!(
                said.matches("Permission denied").count(),
                commands.len(),
                "every attempt refused: {said}"
            );
        }
    }
    for f in files_below(&local).keys() {
        fs::remove_file(local.join(f)).unwrap();
    }

    // The ordinary copies are gone; the append-only one has every file, unchanged.
    assert!(files_below(Path::new(&sftp_dir)).is_empty());
    let ao_after = files_below(Path::new(&ao_dir));
    for (f, bytes) in &ao_before {
        assert_eq!(
            ao_after.get(f),
            Some(bytes),
            "{f} on the append-only server"
        );
    }
    // Stock restic reads all ten nights there, every byte.
    assert_eq!(snapshot_ids(&ao_dir), ids);
    let out = restic(&ao_dir, &["--no-lock", "check", "--read-data"]);
    assert!(out.status.success(), "{}", text(&out));
    for (id, content) in &nights {
        let dest = tmp.path().join(format!("restic-{id}"));
        let out = restic(
            &ao_dir,
            &[
                "--no-lock",
                "restore",
                id,
                "--target",
                dest.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(&fs::read(restored(&dest, &ledger)).unwrap(), content);
    }
    // cairn itself obeys the (genuine) deletion records there: the kept snapshot only.
    let ao_only = tmp.path().join("ao-only");
    fs::create_dir_all(&ao_only).unwrap();
    let ao_config = write_config(&ao_only, &[&src], &ao);
    let listed = json(&cairn(&ao_config, &["--json", "snapshots"]));
    assert_eq!(listed["snapshots"].as_array().unwrap().len(), 1, "{listed}");

    // The bucket, read from a clean configuration as it stood before the attack.
    let clean = tmp.path().join("clean");
    fs::create_dir_all(&clean).unwrap();
    let fresh = clean.join("fresh");
    let clean_config = write_config(
        &clean,
        &[&src],
        &format!(
            "{}{}",
            locked_target("vault", &b, "compliance", 30),
            local_target("fresh", &fresh)
        ),
    );
    let listed = text(&cairn(
        &clean_config,
        &["--as-of", &before, "--json", "snapshots"],
    ));
    for id in &ids {
        assert!(
            listed.contains(id.as_str()),
            "{id} as of {before}: {listed}"
        );
    }
    let all: Vec<(&str, &[u8])> = nights
        .iter()
        .map(|(id, c)| (id.as_str(), c.as_slice()))
        .collect();
    restores_and_verifies_as_of(&clean_config, &before, &all, tmp.path(), &ledger);
    let out = cairn(
        &clean_config,
        &[
            "--as-of", &before, "recover", "--from", "vault", "--to", "fresh",
        ],
    );
    expect_code(&out, 0);
    let repo = fresh.display().to_string();
    let out = restic(&repo, &["check", "--read-data"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(snapshot_ids(&repo), ids);
}
