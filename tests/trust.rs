//! The trust model: a target is storage, not a witness. Each test here is a regression test for
//! a defect of issue 8, and fails on the code before its fix.

mod common;

use std::{fs, path::Path};

use common::*;
use sha2::{Digest, Sha256};

/// Two local targets holding one repository with one snapshot.
fn two_targets(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    two_local_targets(tmp, "f.txt", b"hello")
}

/// Junk named by the SHA-256 of its own bytes: it passes a hash check, and nothing else.
fn plant_junk(repo: &Path, dir: &str) -> String {
    let junk = format!("junk planted in {dir} by someone with access to one target");
    let id = hex(&Sha256::digest(junk.as_bytes()));
    let rel = if dir == "data" {
        format!("data/{}/{id}", &id[..2])
    } else {
        format!("{dir}/{id}")
    };
    fs::write(repo.join(&rel), junk).unwrap();
    rel
}

#[test]
fn a_junk_file_on_one_target_is_quarantined_there_and_never_spreads() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = two_targets(tmp.path());
    let index = plant_junk(&a, "index");
    let snapshot = plant_junk(&a, "snapshots");
    let pack = plant_junk(&a, "data");

    // The catch-up before the backup reads them from `a`, cannot prove them, and moves them
    // aside on `a`; `b` never receives them, and the backup lands on both.
    let o = cairn(&config, &["--json", "backup"]);
    expect_code(&o, 0);
    let r = json(&o);
    for t in r["targets"].as_array().unwrap() {
        assert_eq!(t["state"], "complete", "{r}");
    }
    let foreign: Vec<&str> = r["foreign"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for junk in [&index, &snapshot, &pack] {
        assert!(!b.join(junk).exists(), "{junk} spread to b");
        assert!(!a.join(junk).exists(), "{junk} left in place on a");
        assert!(
            a.join(".cairn-quarantine").join(junk).exists(),
            "{junk} not quarantined"
        );
        assert!(foreign.contains(&junk.as_str()), "{junk} not reported: {r}");
    }
    // Every later run still works on every target, and stock restic agrees.
    expect_code(&cairn(&config, &["backup"]), 0);
    for repo in [&a, &b] {
        let o = restic(repo.to_str().unwrap(), &["check"]);
        assert!(o.status.success(), "{}", text(&o));
    }
}

#[test]
fn check_reports_a_file_that_does_not_decrypt_as_foreign_and_heal_quarantines_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = two_targets(tmp.path());
    let snapshot = plant_junk(&a, "snapshots");
    let o = cairn(&config, &["--json", "check"]);
    expect_code(&o, 5);
    let r = json(&o);
    let problems = r["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["target"] == "a"
            && p["path"] == snapshot.as_str()
            && p["kind"] == "foreign"),
        "{r}"
    );
    // Not "missing" on the target that rightly lacks it.
    assert!(!problems.iter().any(|p| p["target"] == "b"), "{r}");
    let o = cairn(&config, &["--json", "check", "--heal"]);
    expect_code(&o, 0);
    assert!(!b.join(&snapshot).exists());
    assert!(a.join(".cairn-quarantine").join(&snapshot).exists());
    expect_code(&cairn(&config, &["check"]), 0);
}

#[test]
fn sync_without_the_password_copies_nothing_it_cannot_prove_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = two_targets(tmp.path());
    let junk = plant_junk(&a, "index");
    // `b` also misses a real file: without the password even that cannot be proven.
    let real = fs::read_dir(a.join("snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let real_rel = format!("snapshots/{}", real.file_name().to_string_lossy());
    fs::remove_file(b.join(&real_rel)).unwrap();
    let o = cairn_cmd(&config)
        .args(["--json", "sync"])
        .output()
        .unwrap();
    expect_code(&o, 3);
    let r = json(&o);
    let tb = &r["targets"][1];
    assert_eq!(tb["name"], "b");
    assert_eq!(tb["state"], "incomplete", "{r}");
    assert_eq!(tb["held_back"], 2, "{r}");
    assert!(!b.join(&junk).exists());
    assert!(!b.join(&real_rel).exists());
    // With it, the real file is proven and copied, the junk is quarantined.
    let o = cairn(&config, &["--json", "sync"]);
    expect_code(&o, 0);
    assert!(b.join(&real_rel).exists());
    assert!(!b.join(&junk).exists());
    assert!(a.join(".cairn-quarantine").join(&junk).exists());
}

#[test]
fn init_refuses_to_create_a_second_repository_beside_an_unreachable_target() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let disk = tmp.path().join("disk");
    fs::create_dir_all(&disk).unwrap();
    let (sftp, _) = sftp_target("dc", &unique("init-dead"));
    // The SFTP server's port, with nothing listening: the server is down tonight.
    let dead = sftp.replace(&format!("port = {}", env("SFTP_PORT")), "port = 1");
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{dead}", local_target("disk", &disk)),
    );
    for args in [&["init"][..], &["backup", "--init"]] {
        let o = cairn(&config, args);
        expect_code(&o, 4);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("`dc`") && err.contains("--force-new"),
            "{}",
            text(&o)
        );
        assert!(
            !disk.join("config").exists() && !disk.join("keys").exists(),
            "nothing created"
        );
    }
    let o = cairn(&config, &["--json", "init", "--force-new"]);
    expect_code(&o, 3);
    assert!(disk.join("config").exists());
}

