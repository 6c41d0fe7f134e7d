//! Accountability and access (issue 11): the audit log and its replicated copy, lockout after
//! wrong passwords, the credentials vault, and one key per operator, against real servers.

mod common;

use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Output};

use common::*;
use sha2::Digest;

fn with_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = cairn_cmd(config);
    c.args(args).env("CAIRN_PASSWORD", PASSWORD);
    for (k, v) in env {
        c.env(k, v);
    }
    in_own_words(c.output().unwrap())
}

fn audit_lines(config: &Path) -> (std::path::PathBuf, Vec<String>) {
    let o = cairn(config, &["--json", "audit", "show"]);
    expect_code(&o, 0);
    let state = config.parent().unwrap().join("state");
    let path = walk(&state)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "audit.jsonl"))
        .expect("an audit log in the state folder");
    let lines = fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    (path, lines)
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Every file cairn wrote beside the configuration (state, audit log, reports, metrics) is
/// free of every secret the test used.
fn assert_no_secret_written(dir: &Path, secrets: &[&str]) {
    for f in walk(dir) {
        let Ok(text) = fs::read(&f) else { continue };
        let text = String::from_utf8_lossy(&text);
        for s in secrets {
            assert!(!text.contains(s), "a secret is written in {}", f.display());
        }
    }
}

/// A repository with one snapshot on a local disk (`tmp/disk`) and an SFTP server of the
/// test's own (so it can be stopped); returns (configuration, server, SFTP folder).
fn disk_and_sftp(tmp: &Path) -> (std::path::PathBuf, PrivateSshd, String) {
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"keys").unwrap();
    let sshd = PrivateSshd::start(tmp, None);
    let (sftp, sftp_dir) = sshd.sftp_target("sftp", &unique("keys"));
    let config = write_config(
        tmp,
        &[&src],
        &format!("{}{sftp}", local_target("disk", &tmp.join("disk"))),
    );
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    (config, sshd, sftp_dir)
}

fn verify_audit(config: &Path) -> (i32, String) {
    let o = cairn(config, &["audit", "verify"]);
    (o.status.code().unwrap(), text(&o))
}

#[test]
fn every_command_is_recorded_and_tampering_is_named_at_its_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, _b) = two_local_targets(tmp.path(), "f.txt", b"client data");
    fs::write(tmp.path().join("src/g.txt"), b"more client data").unwrap();
    let o = with_env(&config, &["backup"], &[("CAIRN_OPERATOR", "alice")]);
    expect_code(&o, 0);
    let o = with_env(
        &config,
        &[
            "--operator",
            "bob",
            "restore",
            "latest",
            "--target",
            tmp.path().join("out").to_str().unwrap(),
        ],
        &[],
    );
    expect_code(&o, 0);
    let o = cairn_with_password(&config, "not the password", &["snapshots"]);
    expect_code(&o, 12);
    expect_code(&cairn(&config, &["snapshots"]), 0);

    let (path, lines) = audit_lines(&config);
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let commands: Vec<&str> = records
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        commands,
        [
            "backup",
            "backup",
            "restore",
            "snapshots",
            "snapshots",
            "snapshots"
        ],
        "{records:#?}"
    );
    let backup = &records[1];
    assert_eq!(backup["operator"], "alice");
    assert_eq!(backup["result"], "ok");
    assert_eq!(backup["snapshots"].as_array().unwrap().len(), 1);
    assert!(backup["bytes"].as_u64().unwrap() > 0);
    assert!(backup["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(records[2]["operator"], "bob");
    assert_eq!(
        records[2]["snapshots"], backup["snapshots"],
        "the snapshot restored"
    );
    assert!(records[2]["bytes"].as_u64().unwrap() >= 11);
    assert_eq!(records[3]["result"], "refused");
    assert_eq!(records[4]["result"], "refused");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1);
    }
    assert_eq!(verify_audit(&config).0, 0);
    // Each record sealed on the targets, the refused ones included once a key opened.
    let sealed = fs::read_dir(a.join(".cairn-audit")).unwrap().count();
    assert!(sealed >= lines.len() - 1, "{sealed} of {}", lines.len());

    let write = |l: &[String]| fs::write(&path, l.join("\n") + "\n").unwrap();
    let fault = |l: &[String]| {
        write(l);
        let (code, out) = verify_audit(&config);
        assert_eq!(code, 5, "{out}");
        out
    };
    let mut edited = lines.clone();
    edited[2] = edited[2].replace("\"bob\"", "\"eve\"");
    assert!(fault(&edited).contains("record 3 was changed"));
    let mut removed = lines.clone();
    removed.remove(3);
    assert!(fault(&removed).contains("record 4 was removed"));
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    assert!(fault(&swapped).contains("record 2 is out of order"));
    // The tail cut off cleanly still has its copy on the targets.
    let out = fault(&lines[..lines.len() - 2]);
    assert!(out.contains("not in the local log"), "{out}");
    write(&lines);
    assert_eq!(verify_audit(&config).0, 0);
    assert_no_secret_written(tmp.path().join("state").as_path(), &[PASSWORD]);

    // A record that cannot be written is a failed command, not a warning: the trail has a gap.
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let o = cairn(&config, &["snapshots"]);
    expect_code(&o, 1);
    assert!(
        text(&o).contains("audit record not written"),
        "{}",
        text(&o)
    );
}

