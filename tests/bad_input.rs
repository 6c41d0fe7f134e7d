//! Bad input gets a clear error, a distinct non-zero exit, and changes no repository.

mod common;

use std::{
    fs,
    net::TcpListener,
    path::Path,
    time::{Duration, Instant},
};

use common::*;

/// Every file under `dir` with its content hash: "no repository is changed" is asserted on it.
/// The lock folder is left out: a refused run takes and releases its lock there.
fn snapshot_of(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, String> {
    let mut t = tree_digest(dir);
    t.retain(|p, _| !p.starts_with(".cairn-locks"));
    t
}

/// A repository on one local target with one snapshot.
fn local_repo(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    let repo = tmp.join("repo");
    let config = write_config(tmp, &[&src], &local_target("disk", &repo));
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    (config, repo)
}

#[test]
fn malformed_toml_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("targets.toml");
    fs::write(
        &config,
        "[backup]\nsources = [\"/x\"]\nexcludes = *.tmp\n\n[[target]]\nname = \"a\"\n",
    )
    .unwrap();
    let o = cairn(&config, &["backup"]);
    expect_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("targets.toml") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn unknown_target_kind_and_unknown_key_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(
        tmp.path(),
        &[tmp.path()],
        "[[target]]\nname = \"x\"\nkind = \"ftp\"\npath = \"/tmp/x\"\n",
    );
    let o = cairn(&config, &["backup"]);
    expect_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 9")
            && err.contains("\"ftp\"")
            && err.contains("local, sftp, smb, azblob, s3"),
        "{err}"
    );

    let config = write_config(
        tmp.path(),
        &[tmp.path()],
        "[[target]]\nname = \"x\"\nkind = \"local\"\npath = \"/tmp/x\"\ncompress = true\n",
    );
    let o = cairn(&config, &["backup"]);
    expect_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 11") && err.contains("compress"), "{err}");
}

#[test]
fn wrong_password_says_so_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, repo) = local_repo(tmp.path());
    let before = snapshot_of(&repo);
    for verb in [&["backup"][..], &["snapshots"], &["init"], &["ls"]] {
        let o = cairn_with_password(&config, "not the password", verb);
        expect_code(&o, 12);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("wrong password"), "{verb:?}: {err}");
        assert!(
            !err.contains("not the password"),
            "the password is never printed: {err}"
        );
    }
    assert_eq!(snapshot_of(&repo), before);
}

#[test]
fn missing_source_is_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, repo) = local_repo(tmp.path());
    let before = snapshot_of(&repo);
    let missing = tmp.path().join("no-such-folder");
    let config = write_config(
        tmp.path(),
        &[&tmp.path().join("src"), &missing],
        &local_target("disk", &repo),
    );
    let o = cairn(&config, &["backup"]);
    expect_code(&o, 1);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(missing.to_str().unwrap()),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot_of(&repo), before);
}