/// A target whose storage is missing is unreachable, never an empty target to fill.
fn assert_absent_storage_is_unreachable(target_toml: &str, name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, _) = two_targets(tmp.path());
    let src = tmp.path().join("src");
    let config2 = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{target_toml}", local_target("a", &a)),
    );
    assert_eq!(config, config2);
    let o = cairn(&config, &["--json", "status"]);
    let r = json(&o);
    assert_eq!(r["targets"][1]["name"], name);
    assert_eq!(r["targets"][1]["state"], "unreachable", "{r}");
    let o = cairn(&config, &["--json", "backup"]);
    expect_code(&o, 3);
    let r = json(&o);
    assert_eq!(r["targets"][1]["state"], "unreachable", "{r}");
    assert!(r["caught_up"].as_array().unwrap().is_empty(), "{r}");
}

#[test]
fn a_missing_bucket_is_unreachable_not_empty() {
    let t = s3_target("s3", "cairn").replace(
        &format!("bucket = \"{}\"", env("S3_BUCKET")),
        "bucket = \"no-such-bucket\"",
    );
    assert_absent_storage_is_unreachable(&t, "s3");
}

#[test]
fn a_missing_container_is_unreachable_not_empty() {
    let t = azblob_target("az", "cairn").replace(
        &format!("container = \"{}\"", env("AZBLOB_CONTAINER")),
        "container = \"no-such-container\"",
    );
    assert_absent_storage_is_unreachable(&t, "az");
}

#[test]
fn a_missing_local_folder_is_unreachable_and_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let gone = tmp.path().join("nas-mount/cairn");
    assert_absent_storage_is_unreachable(&local_target("nas", &gone), "nas");
    assert!(!gone.exists());
}

/// Runs cairn as the unprivileged user `nobody` (root reads every file; a backup job may not).
fn cairn_as_nobody(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("CAIRN_STATE_DIR", config.parent().unwrap().join("state"))
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("HOME", config.parent().unwrap())
        .output()
        .map(in_own_words)
        .expect("setpriv runs")
}

