//! Shared helpers for the integration tests: the real servers' settings (from
//! `scripts/test-servers/start-all.sh`), a test corpus, running the `cairn` binary and stock
//! `restic`, and tree comparison.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use sha2::{Digest, Sha256};

pub const PASSWORD: &str = "correct horse battery staple";

/// A server setting exported by start-all.sh. Missing means the servers were not started:
/// the test fails (it never passes as skipped).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts the servers")
    })
}

/// A name unique to this test process and call, for prefixes on shared servers.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{tag}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn local_target(name: &str, path: &Path) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nkind = \"local\"\npath = \"{}\"\n\n",
        path.display()
    )
}

/// An SFTP target under the test server's data folder; returns (toml, folder on disk).
pub fn sftp_target(name: &str, prefix: &str) -> (String, String) {
    let path = format!("{}/{prefix}", env("SFTP_ROOT"));
    let toml = format!(
        "[[target]]\nname = \"{name}\"\nkind = \"sftp\"\nhost = \"{}\"\nport = {}\nuser = \"{}\"\n\
         key_file = \"{}\"\npath = \"{path}\"\ntimeout = 10\nretries = 1\n\n",
        env("SFTP_HOST"),
        env("SFTP_PORT"),
        env("SFTP_USER"),
        env("SFTP_KEY"),
    );
    (toml, path)
}

pub fn azblob_target(name: &str, prefix: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nkind = \"azblob\"\nendpoint = \"{}\"\naccount = \"{}\"\n\
         container = \"{}\"\npath = \"{prefix}\"\nkey = \"env:AZBLOB_ACCOUNT_KEY\"\n\
         allow_insecure_http = true\n\n",
        env("AZBLOB_ENDPOINT"),
        env("AZBLOB_ACCOUNT_NAME"),
        env("AZBLOB_CONTAINER"),
    )
}

pub fn s3_target(name: &str, prefix: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{}\"\n\
         region = \"{}\"\npath = \"{prefix}\"\naccess_key_id = \"env:S3_ACCESS_KEY_ID\"\n\
         secret_access_key = \"env:S3_SECRET_ACCESS_KEY\"\nallow_insecure_http = true\n\n",
        env("S3_ENDPOINT"),
        env("S3_BUCKET"),
        env("S3_REGION"),
    )
}

/// Two local targets `a` and `b` (folders `tmp/a`, `tmp/b`) holding one repository, with one
/// snapshot of `tmp/src` holding the file `name`; returns (configuration, a, b).
pub fn two_local_targets(tmp: &Path, name: &str, content: &[u8]) -> (PathBuf, PathBuf, PathBuf) {
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join(name), content).unwrap();
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    let config = write_config(
        tmp,
        &[&src],
        &format!("{}{}", local_target("a", &a), local_target("b", &b)),
    );
    assert_eq!(cairn(&config, &["backup", "--init"]).status.code(), Some(0));
    (config, a, b)
}

/// Writes `targets.toml` in `dir` backing up `sources`; returns its path.
pub fn write_config(dir: &Path, sources: &[&Path], targets: &str) -> PathBuf {
    let sources: Vec<String> = sources
        .iter()
        .map(|s| format!("\"{}\"", s.display()))
        .collect();
    let text = format!(
        "[repository]\nname = \"test\"\n\n[backup]\nsources = [{}]\n\n{targets}",
        sources.join(", ")
    );
    let path = dir.join("targets.toml");
    fs::write(&path, text).unwrap();
    path
}

/// Runs the cairn binary with the test password.
pub fn cairn(config: &Path, args: &[&str]) -> Output {
    cairn_with_password(config, PASSWORD, args)
}

pub fn cairn_with_password(config: &Path, password: &str, args: &[&str]) -> Output {
    let o = in_own_words(
        cairn_cmd(config)
            .args(args)
            .env("CAIRN_PASSWORD", password)
            .output()
            .expect("cairn runs"),
    );
    no_secret_written(&config.parent().unwrap().join("state"));
    o
}

/// Fails the test when a file cairn wrote in a state folder (target state, audit log, lockout
/// counts, run logs, reports, metrics) holds a secret of the suite.
pub fn no_secret_written(state: &Path) {
    let secrets = suite_secrets();
    let mut dirs = vec![state.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(bytes) = fs::read(&p) {
                let text = String::from_utf8_lossy(&bytes);
                for s in &secrets {
                    assert!(
                        !text.contains(s.as_str()),
                        "a secret is written in {}",
                        p.display()
                    );
                }
            }
        }
    }
}

