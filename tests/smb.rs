//! The `smb` target against real Samba: bad credentials and a wrong share are named, and a
//! server that dies mid-backup leaves the other targets complete and the share uncorrupted.
//! (The five-kind round trip in roundtrip.rs covers restore from SMB alone and restic interop.)

mod common;

use std::{
    fs,
    io::Write,
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use sha2::{Digest, Sha256};

/// A private smbd on its own port and share, so stopping it disturbs no other test.
struct PrivateSmbd {
    child: Option<Child>,
    port: u16,
    share: PathBuf,
}

impl PrivateSmbd {
    fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for d in [
            "private", "lock", "state", "cache", "pid", "ncalrpc", "log", "share",
        ] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let d = dir.display();
        let conf = dir.join("smb.conf");
        fs::write(
            &conf,
            format!(
                "[global]\n server role = standalone server\n interfaces = 127.0.0.1\n bind interfaces only = yes\n\
                 smb ports = {port}\n disable netbios = yes\n server min protocol = SMB2_10\n\
                 passdb backend = tdbsam:{d}/private/passdb.tdb\n private dir = {d}/private\n lock directory = {d}/lock\n\
                 state directory = {d}/state\n cache directory = {d}/cache\n pid directory = {d}/pid\n ncalrpc dir = {d}/ncalrpc\n\
                 log file = {d}/log/log.%m\n load printers = no\n printing = bsd\n printcap name = /dev/null\n\
                 disable spoolss = yes\n map to guest = never\n[backup]\n path = {d}/share\n read only = no\n\
                 valid users = {user}\n force user = root\n",
                user = env("SMB_USER")
            ),
        )
        .unwrap();
        let mut pw = Command::new("smbpasswd")
            .args(["-c", conf.to_str().unwrap(), "-s", "-a", &env("SMB_USER")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let secret = env("SMB_PASSWORD");
        write!(pw.stdin.take().unwrap(), "{secret}\n{secret}\n").unwrap();
        assert!(pw.wait().unwrap().success());
        // Its own process group, so the connection children it forks die with it.
        let child = Command::new("smbd")
            .args(["--foreground", "--no-process-group", "--debug-stdout"])
            .arg(format!("--configfile={}", conf.display()))
            .stdout(fs::File::create(dir.join("log/smbd.out")).unwrap())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private smbd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child: Some(child),
            port,
            share: dir.join("share"),
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateSmbd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every repository file under its final name has the SHA-256 its name says.
fn assert_no_damaged_file(repo: &Path) {
    for dir in ["keys", "index", "snapshots", "data"] {
        let mut stack = vec![repo.join(dir)];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    assert_eq!(
                        hex(&Sha256::digest(fs::read(&p).unwrap())),
                        name,
                        "{}",
                        p.display()
                    );
                }
            }
        }
    }
}

#[test]
fn wrong_password_and_wrong_share_are_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    let cases = [
        (
            "command:echo not-the-password",
            env("SMB_SHARE"),
            "logon failure",
        ),
        (
            "env:SMB_PASSWORD",
            "nosuchshare".to_string(),
            "share `nosuchshare` not found",
        ),
    ];
    for (password, share, expected) in cases {
        let prefix = unique("smb-bad");
        let (smb, smb_dir) = smb_target_at("nas", &prefix, &env("SMB_PORT"), &share, password);
        let repo = tmp.path().join(&prefix);
        let config = write_config(
            tmp.path(),
            &[&src],
            &format!("{}{smb}", local_target("disk", &repo)),
        );
        // The share may hold the repository: creating one beside it must be asked for.
        let o = cairn(&config, &["--json", "backup", "--init", "--force-new"]);
        expect_code(&o, 3);
        let r = json(&o);
        assert_eq!(r["targets"][0]["state"], "complete");
        assert_eq!(r["targets"][1]["name"], "nas");
        assert_eq!(r["targets"][1]["state"], "unreachable");
        let detail = r["targets"][1]["detail"].as_str().unwrap();
        assert!(detail.contains(expected), "{detail}");
        assert!(
            !detail.contains("not-the-password") && !detail.contains(&env("SMB_PASSWORD")),
            "{detail}"
        );
        assert!(
            !Path::new(&smb_dir).exists(),
            "nothing written to the share"
        );
    }
}

#[test]
fn smbd_dying_mid_backup_is_named_and_leaves_no_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let mut smbd = PrivateSmbd::start(&tmp.path().join("smbd"));
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        fs::write(
            src.join(format!("big-{i}.bin")),
            pseudo_random(1000 + i, 40 << 20),
        )
        .unwrap();
    }
    let (smb, _) = smb_target_at(
        "nas",
        "repo",
        &smbd.port.to_string(),
        "backup",
        "env:SMB_PASSWORD",
    );
    let local = tmp.path().join("local");
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{smb}", local_target("disk", &local)),
    );
    expect_code(&cairn(&config, &["init"]), 0);
    let share_repo = smbd.share.join("repo");

    let backup = Command::new(bin())
        .args(["--config", config.to_str().unwrap(), "--json", "backup"])
        .env("CAIRN_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop the server as soon as the first data pack has landed on the share.
    let deadline = Instant::now() + Duration::from_secs(60);
    let landed = || {
        fs::read_dir(share_repo.join("data"))
            .into_iter()
            .flatten()
            .any(|d| {
                fs::read_dir(d.unwrap().path())
                    .into_iter()
                    .flatten()
                    .next()
                    .is_some()
            })
    };
    while !landed() {
        assert!(Instant::now() < deadline, "no pack reached the share");
        std::thread::sleep(Duration::from_millis(10));
    }
    smbd.kill();
    let killed = Instant::now();
    let o = backup.wait_with_output().unwrap();
    assert!(
        killed.elapsed() < Duration::from_secs(60),
        "took {:?} after the server died",
        killed.elapsed()
    );
    expect_code(&o, 3);
    let r = json(&o);
    assert_eq!(r["targets"][0]["state"], "complete", "{r}");
    assert_eq!(r["targets"][1]["name"], "nas");
    assert_eq!(r["targets"][1]["state"], "failed", "{r}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("`nas`"),
        "{}",
        text(&o)
    );

    // The share got no snapshot, and nothing half-written sits under a final name.
    assert_eq!(
        fs::read_dir(share_repo.join("snapshots")).unwrap().count(),
        0
    );
    assert_no_damaged_file(&share_repo);
    // The local target is complete and sound.
    let check = restic(local.to_str().unwrap(), &["check", "--read-data"]);
    assert!(check.status.success(), "{}", text(&check));
}