#[test]
fn unreachable_sftp_server_fails_fast_and_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    // A port nothing listens on: bind, note it, release it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!(
        "[[target]]\nname = \"dead-dc\"\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{}\"\n\
         key_file = \"{}\"\npath = \"/srv/x\"\ntimeout = 5\nretries = 1\n\n",
        env("SFTP_USER"),
        env("SFTP_KEY")
    );
    let repo = tmp.path().join("repo");

    // Alone, it makes the command fail with "no target reachable", naming it.
    let config = write_config(tmp.path(), &[&src], &dead);
    let start = Instant::now();
    let o = cairn(&config, &["backup", "--init"]);
    expect_code(&o, 4);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("dead-dc"),
        "{}",
        text(&o)
    );

    // Beside a working target, no repository is created while the dead target may hold one
    // (exit 4, naming it); with --force-new it is, the backup completes there and the run is
    // partial (exit 3), with the dead target named as unreachable, not shown as empty.
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{dead}", local_target("disk", &repo)),
    );
    let o = cairn(&config, &["--json", "backup", "--init"]);
    expect_code(&o, 4);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("dead-dc"),
        "{}",
        text(&o)
    );
    assert!(!repo.join("config").exists());
    let o = cairn(&config, &["--json", "backup", "--init", "--force-new"]);
    expect_code(&o, 3);
    let r = json(&o);
    assert_eq!(r["targets"][0]["state"], "complete");
    assert_eq!(r["targets"][1]["name"], "dead-dc");
    assert_eq!(r["targets"][1]["state"], "unreachable");
    let o = cairn(&config, &["--json", "snapshots"]);
    expect_code(&o, 3);
    let r = json(&o);
    assert_eq!(r["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(r["targets"][1]["state"], "unreachable");
}

/// A refused SFTP log-in is reported with ssh's own reason, not as a bare connection failure:
/// a key the server does not know, and a server whose host key is not the one on record.
#[test]
fn a_refused_sftp_log_in_says_why_in_ssh_s_words() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    let stranger = tmp.path().join("stranger-key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    assert!(made.success());
    let (sftp, _) = sftp_target("dc", &unique("refused"));
    let sftp = sftp.replace("retries = 1", "retries = 0");
    let cases = [
        (
            sftp.replace(&env("SFTP_KEY"), stranger.to_str().unwrap()),
            "Permission denied (publickey)",
        ),
        // The host key on record is under the address, not under this name for it.
        (
            sftp.replace(
                &format!("host = \"{}\"", env("SFTP_HOST")),
                "host = \"localhost\"",
            ),
            "Host key verification failed",
        ),
    ];
    for (target, why) in cases {
        let config = write_config(tmp.path(), &[&src], &target);
        let o = cairn(&config, &["snapshots"]);
        expect_code(&o, 4);
        let said = String::from_utf8_lossy(&o.stderr);
        assert!(said.contains("ssh: ") && said.contains(why), "{}", text(&o));
    }
}

#[test]
fn no_repository_and_foreign_repository_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // An existing, empty folder holds no repository (a missing one is a missing mount: 4).
    fs::create_dir_all(tmp.path().join("r")).unwrap();
    let config = write_config(
        tmp.path(),
        &[&src],
        &local_target("disk", &tmp.path().join("r")),
    );
    expect_code(&cairn(&config, &["backup"]), 10);

    // Two repositories made separately (each by its own configuration), then put in one
    // configuration that has never seen either: which one is right cannot be told.
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (r, dir) in [(&a, "made-a"), (&b, "made-b")] {
        let dir = tmp.path().join(dir);
        fs::create_dir_all(&dir).unwrap();
        let c = write_config(&dir, &[&src], &local_target("t", r));
        expect_code(&cairn(&c, &["init"]), 0);
    }
    // The refused commands' audit records go to `a` (its key opened first), sealed with its
    // key; `b`, another repository, receives nothing.
    let without_audit = |dir: &Path| {
        let mut t = snapshot_of(dir);
        t.retain(|p, _| !p.starts_with(".cairn-audit"));
        t
    };
    let before = (without_audit(&a), snapshot_of(&b));
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{}", local_target("a", &a), local_target("b", &b)),
    );
    for verb in ["init", "backup"] {
        let o = cairn(&config, &[verb]);
        expect_code(&o, 1);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("different repository"),
            "{}",
            text(&o)
        );
    }
    assert_eq!((without_audit(&a), snapshot_of(&b)), before);
}

#[test]
fn restore_refuses_to_overwrite_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = local_repo(tmp.path());
    let dest = tmp.path().join("dest");
    expect_code(
        &cairn(
            &config,
            &["restore", "latest", "--target", dest.to_str().unwrap()],
        ),
        0,
    );
    let restored_file = restored(&dest, &tmp.path().join("src")).join("f.txt");
    fs::write(&restored_file, b"local edit").unwrap();
    let o = cairn(
        &config,
        &["restore", "latest", "--target", dest.to_str().unwrap()],
    );
    expect_code(&o, 1);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exist"),
        "{}",
        text(&o)
    );
    assert_eq!(fs::read(&restored_file).unwrap(), b"local edit");
    expect_code(
        &cairn(
            &config,
            &[
                "restore",
                "latest",
                "--overwrite",
                "--target",
                dest.to_str().unwrap(),
            ],
        ),
        0,
    );
    assert_eq!(fs::read(&restored_file).unwrap(), b"hello");
}