#[test]
fn five_wrong_passwords_lock_the_repository_until_the_time_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _a, _b) = two_local_targets(tmp.path(), "f.txt", b"x");
    let toml = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        format!("[security]\nlockout_for = \"10m\"\n\n{toml}"),
    )
    .unwrap();
    for i in 0..5 {
        let o = cairn_with_password(&config, &format!("wrong {i}"), &["snapshots"]);
        expect_code(&o, 12);
    }
    // The right password is refused while locked, by a new process each time.
    for _ in 0..2 {
        let o = cairn(&config, &["snapshots"]);
        expect_code(&o, 13);
        assert!(
            text(&o).contains("locked after 5 wrong passwords"),
            "{}",
            text(&o)
        );
    }
    // Nine minutes on: still locked. Eleven: open, and the count starts again.
    let o = with_env(
        &config,
        &["snapshots"],
        &[
            ("CAIRN_PASSWORD", PASSWORD),
            ("CAIRN_TEST_CLOCK_OFFSET", "540"),
        ],
    );
    expect_code(&o, 13);
    let later = [
        ("CAIRN_PASSWORD", PASSWORD),
        ("CAIRN_TEST_CLOCK_OFFSET", "660"),
    ];
    expect_code(&with_env(&config, &["snapshots"], &later), 0);
    for i in 0..4 {
        let o = cairn_with_password(&config, &format!("wrong {i}"), &["snapshots"]);
        expect_code(&o, 12);
    }
    expect_code(&cairn(&config, &["snapshots"]), 0);

    let (_, lines) = audit_lines(&config);
    let refused = lines.iter().filter(|l| l.contains("\"refused\"")).count();
    // Per wrong password: the attempt and the command; per locked attempt: the same two.
    assert_eq!(refused, 2 * 5 + 2 * 3 + 2 * 4, "{lines:#?}");
}

