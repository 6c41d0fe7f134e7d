//! restic's own locks, against stock restic and the real SFTP server: an admin's `restic prune`
//! refuses to run while cairn writes (instead of deleting the packs cairn has just uploaded),
//! and a target restic holds exclusively is left out of a cairn run.

mod common;

use std::{
    fs,
    path::Path,
    process::{Child, Stdio},
};

use common::*;

/// A folder with one file, backed up to an SFTP target `nas` and a local `disk`; returns the
/// configuration and both repositories' folders on this machine.
fn two_targets(tmp: &Path) -> (std::path::PathBuf, String, String) {
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.bin"), pseudo_random(1, 1 << 20)).unwrap();
    let (nas, nas_dir) = sftp_target("nas", &unique("restic-lock"));
    let disk = tmp.join("disk");
    let config = write_config(
        tmp,
        &[&src],
        &format!("{nas}{}", local_target("disk", &disk)),
    );
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    (config, nas_dir, disk.to_str().unwrap().to_string())
}

fn files(dir: &str) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            let mut v: Vec<String> = d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default()
}

fn data_packs(repo: &str) -> Vec<String> {
    let mut all = Vec::new();
    for sub in files(&format!("{repo}/data")) {
        all.extend(files(&format!("{repo}/data/{sub}")));
    }
    all.sort();
    all
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn restic_prune_refuses_while_cairn_writes_and_a_killed_runs_locks_are_cleared_later() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, nas_dir, disk_dir) = two_targets(tmp.path());
    for repo in [&nas_dir, &disk_dir] {
        assert!(files(&format!("{repo}/locks")).is_empty(), "released");
    }
    fs::write(tmp.path().join("src/b.bin"), pseudo_random(2, 3 << 20)).unwrap();

    // A backup held still (test hook) after its first upload: a pack no index names yet, the
    // kind of file a prune deletes.
    let mut run = halted_backup(&config);
    for repo in [&nas_dir, &disk_dir] {
        let packs = data_packs(repo);
        let o = restic(repo, &["prune"]);
        assert!(!o.status.success(), "prune ran under cairn: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("already locked") && err.contains(&format!("PID {}", run.id())),
            "{err}"
        );
        assert_eq!(data_packs(repo), packs, "nothing deleted");
    }

    // Killed while holding the locks: restic's stay until the next cairn run, which removes
    // them and releases its own at the end.
    kill(&mut run);
    assert_eq!(files(&format!("{nas_dir}/locks")).len(), 1);
    let o = cairn(&config, &["backup"]);
    expect_code(&o, 0);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("left by a cairn run that is gone"),
        "{}",
        text(&o)
    );
    for repo in [&nas_dir, &disk_dir] {
        assert!(files(&format!("{repo}/locks")).is_empty());
        let o = restic(repo, &["prune"]);
        assert!(o.status.success(), "{}", text(&o));
        let o = restic(repo, &["check", "--read-data"]);
        assert!(o.status.success(), "{}", text(&o));
    }
}

#[test]
fn a_target_restic_holds_exclusively_is_left_out_until_restic_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, nas_dir, _) = two_targets(tmp.path());
    let snapshots = files(&format!("{nas_dir}/snapshots"));

    // Stock `restic check` takes an exclusive lock; strace stops it right after the rename
    // that puts its lock file in place, so it holds the lock for as long as the test needs.
    let check = restic_cmd(&nas_dir, &["check"]);
    let args: Vec<_> = std::iter::once(check.get_program().to_owned())
        .chain(check.get_args().map(ToOwned::to_owned))
        .collect();
    let mut held = std::process::Command::new("strace");
    held.args([
        "-f",
        "-o",
        "/dev/null",
        "-e",
        "trace=renameat",
        "-e",
        "inject=renameat:signal=SIGSTOP",
    ])
    .args(&args)
    .envs(
        check
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut strace = held.spawn().expect("strace is installed (start-all.sh)");
    let locks = format!("{nas_dir}/locks");
    wait_for("restic to hold its exclusive lock", || {
        files(&locks).iter().any(|f| !f.contains("-tmp-"))
    });
    let restic_pid: i32 = fs::read_to_string(format!("/proc/{}/task/{0}/children", strace.id()))
        .unwrap()
        .trim()
        .parse()
        .expect("restic is strace's one child");

    let o = cairn(&config, &["--json", "backup"]);
    expect_code(&o, 3);
    let r = json(&o);
    let detail = r["targets"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("exclusive restic lock of pid {restic_pid}"))
            && detail.contains("restic unlock"),
        "{r}"
    );
    assert_eq!(r["targets"][1]["state"], "complete", "{r}");
    assert_eq!(files(&format!("{nas_dir}/snapshots")), snapshots);
    assert_eq!(files(&locks).len(), 1, "restic's lock is left alone");

    // restic gone (killed: its lock stays behind, a dead process's): the next run writes
    // there again and brings it level; restic's own lock is restic's to remove.
    // SAFETY: kill(2) on a pid this test started.
    unsafe { libc::kill(restic_pid, libc::SIGKILL) };
    kill(&mut strace);
    wait_for("restic to be gone", || {
        !Path::new(&format!("/proc/{restic_pid}")).exists()
    });
    let o = cairn(&config, &["--json", "backup"]);
    expect_code(&o, 0);
    assert_eq!(files(&locks).len(), 1, "restic's lock is left alone");
    let o = restic(&nas_dir, &["unlock"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(files(&locks).is_empty());
    assert_eq!(
        repo_files(open_store(&config, "nas").as_ref()),
        repo_files(open_store(&config, "disk").as_ref())
    );
}