#[test]
fn an_unplugged_removable_disk_is_offline_and_never_created() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    // Under /tmp, on the root filesystem: what an empty mount point looks like.
    let usb = tmp.path().join("media/usb/cairn");
    let targets = format!(
        "{}[[target]]\nname = \"usb\"\nkind = \"local\"\npath = \"{}\"\nremovable = true\n\
         mount_point = \"{}\"\n\n",
        local_target("disk", &tmp.path().join("repo")),
        usb.display(),
        usb.parent().unwrap().display()
    );
    let config = write_config(tmp.path(), &[&src], &targets);
    // The disk in the drawer may hold the repository: none is created without it, unless asked.
    let o = cairn(&config, &["--json", "backup", "--init"]);
    expect_code(&o, 4);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("`usb`"),
        "{}",
        text(&o)
    );
    let o = cairn(&config, &["--json", "backup", "--init", "--force-new"]);
    expect_code(&o, 0); // removable implies optional
    let r = json(&o);
    assert_eq!(r["targets"][1]["state"], "offline", "{r}");
    assert!(
        !tmp.path().join("media").exists(),
        "nothing written for an absent disk"
    );
}

#[test]
fn a_target_added_later_gets_the_repository_and_is_caught_up_by_the_next_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, repo) = local_repo(tmp.path());
    let new = tmp.path().join("new-disk");
    let src = tmp.path().join("src");
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!(
            "{}{}",
            local_target("disk", &repo),
            local_target("new", &new)
        ),
    );
    let o = cairn(&config, &["--json", "init"]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["created"], false);
    assert_eq!(
        fs::read(new.join("config")).unwrap(),
        fs::read(repo.join("config")).unwrap()
    );
    // It lacks the first snapshot's data: the next backup first copies it over (verified,
    // without reading the sources), then writes the new snapshot to both.
    let o = cairn(&config, &["--json", "backup"]);
    expect_code(&o, 0);
    let r = json(&o);
    assert_eq!(r["caught_up"][0]["name"], "new", "{r}");
    assert_eq!(r["caught_up"][0]["state"], "caught-up", "{r}");
    assert_eq!(r["targets"][0]["state"], "complete");
    assert_eq!(r["targets"][1]["state"], "complete");
    assert_eq!(fs::read_dir(new.join("snapshots")).unwrap().count(), 2);
    assert_eq!(
        repo_files(open_store(&config, "disk").as_ref()),
        repo_files(open_store(&config, "new").as_ref())
    );
}

#[test]
fn help_names_every_target_kind() {
    let out = std::process::Command::new(bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for kind in ["local", "SFTP", "SMB", "Azure Blob", "S3"] {
        assert!(help.contains(kind), "--help does not name {kind}: {help}");
    }
}

/// Trust round 2's list of unclear answers to bad input, each now a clear error with the exit
/// code the README gives (2: bad command line or configuration).
#[test]
fn round_two_bad_inputs_get_clear_errors_and_the_documented_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, repo) = local_repo(tmp.path());
    // The repository's own files (audit records may be added).
    let repository = |repo: &Path| {
        let mut t = snapshot_of(repo);
        t.retain(|p, _| !p.starts_with(".cairn-audit"));
        t
    };
    let before = repository(&repo);
    let says = |o: &std::process::Output, code: i32, what: &str| {
        expect_code(o, code);
        assert!(text(o).contains(what), "{what:?} not in: {}", text(o));
    };
    says(
        &cairn(&config, &["verify", "--percent", "200"]),
        2,
        "--percent",
    );
    for bad in ["-5%", "150%", "100%"] {
        says(
            &cairn(&config, &["prune", &format!("--max-unused={bad}")]),
            2,
            "max-unused",
        );
    }
    says(
        &cairn(&config, &["backup", "--time", "2099-01-01T00:00:00Z"]),
        2,
        "future",
    );
    let file = tmp.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    says(
        &cairn(
            &config,
            &["restore", "latest", "--target", file.to_str().unwrap()],
        ),
        2,
        "is a file",
    );
    let dest = tmp.path().join("restored");
    says(
        &cairn(
            &config,
            &[
                "restore",
                "latest",
                "--target",
                dest.to_str().unwrap(),
                "--include",
                "no-such-name",
            ],
        ),
        2,
        "matches nothing",
    );
    assert_eq!(repository(&repo), before, "no repository changed");

    // The configuration: no sources, a pattern that cannot compile, everything excluded.
    let text_cfg = fs::read_to_string(&config).unwrap();
    let with = |from: &str, to: &str| {
        let c = tmp.path().join(unique("cfg"));
        fs::create_dir_all(&c).unwrap();
        let path = c.join("targets.toml");
        assert!(text_cfg.contains(from));
        fs::write(&path, text_cfg.replace(from, to)).unwrap();
        path
    };
    let sources = text_cfg
        .lines()
        .find(|l| l.starts_with("sources"))
        .unwrap()
        .to_string();
    says(
        &cairn(&with(&sources, "sources = []"), &["backup"]),
        2,
        "`sources`",
    );
    says(
        &cairn(
            &with(&sources, &format!("{sources}\nexcludes = [\"[unclosed\"]")),
            &["backup"],
        ),
        2,
        "line 6: [backup] key `excludes`",
    );
    let all_out = with(&sources, &format!("{sources}\nexcludes = [\"**\"]"));
    says(&cairn(&all_out, &["backup"]), 0, "holds no file");

    // Wrong kinds of values name their key in plain words; `[target]` for `[[target]]`.
    let (table, _) = sources.split_once('=').unwrap();
    assert_eq!(table.trim(), "sources");
    for (from, to, says_what) in [
        (
            "[[target]]",
            "[target]",
            "`[target]` must be written `[[target]]`",
        ),
        (
            &sources[..],
            &format!("{sources}\n[verify]\nfiles = -3")[..],
            "key `files`: invalid value: integer `-3`, expected a whole number of 0 or more",
        ),
        (
            &sources[..],
            &format!("{sources}\n[verify]\nmax_bytes = \"lots\"")[..],
            "\"lots\" is not a size like \"2GiB\", \"500 MB\" or 1000",
        ),
    ] {
        let o = cairn(&with(from, to), &["snapshots"]);
        says(&o, 2, says_what);
        assert!(
            !text(&o).contains("ByteSize") && !text(&o).contains("usize"),
            "{}",
            text(&o)
        );
    }
    // A source that is a link to nothing is named, with where it points.
    let link = tmp.path().join("gone-link");
    std::os::unix::fs::symlink(tmp.path().join("gone"), &link).unwrap();
    let o = cairn(
        &with(&sources, &format!("sources = [\"{}\"]", link.display())),
        &["backup"],
    );
    says(&o, 1, "is a symbolic link to");
    assert!(!text(&o).contains("Os {"), "{}", text(&o));

    // A state folder that cannot be used: the audit record is lost, so the command fails.
    let o = cairn_cmd(&config)
        .args(["snapshots"])
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_STATE_DIR", &file)
        .output()
        .unwrap();
    says(&o, 1, "audit record not written");
}