/// Every secret the suite configures: the repository password and the servers' credentials.
pub fn suite_secrets() -> Vec<String> {
    let mut out = vec![PASSWORD.to_string()];
    for var in [
        "SMB_PASSWORD",
        "AZBLOB_ACCOUNT_KEY",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
    ] {
        out.extend(std::env::var(var).ok().filter(|v| v.len() >= 6));
    }
    out
}

/// Fails the test when a library's own wording (rustic_core's kind, bug-report plea or
/// backtrace, another tool's repair advice) or any secret of the suite reaches the user, in any
/// output of any command.
pub fn in_own_words(o: Output) -> Output {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for secret in suite_secrets() {
        assert!(
            !all.contains(&secret),
            "a secret is printed in:\n{}",
            all.replace(&secret, "<SECRET>")
        );
    }
    for library in [
        "(kind: related to",
        "`rustic_core` experienced",
        "Backtrace:",
        "please report it",
        "rustic repair",
        "Some additional details",
    ] {
        assert!(
            !all.contains(library),
            "library wording {library:?} in:\n{all}"
        );
    }
    o
}

/// The binary under test: this build's, or `CAIRN_TEST_BIN` (to run a new regression test
/// against an older build and watch it fail).
pub fn bin() -> PathBuf {
    std::env::var_os("CAIRN_TEST_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cairn")), PathBuf::from)
}

/// The cairn binary on `config`, with its state folder beside the configuration file and no
/// password (add `CAIRN_PASSWORD` as needed).
pub fn cairn_cmd(config: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("--config")
        .arg(config)
        .env("CAIRN_STATE_DIR", config.parent().unwrap().join("state"))
        .env_remove("CAIRN_PASSWORD");
    c
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts the exit code, showing the whole output otherwise.
pub fn expect_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// Deterministic bytes.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Nested folders, empty files and folders, symlinks, unicode names, a file larger than a pack
/// (rustic's data packs start at 4 MiB), compressible text and duplicates.
pub fn make_corpus(root: &Path) {
    fs::create_dir_all(root.join("a/b/c/d")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::create_dir_all(root.join("ünïcödé/日本語")).unwrap();
    fs::write(root.join("empty.txt"), b"").unwrap();
    fs::write(root.join("a/b/c/d/deep.txt"), b"deep\n").unwrap();
    fs::write(root.join("ünïcödé/日本語/ファイル.txt"), "こんにちは\n").unwrap();
    fs::write(
        root.join("ünïcödé/naïve café.md"),
        "crème brûlée\n".repeat(100),
    )
    .unwrap();
    fs::write(root.join("big.bin"), pseudo_random(1, 12 << 20)).unwrap();
    let text: String = (0..20_000)
        .map(|i| format!("line {i} of a compressible log\n"))
        .collect();
    fs::write(root.join("a/log.txt"), &text).unwrap();
    fs::write(root.join("a/b/log-copy.txt"), &text).unwrap();
    for i in 0..50 {
        fs::write(
            root.join(format!("a/b/small-{i:02}.dat")),
            pseudo_random(100 + i, 1000 + i as usize * 37),
        )
        .unwrap();
    }
    symlink("a/b/c/d/deep.txt", root.join("link-to-deep")).unwrap();
    symlink("/nonexistent/target", root.join("dangling-link")).unwrap();
}

/// What a tree holds: path -> "dir" | "file:<sha256>" | "link:<target>".
pub fn tree_digest(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.insert(
                    rel,
                    format!("link:{}", fs::read_link(&p).unwrap().display()),
                );
            } else if ft.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else {
                out.insert(
                    rel,
                    format!("file:{}", hex(&Sha256::digest(fs::read(&p).unwrap()))),
                );
            }
        }
    }
    walk(root, root, &mut out);
    out
}

pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (e, a) = (tree_digest(expected), tree_digest(actual));
    assert!(
        !e.is_empty(),
        "expected tree {} is empty",
        expected.display()
    );
    if e != a {
        let missing: Vec<_> = e.keys().filter(|k| !a.contains_key(*k)).collect();
        let extra: Vec<_> = a.keys().filter(|k| !e.contains_key(*k)).collect();
        let differ: Vec<_> = e
            .iter()
            .filter(|(k, v)| a.get(*k).is_some_and(|x| x != *v))
            .map(|(k, _)| k)
            .collect();
        panic!(
            "{} differs from {}: missing {missing:?}, extra {extra:?}, different {differ:?}",
            actual.display(),
            expected.display()
        );
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Where a restore of `latest` puts a backed-up absolute path.
pub fn restored(dest: &Path, source: &Path) -> PathBuf {
    dest.join(source.strip_prefix("/").unwrap())
}

/// Waits until `cond` holds (polling a condition another process brings about), failing the
/// test after a minute.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A `cairn backup` held still (test hook, `--features test-hooks`) once it has written its
/// first repository file on every target; returned once it stands still, holding its locks.
pub fn halted_backup(config: &Path) -> std::process::Child {
    halted(config, "backup")
}

/// `cairn VERB` held still as [`halted_backup`] is.
pub fn halted(config: &Path, verb: &str) -> std::process::Child {
    let marker = config.parent().unwrap().join(unique("halted"));
    let run = cairn_cmd(config)
        .arg(verb)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_TEST_HALT_AFTER_WRITES", "1")
        .env("CAIRN_TEST_HALT_MARKER", &marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let targets = fs::read_to_string(config)
        .unwrap()
        .matches("[[target]]")
        .count();
    wait_for("the backup to write its first file everywhere", || {
        halted_targets(&marker) == targets
    });
    run
}

/// How many targets a run started with `CAIRN_TEST_HALT_AFTER_WRITES` has halted on (each
/// appends a line to the marker file once it stands still).
pub fn halted_targets(marker: &Path) -> usize {
    fs::read_to_string(marker).map_or(0, |m| m.lines().count())
}

/// Runs stock restic with the test password.
pub fn restic(repo: &str, args: &[&str]) -> Output {
    restic_cmd(repo, args)
        .output()
        .expect("restic is installed (scripts/test-servers/start-all.sh installs it)")
}

/// Stock restic on `repo` with the test password, not started.
pub fn restic_cmd(repo: &str, args: &[&str]) -> Command {
    let mut c = Command::new("restic");
    c.arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env(
            "RESTIC_CACHE_DIR",
            std::env::temp_dir().join("cairn-test-restic-cache"),
        );
    c
}

/// Every file of a repository on a target: relative path -> sha256 of its bytes.
pub fn repo_files(store: &dyn cairn::store::Store) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let config = store.read("config").expect("config readable");
    out.insert("config".to_string(), hex(&Sha256::digest(&config)));
    for dir in ["keys", "snapshots", "index", "data"] {
        for (rel, _) in store.list(dir).expect("listable") {
            let path = format!("{dir}/{rel}");
            let bytes = store.read(&path).expect("readable");
            out.insert(path, hex(&Sha256::digest(&bytes)));
        }
    }
    out
}

/// Opens one configured target's storage through the library; `repo/target` names a target
/// of one of several repositories (its folder there).
pub fn open_store(config: &Path, name: &str) -> Box<dyn cairn::store::Store> {
    let (cfg, name) = match name.split_once('/') {
        Some((repo, target)) => (
            cairn::config::Config::load_all(config)
                .unwrap()
                .into_iter()
                .find(|c| c.client.as_deref() == Some(repo))
                .expect("a repository of that name"),
            target,
        ),
        None => (cairn::config::Config::load(config).unwrap(), name),
    };
    let target = cfg.target(name).unwrap().clone();
    let ctx = cairn::context::Context::new(cfg, std::sync::Arc::new(cairn::progress::Silent));
    ctx.open_store(&target).unwrap()
}

/// The repository on target `name` alone, opened with the test password.
pub fn open_alone(config: &Path, name: &str) -> rustic_core::Repository<rustic_core::OpenStatus> {
    use std::sync::Arc;
    let store: Arc<dyn cairn::store::Store> = Arc::from(open_store(config, name));
    let fan = cairn::fanout::Fanout::new(
        vec![Arc::new(cairn::fanout::Member::new(
            name.into(),
            true,
            store,
        ))],
        Arc::new(cairn::progress::Silent),
    );
    let pw = cairn::secret::Secret::new(PASSWORD.into());
    let keys = cairn::repo::KeyCache::default();
    cairn::repo::open_repository(Arc::new(fan), &pw, &keys, rustic_core::NoProgressBars).unwrap()
}

/// For every file of the latest snapshot, as read from target `name` alone: the data packs
/// holding its chunks (hex ids). Paths are as in the snapshot (no leading `/`).
pub fn file_packs(
    config: &Path,
    name: &str,
) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let repo = open_alone(config, name).to_indexed().unwrap();
    let root = repo.node_from_snapshot_path("latest", |_| true).unwrap();
    let mut out = BTreeMap::new();
    for item in repo.ls(&root, &rustic_core::LsOptions::default()).unwrap() {
        let (path, node) = item.unwrap();
        if let Some(content) = &node.content {
            let packs = content
                .iter()
                .map(|id| repo.get_index_entry(id).unwrap().pack.to_hex().to_string())
                .collect();
            out.insert(path.to_string_lossy().into_owned(), packs);
        }
    }
    out
}

