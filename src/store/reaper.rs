//! No `ssh` process outlives cairn.
//!
//! An SFTP session's `ssh` is cairn's child, killed when the session is dropped. One whose
//! session is still held when cairn exits (a store not dropped, a runtime cut short) is
//! terminated here, and this process is the *subreaper* of what it starts, so that anything an
//! `ssh` leaves behind (a `ProxyCommand` of the user's configuration) is reparented to it, not
//! to init, and found the same way.

use std::time::{Duration, Instant};

/// Adopts orphaned descendants (Linux `PR_SET_CHILD_SUBREAPER`). Best effort.
pub(super) fn adopt_orphans() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Terminates (then kills) every `ssh` process that is a child of this one, and reaps it.
pub(super) fn reap_ssh() {
    let me = std::process::id();
    let ours: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| is_our_ssh(*pid, me))
        .collect();
    for &pid in &ours {
        // SAFETY: sending a signal to a pid; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for &pid in &ours {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only to `status`, a valid local.
            let r = unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
            if r != 0 {
                break;
            }
            if Instant::now() >= deadline {
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &raw mut status, 0);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Whether `pid` is an `ssh` process whose parent is `me`.
fn is_our_ssh(pid: i32, me: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ppid ...": comm may hold spaces, so split after its closing paren.
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let comm = head.split_once('(').map_or("", |(_, c)| c);
    let ppid = rest
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u32>().ok());
    comm == "ssh" && ppid == Some(me)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphaned_ssh_child_is_terminated_and_reaped() {
        adopt_orphans();
        // A process named ssh that detaches like a control master: a shell starts it in the
        // background and exits, so it is reparented to this process. It says it runs through
        // one FIFO, then blocks forever opening another that nobody writes.
        let dir = tempfile::tempdir().unwrap();
        let (up, never) = (dir.path().join("up"), dir.path().join("never"));
        for f in [&up, &never] {
            assert!(
                std::process::Command::new("mkfifo")
                    .arg(f)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let fake = dir.path().join("ssh");
        std::fs::write(&fake, "#!/bin/sh\necho $$ > \"$1\"\nread x < \"$2\"\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg("\"$0\" \"$1\" \"$2\" &")
            .arg(&fake)
            .arg(&up)
            .arg(&never)
            .status()
            .unwrap();
        assert!(status.success());
        let pid: i32 = std::fs::read_to_string(&up)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(is_our_ssh(pid, std::process::id()), "adopted");
        reap_ssh();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