fn chown_nobody(path: &Path) {
    let st = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn files_the_backup_cannot_read_are_named_counted_and_make_a_distinct_exit() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("locked")).unwrap();
    fs::write(src.join("ok.txt"), b"readable").unwrap();
    fs::write(src.join("secret.txt"), b"mode 000").unwrap();
    fs::write(src.join("locked/inner.txt"), b"behind a folder of mode 000").unwrap();
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    for i in 2..=4 {
        let f = src.join(format!("secret{i}.txt"));
        fs::write(&f, b"mode 000").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o000)).unwrap();
    }
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    let repo = tmp.path().join("repo");
    fs::create_dir_all(&repo).unwrap();
    fs::create_dir_all(tmp.path().join("state")).unwrap();
    chown_nobody(&repo);
    chown_nobody(&tmp.path().join("state"));
    let config = write_config(tmp.path(), &[&src], &local_target("disk", &repo));

    let o = cairn_as_nobody(&config, &["--json", "backup", "--init"]);
    expect_code(&o, 6);
    let r = json(&o);
    assert_eq!(r["incomplete"], true, "{r}");
    let unread = serde_json::to_string(&r["unread"]).unwrap();
    assert!(unread.contains("secret.txt"), "{r}");
    assert!(unread.contains("locked"), "{r}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("secret.txt") && err.contains("locked"),
        "{}",
        text(&o)
    );
    // One line per cause, not per file; the operating system's reason, not the library's.
    let o = cairn_as_nobody(&config, &["backup"]);
    expect_code(&o, 6);
    let out = String::from_utf8_lossy(&o.stdout);
    let skipped: Vec<&str> = out.lines().filter(|l| l.starts_with("SKIPPED")).collect();
    assert_eq!(skipped.len(), 2, "{out}");
    assert!(
        skipped
            .iter()
            .any(|l| l.contains("cannot open: Permission denied")
                && l.contains("(4 entries, e.g. ")
                && l.contains("secret.txt")),
        "{out}"
    );
    assert!(
        skipped
            .iter()
            .any(|l| l.contains("cannot list or stat: Permission denied")
                && l.contains("(1 entry, e.g. ")
                && l.contains("locked")),
        "{out}"
    );
    assert!(out.contains("INCOMPLETE: 5 source entries"), "{out}");
    // The snapshot was saved with what could be read, and lacks what could not.
    let o = cairn(&config, &["--json", "ls", "latest"]);
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        listing.contains("ok.txt") && !listing.contains("secret.txt"),
        "{}",
        text(&o)
    );
}

#[test]
fn restore_never_writes_through_a_symlink_in_the_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f"), b"restored content").unwrap();
    let config = write_config(
        tmp.path(),
        &[&src],
        &local_target("disk", &tmp.path().join("r")),
    );
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let dest = tmp.path().join("dest");
    let outside = tmp.path().join("elsewhere");
    fs::create_dir_all(&dest).unwrap();
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("d")).unwrap();
    let what = format!("latest:{}", src.display());
    let o = cairn(
        &config,
        &["restore", &what, "--target", dest.to_str().unwrap()],
    );
    expect_code(&o, 1);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("symlink"),
        "{}",
        text(&o)
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote outside the target"
    );
    let o = cairn(
        &config,
        &[
            "restore",
            &what,
            "--overwrite",
            "--target",
            dest.to_str().unwrap(),
        ],
    );
    expect_code(&o, 0);
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote outside the target"
    );
    assert!(!dest.join("d").is_symlink());
    assert_eq!(fs::read(dest.join("d/f")).unwrap(), b"restored content");

    // --overwrite replaces a file whose content differs though its size and mtime match.
    let f = dest.join("d/f");
    let mtime = fs::metadata(&f).unwrap().modified().unwrap();
    fs::write(&f, b"RESTORED CONTENT").unwrap();
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let o = cairn(
        &config,
        &[
            "restore",
            &what,
            "--overwrite",
            "--target",
            dest.to_str().unwrap(),
        ],
    );
    expect_code(&o, 0);
    assert_eq!(fs::read(&f).unwrap(), b"restored content");
}

/// A source whose one file is named `name` in the snapshot, whatever its path: what a forged
/// or damaged tree would hold.
struct Forged {
    name: &'static str,
}

struct ForgedOpen;

impl rustic_core::ReadSourceOpen for ForgedOpen {
    type Reader = std::io::Cursor<Vec<u8>>;
    fn open(self) -> rustic_core::RusticResult<Self::Reader> {
        Ok(std::io::Cursor::new(b"escaped".to_vec()))
    }
}

impl rustic_core::ReadSource for Forged {
    type Open = ForgedOpen;
    type Iter =
        std::vec::IntoIter<rustic_core::RusticResult<rustic_core::ReadSourceEntry<ForgedOpen>>>;
    fn size(&self) -> rustic_core::RusticResult<Option<u64>> {
        Ok(Some(7))
    }
    fn entries(&self) -> Self::Iter {
        use rustic_core::repofile::{Metadata, Node, NodeType};
        let meta = Metadata {
            size: 7,
            ..Metadata::default()
        };
        let node = Node::new_node(std::ffi::OsStr::new(self.name), NodeType::File, meta);
        vec![Ok(rustic_core::ReadSourceEntry {
            path: "/forged/x".into(),
            node,
            open: Some(ForgedOpen),
        })]
        .into_iter()
    }
}