/// A byte flipped in the middle of a repository file on a target, written back through the
/// target's own storage (any kind).
pub fn flip_byte(store: &dyn cairn::store::Store, path: &str) {
    let mut bytes = store.read(path).unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    store.write(path, vec![bytes.into()]).unwrap();
}

pub fn pack_path(hex: &str) -> String {
    format!("data/{}/{hex}", &hex[..2])
}

/// An SMB target on the shared test server; returns (toml, folder on disk behind the share).
pub fn smb_target(name: &str, prefix: &str) -> (String, String) {
    smb_target_at(
        name,
        prefix,
        &env("SMB_PORT"),
        &env("SMB_SHARE"),
        "env:SMB_PASSWORD",
    )
}

pub fn smb_target_at(
    name: &str,
    prefix: &str,
    port: &str,
    share: &str,
    password: &str,
) -> (String, String) {
    let toml = format!(
        "[[target]]\nname = \"{name}\"\nkind = \"smb\"\nhost = \"{}\"\nport = {port}\nshare = \"{share}\"\n\
         path = \"{prefix}\"\nuser = \"{}\"\npassword = \"{password}\"\ntimeout = 10\nretries = 1\n\n",
        env("SMB_HOST"),
        env("SMB_USER"),
    );
    (toml, format!("{}/{prefix}", env("SMB_SHARE_DIR")))
}

/// The snapshot ids stock restic lists in `repo`.
pub fn snapshot_ids(repo: &str) -> std::collections::BTreeSet<String> {
    snapshot_ids_with(repo, PASSWORD)
}

/// The snapshot ids stock restic lists in `repo` opened with `password`.
pub fn snapshot_ids_with(repo: &str, password: &str) -> std::collections::BTreeSet<String> {
    let out = restic_cmd(repo, &["snapshots", "--json", "--no-lock"])
        .env("RESTIC_PASSWORD", password)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Stock `restic check --read-data` passes on `repo`.
pub fn restic_check(repo: &str) {
    let out = restic(repo, &["check", "--read-data"]);
    assert!(out.status.success(), "restic check {repo}: {}", text(&out));
}

/// A verbatim copy of target `name`'s repository files in `dest` (restic 0.14 cannot address
/// Azurite's endpoint, so restic reads the Azure target's files there).
pub fn verbatim_copy(config: &Path, name: &str, dest: &Path) {
    let store = open_store(config, name);
    for path in repo_files(store.as_ref()).keys() {
        let to = dest.join(path);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(to, store.read(path).unwrap()).unwrap();
    }
}

/// A private sshd on its own port, sharing the test server's keys, so stopping it disturbs no
/// other test.
pub struct PrivateSshd {
    child: Option<std::process::Child>,
    pub port: u16,
    config: PathBuf,
}

impl PrivateSshd {
    pub fn start(dir: &Path, port: Option<u16>) -> Self {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let shared = Path::new(&env("SFTP_KNOWN_HOSTS"))
            .parent()
            .unwrap()
            .join("sshd_config");
        let config = dir.join("sshd_config");
        let text: String = fs::read_to_string(shared)
            .unwrap()
            .lines()
            .map(|l| {
                if l.starts_with("Port ") {
                    format!("Port {port}")
                } else if l.starts_with("PidFile ") {
                    format!("PidFile {}", dir.join("sshd.pid").display())
                } else {
                    l.to_string()
                }
            })
            .map(|l| l + "\n")
            .collect();
        fs::write(&config, text).unwrap();
        let mut s = Self {
            child: None,
            port,
            config,
        };
        s.restart();
        s
    }

    pub fn restart(&mut self) {
        use std::os::unix::process::CommandExt;
        // Its own process group: the per-connection children die with the listener.
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-f"])
            .arg(&self.config)
            .arg("-E")
            .arg(self.config.with_file_name("sshd.log"))
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for("the private sshd to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// An SFTP target on this server (its host key accepted on first use); returns (toml, folder).
    pub fn sftp_target(&self, name: &str, prefix: &str) -> (String, String) {
        let (toml, dir) = sftp_target(name, prefix);
        let toml = toml
            .replace(
                &format!("port = {}", env("SFTP_PORT")),
                &format!("port = {}", self.port),
            )
            .replace(
                "timeout = 10",
                "timeout = 10\nhost_key_checking = \"accept-new\"",
            );
        (toml, dir)
    }

    /// Kills the listener and every connection process under it (sshd puts each connection
    /// in a session of its own, so the process group is not enough).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let mut pids = descendants(child.id());
            pids.push(child.id());
            for pid in pids {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = child.wait();
        }
    }
}

/// Every process descending from `root`, from /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid) in &parents {
            if *ppid == p {
                out.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    out
}

impl Drop for PrivateSshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A one-request-at-a-time HTTP server recording request lines, answering 200.
pub fn ping_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ping-token-5f2d", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut len = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            log.lock().unwrap().push(line.trim().to_string());
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK")
                .unwrap();
        }
    });
    (url, seen)
}