/// The vault holds the secrets of every target kind; cairn opens each target with them.
#[test]
fn the_vault_round_trips_every_target_kinds_secrets_and_refuses_a_damaged_or_open_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"vaulted").unwrap();
    let (sftp, _) = sftp_target("sftp", &unique("vault"));
    let (smb, _) = smb_target_at(
        "smb",
        &unique("vault"),
        &env("SMB_PORT"),
        &env("SMB_SHARE"),
        "vault:smb/password",
    );
    let az = azblob_target("azure", &unique("vault"))
        .replace("env:AZBLOB_ACCOUNT_KEY", "vault:azure/key");
    let s3 = s3_target("s3", &unique("vault"))
        .replace("env:S3_ACCESS_KEY_ID", "vault:s3/id")
        .replace("env:S3_SECRET_ACCESS_KEY", "vault:s3/secret");
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!(
            "{}{sftp}{smb}{az}{s3}",
            local_target("disk", &tmp.path().join("disk"))
        ),
    );
    let toml = fs::read_to_string(&config).unwrap().replace(
        "[repository]\n",
        "[repository]\npassword = \"vault:repository\"\n",
    );
    fs::write(&config, toml).unwrap();
    let pass = [("CAIRN_VAULT_PASSPHRASE", "vault passphrase 1")];
    let vault_cmd = |args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]| {
        let mut c = cairn_cmd(&config);
        c.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };
    expect_code(&vault_cmd(&["vault", "init"], None, &pass), 0);
    let secrets = [
        ("repository", PASSWORD.to_string()),
        ("smb/password", env("SMB_PASSWORD")),
        ("azure/key", env("AZBLOB_ACCOUNT_KEY")),
        ("s3/id", env("S3_ACCESS_KEY_ID")),
        ("s3/secret", env("S3_SECRET_ACCESS_KEY")),
    ];
    for (name, value) in &secrets {
        let o = vault_cmd(&["vault", "set", name], Some(&format!("{value}\n")), &pass);
        expect_code(&o, 0);
    }
    let vault = tmp.path().join("cairn.vault");
    let bytes = fs::read(&vault).unwrap();
    for (_, value) in &secrets {
        assert!(!String::from_utf8_lossy(&bytes).contains(value.as_str()));
    }
    let o = vault_cmd(&["vault", "get", "s3/secret"], None, &pass);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim_end(), secrets[4].1);
    let listed = vault_cmd(&["vault", "list"], None, &pass);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).lines().count(),
        secrets.len()
    );

    // No secret in the environment but the vault's passphrase: every target is written.
    let bare = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = cairn_cmd(&config);
        c.args(args)
            .env_remove("AZBLOB_ACCOUNT_KEY")
            .env_remove("S3_ACCESS_KEY_ID")
            .env_remove("S3_SECRET_ACCESS_KEY")
            .env_remove("SMB_PASSWORD");
        for (k, v) in env {
            c.env(k, v);
        }
        in_own_words(c.output().unwrap())
    };
    let o = bare(&["--json", "backup", "--init"], &pass);
    expect_code(&o, 0);
    let states: Vec<String> = json(&o)["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["complete"; 5], "{}", text(&o));

    // A wrong passphrase; a flipped byte; a vault others can read: each refused clearly.
    let o = bare(&["snapshots"], &[("CAIRN_VAULT_PASSPHRASE", "guess")]);
    expect_code(&o, 12);
    assert!(
        text(&o).contains("wrong passphrase for vault"),
        "{}",
        text(&o)
    );
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    fs::write(&vault, &flipped).unwrap();
    let o = bare(&["snapshots"], &pass);
    expect_code(&o, 2);
    assert!(text(&o).contains("damaged or was altered"), "{}", text(&o));
    fs::write(&vault, &bytes).unwrap();
    fs::set_permissions(&vault, fs::Permissions::from_mode(0o644)).unwrap();
    let o = bare(&["snapshots"], &pass);
    expect_code(&o, 2);
    assert!(text(&o).contains("chmod 600"), "{}", text(&o));
    fs::set_permissions(&vault, fs::Permissions::from_mode(0o600)).unwrap();
    expect_code(&bare(&["snapshots"], &pass), 0);
    // Wrong passphrases lock the vault like wrong passwords lock the repository.
    for _ in 0..5 {
        expect_code(
            &bare(&["snapshots"], &[("CAIRN_VAULT_PASSPHRASE", "guess")]),
            12,
        );
    }
    let o = bare(&["snapshots"], &pass);
    expect_code(&o, 13);
    assert!(text(&o).contains("vault"), "{}", text(&o));
    let later = [pass[0], ("CAIRN_TEST_CLOCK_OFFSET", "1000")];
    expect_code(&bare(&["snapshots"], &later), 0);

    let mut all: Vec<&str> = secrets.iter().map(|(_, v)| v.as_str()).collect();
    all.push("vault passphrase 1");
    assert_no_secret_written(&tmp.path().join("state"), &all);
}