/// A small filesystem of its own (tmpfs), unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Self {
        fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs (the suite runs as root): {}",
            text(&out)
        );
        Self(at.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).output();
    }
}

/// A target on a full disk: the write that failed leaves nothing behind, and once not even
/// a lock fits the target is called full, not unreachable.
#[test]
fn a_full_target_is_called_full_and_keeps_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&tmp.path().join("disk"), "3m");
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("small"), pseudo_random(1, 500_000)).unwrap();
    let a = disk.0.join("a");
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!(
            "{}{}",
            local_target("a", &a),
            local_target("b", &tmp.path().join("b"))
        ),
    );
    expect_code(&cairn(&config, &["backup", "--init"]), 0);

    // More than fits: the backup lands on `b`, and `a` keeps no partial file.
    fs::write(src.join("big"), pseudo_random(2, 4_000_000)).unwrap();
    let out = cairn(&config, &["--json", "backup"]);
    expect_code(&out, 3);
    let report = json(&out);
    assert_eq!(report["targets"][0]["state"], "failed", "{report}");
    assert!(
        report["targets"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("no storage space"),
        "{report}"
    );
    assert_eq!(report["targets"][1]["state"], "complete", "{report}");
    let left: Vec<_> = fs::read_dir(a.join(".cairn-tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in .cairn-tmp: {left:?}");

    // Full to the last byte: not even a lock fits.
    let filler = disk.0.join("filler");
    let _ = fs::write(&filler, vec![0u8; 4_000_000]);
    let out = cairn(&config, &["--json", "backup"]);
    expect_code(&out, 3);
    let report = json(&out);
    let t_a = &report["targets"][0];
    assert_eq!(t_a["state"], "full", "{report}");
    assert!(
        t_a["detail"].as_str().unwrap().contains("free space"),
        "{report}"
    );
    assert!(text(&out).contains("`a` left out: full"), "{}", text(&out));
    // Space freed: the target takes part again (catch-up copies what it missed, as far as it
    // fits) and is no longer called full.
    fs::remove_file(&filler).unwrap();
    fs::remove_file(src.join("big")).unwrap();
    let out = cairn(&config, &["--json", "backup"]);
    let report = json(&out);
    assert_ne!(report["targets"][0]["state"], "full", "{report}");
    drop(disk);
}