/// Restores `snapshot` from target `from` alone and compares it with `expected` (a copy of
/// the source as it was).
pub fn restores_from(config: &Path, from: &str, snapshot: &str, src: &Path, expected: &Path) {
    let dest = config.parent().unwrap().join(unique("restore"));
    let out = cairn(
        config,
        &[
            "restore",
            snapshot,
            "--from",
            from,
            "--target",
            dest.to_str().unwrap(),
        ],
    );
    expect_code(&out, 0);
    assert_same_tree(expected, &restored(&dest, src));
    fs::remove_dir_all(&dest).unwrap();
}

/// `cp -a FROM TO`.
pub fn copy_tree(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Runs `args` halted by `hook` after `n` steps on `targets` targets, then SIGKILLs it. Returns
/// false when the run finished before reaching step `n` (the matrix is complete).
pub fn kill_at(config: &Path, args: &[&str], hook: &str, n: usize, targets: usize) -> bool {
    let marker = config.parent().unwrap().join(unique("halt"));
    let mut run = cairn_cmd(config)
        .args(args)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env(hook, n.to_string())
        .env("CAIRN_TEST_HALT_MARKER", &marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut finished = false;
    wait_for("the run to halt on every target or finish", || {
        if halted_targets(&marker) >= targets {
            return true;
        }
        finished = run.try_wait().unwrap().is_some();
        finished
    });
    if !finished {
        run.kill().unwrap();
    }
    run.wait().unwrap();
    !finished
}

/// A folder on another filesystem (tmpfs), standing in for a USB disk's root; removed on drop.
pub struct Disk(pub PathBuf);

impl Disk {
    pub fn new() -> Self {
        let shm = Path::new("/dev/shm");
        assert!(
            shm.is_dir(),
            "/dev/shm (a tmpfs) is needed to stand in for a removable disk"
        );
        let d = shm.join(unique("cairn-usb"));
        fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A bind mount standing in for a plugged-in disk (needs root, as the test servers do);
/// unmounted on drop.
pub struct Mounted(PathBuf);

impl Mounted {
    pub fn bind(from: &Path, at: &Path) -> Self {
        let o = std::process::Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(at)
            .output()
            .expect("mount runs");
        assert!(
            o.status.success(),
            "mount --bind (root needed) to stand in for a plugged-in disk: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Self(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A removable disk: its files in a folder on a tmpfs, plugged in by a bind mount at its mount
/// point (an empty folder while unplugged). Unplugged on drop.
pub struct Usb {
    plugged: Option<Mounted>,
    /// Where its files are, plugged in or not (what restic reads).
    pub disk: Disk,
    /// The mount point the configuration names.
    pub mount: PathBuf,
}

impl Usb {
    /// An empty disk, unplugged, mounted at `mount` when plugged in.
    pub fn new(mount: PathBuf) -> Self {
        fs::create_dir_all(&mount).unwrap();
        Self {
            plugged: None,
            disk: Disk::new(),
            mount,
        }
    }

    /// A disk holding a copy of the files under `template`.
    pub fn copy_of(template: &Path, mount: PathBuf) -> Self {
        let usb = Self::new(mount);
        let ok = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", template.display()))
            .arg(&usb.disk.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "copying {} onto a disk", template.display());
        usb
    }

    /// Its `[[target]]` (the repository in `cairn/` on the disk).
    pub fn target(&self, name: &str) -> String {
        format!(
            "[[target]]\nname = \"{name}\"\nkind = \"local\"\npath = \"{}/cairn\"\n\
             removable = true\nmount_point = \"{}\"\n\n",
            self.mount.display(),
            self.mount.display()
        )
    }

    pub fn plug(&mut self) {
        if self.plugged.is_none() {
            self.plugged = Some(Mounted::bind(&self.disk.0, &self.mount));
        }
    }

    pub fn unplug(&mut self) {
        self.plugged = None;
    }

    /// The repository's folder, plugged in or not.
    pub fn repo(&self) -> String {
        self.disk.0.join("cairn").display().to_string()
    }
}

/// Bytes of every file under `dir` (a repository's storage, records included).
pub fn tree_bytes(dir: &Path) -> u64 {
    let mut sum = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        sum += if meta.is_dir() {
            tree_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    sum
}

/// Nightly backups of `src` for each of `nights` (night 0 creates the repository): a file
/// that changes, and a small one added, each night. `before` runs ahead of each night.
pub fn nightly_backups(
    config: &Path,
    src: &Path,
    nights: std::ops::Range<u64>,
    mut before: impl FnMut(u64),
) {
    for night in nights {
        before(night);
        fs::write(src.join("changes"), pseudo_random(200 + night, 60_000)).unwrap();
        fs::write(
            src.join(format!("n{night}")),
            pseudo_random(300 + night, 5_000),
        )
        .unwrap();
        let args: &[&str] = if night == 0 {
            &["backup", "--init"]
        } else {
            &["backup"]
        };
        expect_code(&cairn(config, args), 0);
    }
}

/// A local target's and an SFTP target's repositories kept aside as templates, with the
/// configuration naming them: each [`Self::fresh`] copy is one run of a kill matrix.
pub struct Templates {
    text_cfg: String,
    a: PathBuf,
    sftp_dir: String,
    a_tpl: PathBuf,
    nas_tpl: PathBuf,
    tmp: PathBuf,
}

impl Templates {
    /// Copies the repositories at `a` and `sftp_dir` (those `config` names) into `tmp`.
    pub fn keep(tmp: &Path, config: &Path, a: &Path, sftp_dir: &str) -> Self {
        let (a_tpl, nas_tpl) = (tmp.join("a-tpl"), tmp.join("nas-tpl"));
        copy_tree(a, &a_tpl);
        copy_tree(Path::new(sftp_dir), &nas_tpl);
        Self {
            text_cfg: fs::read_to_string(config).unwrap(),
            a: a.to_path_buf(),
            sftp_dir: sftp_dir.to_string(),
            a_tpl,
            nas_tpl,
            tmp: tmp.to_path_buf(),
        }
    }

    /// A fresh copy of both under new names, in a new folder: its configuration (there), the
    /// local repository's folder and the SFTP one's.
    pub fn fresh(&self) -> (PathBuf, String, String) {
        let run_dir = self.tmp.join(unique("run"));
        fs::create_dir_all(&run_dir).unwrap();
        let (ra, rnas) = (
            run_dir.join("a"),
            format!("{}-{}", self.sftp_dir, unique("r")),
        );
        copy_tree(&self.a_tpl, &ra);
        copy_tree(&self.nas_tpl, Path::new(&rnas));
        let cfg = run_dir.join("targets.toml");
        fs::write(
            &cfg,
            self.text_cfg
                .replace(self.a.to_str().unwrap(), ra.to_str().unwrap())
                .replace(&self.sftp_dir, &rnas),
        )
        .unwrap();
        (cfg, ra.display().to_string(), rnas)
    }
}

/// After a kill: every copy passes `restic check --read-data` once the killed run's restic
/// lock is removed as stale (restic 0.14's `check` refuses any lock; an admin runs `restic
/// unlock`).
pub fn every_copy_checks(at: &str, repos: &[&str]) {
    for repo in repos {
        let out = restic(repo, &["unlock"]);
        assert!(out.status.success(), "{at}: restic unlock: {}", text(&out));
        let out = restic(repo, &["check", "--read-data"]);
        assert!(
            out.status.success(),
            "{at}: restic check {repo}: {}",
            text(&out)
        );
    }
}

/// A signed S3 request with curl (SigV4), against the Object Lock server; (status, body).
pub fn s3_lock_request(
    method: &str,
    path_query: &str,
    headers: &[&str],
    body: Option<&Path>,
) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "-X",
        method,
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        "id:key",
    ])
    .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
    .args(["-w", "\n%{http_code}"]);
    for h in headers {
        c.args(["-H", h]);
    }
    if let Some(b) = body {
        c.arg("--data-binary").arg(format!("@{}", b.display()));
    }
    c.arg(format!("{}/{path_query}", env("S3LOCK_ENDPOINT")));
    let out = c.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

/// A new bucket: plain, versioned with Object Lock, or that with a default retention.
pub fn lock_bucket(tmp: &Path, lock: Option<Option<(&str, u32)>>) -> String {
    let name = unique("lock").to_lowercase().replace('_', "-");
    let headers: &[&str] = match lock {
        Some(_) => &["x-amz-bucket-object-lock-enabled: true"],
        None => &[],
    };
    assert_eq!(s3_lock_request("PUT", &name, headers, None).0, 200);
    if let Some(Some((mode, days))) = lock {
        let xml = tmp.join("lock.xml");
        fs::write(
            &xml,
            format!(
                "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>\
                 <Mode>{mode}</Mode><Days>{days}</Days></DefaultRetention></Rule>\
                 </ObjectLockConfiguration>"
            ),
        )
        .unwrap();
        let md5 = Command::new("sh")
            .arg("-c")
            .arg(format!("openssl md5 -binary {} | base64", xml.display()))
            .output()
            .unwrap();
        let md5 = String::from_utf8(md5.stdout).unwrap();
        let (code, body) = s3_lock_request(
            "PUT",
            &format!("{name}?object-lock"),
            &[
                &format!("Content-MD5: {}", md5.trim()),
                "Content-Type: application/xml",
            ],
            Some(&xml),
        );
        assert_eq!(code, 200, "{body}");
    }
    name
}

pub fn locked_target(name: &str, bucket: &str, mode: &str, days: u32) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{bucket}\"\n\
         region = \"us-east-1\"\npath = \"repo\"\naccess_key_id = \"env:S3_ACCESS_KEY_ID\"\n\
         secret_access_key = \"env:S3_SECRET_ACCESS_KEY\"\nallow_insecure_http = true\n\
         object_lock = {{ mode = \"{mode}\", days = {days} }}\n\n",
        env("S3LOCK_ENDPOINT"),
    )
}

/// An `append_only` SFTP target on the test server's append-only account, its folder prepared
/// by the storage owner's script (`contrib/sftp-append-only/prepare-folder.sh`) unless
/// `prepared` is false; returns (toml, folder on disk).
pub fn append_only_target(name: &str, prefix: &str, prepared: bool) -> (String, String) {
    let path = format!("{}/{prefix}", env("SFTP_AO_ROOT"));
    if prepared {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib/sftp-append-only/prepare-folder.sh");
        let out = Command::new(script)
            .args([path.as_str(), env("SFTP_AO_USER").as_str()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let toml = format!(
        "[[target]]\nname = \"{name}\"\nkind = \"sftp\"\nhost = \"{}\"\nport = {}\nuser = \"{}\"\n\
         key_file = \"{}\"\npath = \"{path}\"\nappend_only = true\ntimeout = 10\nretries = 1\n\n",
        env("SFTP_HOST"),
        env("SFTP_PORT"),
        env("SFTP_AO_USER"),
        env("SFTP_KEY"),
    );
    (toml, path)
}

/// Runs `sftp` batch commands as `user` on the test server, each allowed to fail (`-` prefix);
/// returns what it printed.
pub fn sftp_batch(user: &str, commands: &[String]) -> String {
    use std::io::Write;
    let batch: String = commands.iter().map(|c| format!("-{c}\n")).collect();
    let mut child = Command::new("sftp")
        .args(["-b", "-", "-P", &env("SFTP_PORT"), "-i", &env("SFTP_KEY")])
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", env("SFTP_KNOWN_HOSTS")))
        .arg(format!("{user}@{}", env("SFTP_HOST")))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(batch.as_bytes())
        .unwrap();
    text(&child.wait_with_output().unwrap())
}

/// Every file below `dir` on this machine (relative path -> bytes), at any depth.
pub fn files_below(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}