#[test]
fn restore_refuses_snapshot_names_that_leave_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let repo_dir = tmp.path().join("r");
    let config = write_config(tmp.path(), &[&src], &local_target("disk", &repo_dir));
    expect_code(&cairn(&config, &["init"]), 0);
    for (i, name) in ["../../escaped", "a/../../escaped", ".."]
        .into_iter()
        .enumerate()
    {
        // A snapshot written with the repository key, holding a name no honest walk produces.
        let repo = open_alone(&config, "disk").to_indexed_ids().unwrap();
        let snap = rustic_core::SnapshotOptions::default()
            .add_tags(&format!("forged{i}"))
            .unwrap()
            .to_snapshot()
            .unwrap();
        let snap = repo
            .archive(
                &rustic_core::BackupOptions::default(),
                &Forged { name },
                snap,
                &["/forged".into()],
            )
            .unwrap();
        let dest = tmp.path().join(format!("dest{i}/inner"));
        let id = snap.id.to_hex().to_string();
        let o = cairn(
            &config,
            &[
                "restore",
                &id,
                "--overwrite",
                "--target",
                dest.to_str().unwrap(),
            ],
        );
        expect_code(&o, 1);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("refusing to restore"),
            "{}",
            text(&o)
        );
        assert!(!tmp.path().join("escaped").exists());
        assert!(!tmp.path().join(format!("dest{i}/escaped")).exists());
    }
}

#[test]
fn restore_reads_a_pack_from_the_next_target_when_the_first_copy_fails_its_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _, _) = two_local_targets(tmp.path(), "big.bin", &pseudo_random(3, 300_000));
    let src = tmp.path().join("src");
    // Every data pack on the first target damaged: each must come from `b`.
    let packs = file_packs(&config, "a");
    for pack in packs.values().flatten() {
        flip_byte(open_store(&config, "a").as_ref(), &pack_path(pack));
    }
    let dest = tmp.path().join("restored");
    let o = cairn(
        &config,
        &["restore", "latest", "--target", dest.to_str().unwrap()],
    );
    expect_code(&o, 0);
    assert_same_tree(&src, &restored(&dest, &src));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("read from `b`"), "{}", text(&o));
}

#[test]
fn latest_is_the_newest_snapshot_of_any_reachable_target() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, _) = two_local_targets(tmp.path(), "old.txt", b"first run");
    let src = tmp.path().join("src");
    // `a` is away for the second run: only `b` holds the newest snapshot.
    let away = tmp.path().join("a-away");
    fs::rename(&a, &away).unwrap();
    fs::write(src.join("new.txt"), b"second run").unwrap();
    expect_code(&cairn(&config, &["backup"]), 3);
    fs::rename(&away, &a).unwrap();

    let dest = tmp.path().join("restored");
    let o = cairn(
        &config,
        &["restore", "latest", "--target", dest.to_str().unwrap()],
    );
    expect_code(&o, 0);
    assert_same_tree(&src, &restored(&dest, &src));
}

#[test]
fn a_plain_folder_on_another_filesystem_is_not_a_plugged_in_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    // The repository at the disk's root; its mount point a plain folder on a tmpfs, no disk
    // mounted there.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let usb = shm.path().join("usb");
    fs::create_dir_all(&usb).unwrap();
    let usb_target = |extra: &str| {
        format!(
            "{}[[target]]\nname = \"usb\"\nkind = \"local\"\npath = \"{}\"\nremovable = true\n{extra}\n",
            local_target("disk", &tmp.path().join("disk")),
            usb.display()
        )
    };
    // Where the disk is mounted cannot be guessed: it must be said.
    let config = write_config(tmp.path(), &[&src], &usb_target(""));
    let o = cairn(&config, &["--json", "backup", "--init", "--force-new"]);
    expect_code(&o, 2);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("`mount_point`"),
        "{}",
        text(&o)
    );
    assert_eq!(fs::read_dir(&usb).unwrap().count(), 0, "nothing written");

    let config = write_config(
        tmp.path(),
        &[&src],
        &usb_target(&format!("mount_point = \"{}\"\n", usb.display())),
    );
    let o = cairn(&config, &["--json", "backup", "--init", "--force-new"]);
    expect_code(&o, 0);
    let r = json(&o);
    assert_eq!(r["targets"][1]["state"], "offline", "{r}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a mount point")
            || r.to_string().contains("not a mount point"),
        "{}",
        text(&o)
    );
    assert_eq!(fs::read_dir(&usb).unwrap().count(), 0, "nothing written");
}