#[test]
fn a_removed_key_opens_nothing_and_a_target_that_was_away_loses_it_on_return() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, mut sshd, sftp_dir) = disk_and_sftp(tmp.path());
    let disk = tmp.path().join("disk");
    let bob = "bob's own password";
    let o = with_env(
        &config,
        &["--operator", "bob", "key", "add"],
        &[("CAIRN_PASSWORD", PASSWORD), ("CAIRN_NEW_PASSWORD", bob)],
    );
    expect_code(&o, 0);
    let o = cairn(&config, &["--json", "key", "list"]);
    let keys = json(&o);
    let bobs: Vec<&serde_json::Value> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["operator"] == "bob")
        .collect();
    assert_eq!(bobs.len(), 1, "{keys}");
    assert_eq!(bobs[0]["targets"].as_array().unwrap().len(), 2, "{keys}");
    let disk_repo = disk.display().to_string();
    for repo in [&disk_repo, &sftp_dir] {
        let o = restic_cmd(repo, &["snapshots", "--no-lock"])
            .env("RESTIC_PASSWORD", bob)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    expect_code(&cairn_with_password(&config, bob, &["snapshots"]), 0);

    sshd.kill();
    let o = cairn(&config, &["--json", "--operator", "bob", "key", "remove"]);
    expect_code(&o, 3);
    assert_eq!(
        json(&o)["targets"][1]["state"],
        "unreachable",
        "{}",
        text(&o)
    );
    // At once: refused on the target that was reached, by cairn and by restic.
    expect_code(&cairn_with_password(&config, bob, &["snapshots"]), 12);
    let refused = |repo: &str| {
        let o = restic_cmd(repo, &["snapshots", "--no-lock"])
            .env("RESTIC_PASSWORD", bob)
            .output()
            .unwrap();
        !o.status.success() && text(&o).contains("wrong password")
    };
    assert!(refused(&disk_repo));
    // The last key, or the key in use, is never removed.
    let o = cairn(&config, &["--operator", "nobody", "key", "remove"]);
    expect_code(&o, 1);

    sshd.restart();
    // Back, still holding the key: stock restic alone would open it.
    assert!(!refused(&sftp_dir));
    // cairn refuses the removed password there too, and takes the key off.
    let o = cairn_with_password(&config, bob, &["ls", "latest", "--from", "sftp"]);
    expect_code(&o, 12);
    assert!(text(&o).contains("was removed"), "{}", text(&o));
    assert!(refused(&sftp_dir));
    assert!(refused(&disk_repo));
    // And catch-up never brings it back.
    expect_code(&cairn(&config, &["sync"]), 0);
    assert!(refused(&sftp_dir) && refused(&disk_repo));
    let o = cairn(&config, &["--json", "key", "list"]);
    assert!(
        !json(&o)
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["operator"] == "bob"),
        "{}",
        text(&o)
    );
    expect_code(&cairn(&config, &["snapshots"]), 0);
}

#[test]
fn a_key_added_while_a_target_is_away_reaches_it_at_catch_up_and_the_last_key_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, mut sshd, sftp_dir) = disk_and_sftp(tmp.path());
    // The first key is the operator's who made the repository; it cannot be removed by itself.
    let o = cairn(&config, &["--json", "key", "list"]);
    let me = json(&o)[0]["operator"].as_str().unwrap().to_string();
    let o = cairn(&config, &["--operator", &me, "key", "remove"]);
    expect_code(&o, 1);
    assert!(text(&o).contains("last"), "{}", text(&o));

    sshd.kill();
    let carol = "carol's password";
    let o = with_env(
        &config,
        &["--operator", "carol", "key", "add"],
        &[("CAIRN_PASSWORD", PASSWORD), ("CAIRN_NEW_PASSWORD", carol)],
    );
    expect_code(&o, 3);
    sshd.restart();
    // The copy is proven by its endorsement (carol's key does not open with this password).
    let o = cairn(&config, &["--json", "sync"]);
    expect_code(&o, 0);
    assert!(!text(&o).contains("not proven"), "{}", text(&o));
    let o = restic_cmd(&sftp_dir, &["snapshots", "--no-lock"])
        .env("RESTIC_PASSWORD", carol)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // A key file no cairn endorsed (planted, named by its own hash) is listed as unproven and
    // never acted on.
    let junk = br#"{"username":"mallory","hostname":"x","kdf":"scrypt","N":2,"r":1,"p":1,"data":"","salt":""}"#;
    let name = hex(&sha2::Sha256::digest(junk));
    let planted = tmp.path().join("disk/keys").join(&name);
    fs::write(&planted, junk).unwrap();
    let o = cairn(&config, &["--json", "key", "list"]);
    let listed = json(&o);
    let mallory = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["operator"] == "mallory")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(mallory["proven"], false, "{listed}");
    let o = cairn(&config, &["--operator", "mallory", "key", "remove"]);
    expect_code(&o, 1);
    assert!(text(&o).contains("no key cairn can prove"), "{}", text(&o));
    assert!(planted.exists());
}
