//! The `ssh` process that carries a target's SFTP session: cairn starts it as restic does
//! (`ssh … -s host sftp`), one per session, and speaks SFTP over its stdin and stdout. The
//! user's and the system's ssh configuration apply, as to any `ssh` they run.
//!
//! Not a control master with a second `ssh` per channel (the `openssh` crate's way): a session
//! here has one channel, a master that detaches can outlive cairn (see `reaper`), and its log
//! file kept ssh's own reason for a failed log-in out of the error.
//!
//! AES-GCM goes first in the cipher list when this machine computes AES in hardware and no ssh
//! configuration chose ciphers (OpenSSH's default puts ChaCha20-Poly1305 first, the faster one
//! without such instructions): an SFTP backup of 700 MiB of packs cost 1 CPU-second less on
//! the two ends together here. A `Ciphers` line in `~/.ssh/config` or `/etc/ssh/ssh_config`
//! is obeyed as it is.

use std::{path::PathBuf, process::Stdio, time::Duration};

use openssh_sftp_client::{Sftp, SftpAuxiliaryData, SftpOptions};
use tokio::{io::AsyncReadExt, process::Command, sync::OnceCell};

use super::StoreErrorKind;
use crate::config::HostKeyChecking;

/// OpenSSH's AES-GCM ciphers, in the order they go first.
const AES_GCM: [&str; 2] = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"];

/// The bytes of ssh's own messages kept for an error (its last words are the reason).
const SAID: usize = 4096;

/// How cairn runs `ssh` for one target.
pub(super) struct Ssh {
    host: String,
    port: u16,
    user: String,
    key_file: PathBuf,
    host_key_checking: HostKeyChecking,
    /// ssh's own bound on connecting (the caller bounds the whole log-in as well).
    connect_timeout: Duration,
    /// The cipher list given to ssh (`None`: its configuration's), decided at the first log-in.
    ciphers: OnceCell<Option<String>>,
}

impl Ssh {
    pub(super) fn new(
        host: String,
        port: u16,
        user: String,
        key_file: PathBuf,
        host_key_checking: HostKeyChecking,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            host,
            port,
            user,
            key_file,
            host_key_checking,
            connect_timeout,
            ciphers: OnceCell::new(),
        }
    }

    /// The options every `ssh` of this target gets, before the destination.
    fn options(&self) -> Vec<String> {
        let checking = match self.host_key_checking {
            HostKeyChecking::Strict => "yes",
            HostKeyChecking::AcceptNew => "accept-new",
            HostKeyChecking::Off => "no",
        };
        vec![
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("StrictHostKeyChecking={checking}"),
            "-o".into(),
            format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)),
            // The key named in the target only, not whatever an agent offers.
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-i".into(),
            self.key_file.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-l".into(),
            self.user.clone(),
        ]
    }

    /// Logs in and starts the SFTP subsystem. The error is ssh's own reason where it gave one,
    /// and final where the server refused the key or did not prove its own.
    pub(super) async fn open(&self) -> Result<Sftp, (StoreErrorKind, String)> {
        let ciphers = self
            .ciphers
            .get_or_init(|| async {
                if !aes_in_hardware() {
                    return None;
                }
                self.default_ciphers().await.and_then(|d| aes_gcm_first(&d))
            })
            .await;
        let mut ssh = Command::new("ssh");
        ssh.args(self.options());
        if let Some(ciphers) = ciphers {
            ssh.args(["-o", &format!("Ciphers={ciphers}")]);
        }
        ssh.args(["-s", "--", &self.host, "sftp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Dropped with the session (a failed one included): no ssh outlives its session.
            .kill_on_drop(true);
        let mut child = ssh
            .spawn()
            .map_err(|e| (StoreErrorKind::Transient, format!("cannot run ssh: {e}")))?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err((
                StoreErrorKind::Transient,
                "ssh started without its pipes".into(),
            ));
        };
        // Drained all along (a full pipe would stall ssh); the tail is kept for an error.
        let said = tokio::spawn(async move {
            let (mut kept, mut buf) = (Vec::new(), [0u8; 1024]);
            while let Ok(n @ 1..) = stderr.read(&mut buf).await {
                kept.extend_from_slice(&buf[..n]);
                let over = kept.len().saturating_sub(SAID);
                kept.drain(..over);
            }
            kept
        });
        let child = SftpAuxiliaryData::Boxed(Box::new(child));
        match Sftp::new_with_auxiliary(stdin, stdout, SftpOptions::default(), child).await {
            Ok(sftp) => Ok(sftp),
            Err(e) => {
                // The failed session dropped ssh (killed if it still ran), so its stderr ends.
                let said = tokio::time::timeout(Duration::from_secs(5), said)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                let why = reason(&String::from_utf8_lossy(&said), &e.to_string());
                Err((refusal(&why), why))
            }
        }
    }

    /// OpenSSH's default cipher list, if the ssh configuration that applies to this
    /// destination leaves it so (`ssh -G` with and without the configuration files agree).
    async fn default_ciphers(&self) -> Option<String> {
        let ciphers = |no_config: bool| async move {
            let mut g = Command::new("ssh");
            g.arg("-G");
            if no_config {
                g.args(["-F", "/dev/null"]);
            }
            g.args(self.options()).args(["--", &self.host]);
            let out = g.stdin(Stdio::null()).stderr(Stdio::null()).output().await;
            out.ok()
                .filter(|o| o.status.success())
                .and_then(|o| ciphers_of(&String::from_utf8_lossy(&o.stdout)))
        };
        let (configured, default) = tokio::join!(ciphers(false), ciphers(true));
        if configured == default { default } else { None }
    }
}

/// The `ciphers` line of `ssh -G`'s output.
fn ciphers_of(g: &str) -> Option<String> {
    g.lines()
        .find_map(|l| l.strip_prefix("ciphers "))
        .map(str::to_string)
}

/// `list` with the AES-GCM ciphers it holds moved to its head; `None` if it holds none.
fn aes_gcm_first(list: &str) -> Option<String> {
    let all: Vec<&str> = list.split(',').collect();
    let first: Vec<&str> = AES_GCM.into_iter().filter(|c| all.contains(c)).collect();
    if first.is_empty() {
        return None;
    }
    let rest = all.into_iter().filter(|c| !first.contains(c));
    Some(
        first
            .iter()
            .copied()
            .chain(rest)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// What a failed log-in is reported as: ssh's last message, which names the reason
/// ("Permission denied (publickey).", "Host key verification failed.", "Connection refused"),
/// else the SFTP client's.
fn reason(said: &str, client: &str) -> String {
    match said
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
    {
        Some(last) => format!("ssh: {last}"),
        None => client.to_string(),
    }
}

/// How a failed log-in is classed: a refused key or a host key not on record is not what
/// another attempt a few seconds later changes (a host key that changed may be an attacker's);
/// anything else (no answer, a connection dropped, too many log-ins at once) may be.
fn refusal(why: &str) -> StoreErrorKind {
    if why.contains("Permission denied (") || why.contains("Host key verification failed") {
        StoreErrorKind::Permanent
    } else {
        StoreErrorKind::Transient
    }
}

/// Whether this CPU has AES and carry-less multiply instructions (AES-GCM's fast path).
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cipher_list_is_read_from_ssh_g() {
        let g = "user root\nport 22\nciphers chacha20-poly1305@openssh.com,aes128-ctr\nmacs x\n";
        assert_eq!(
            ciphers_of(g).as_deref(),
            Some("chacha20-poly1305@openssh.com,aes128-ctr")
        );
        assert_eq!(ciphers_of("user root\n"), None);
    }

    #[test]
    fn aes_gcm_goes_first_and_nothing_is_added_or_lost() {
        let default = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,\
                       aes128-gcm@openssh.com,aes256-gcm@openssh.com";
        assert_eq!(
            aes_gcm_first(default).as_deref(),
            Some(
                "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,\
                 aes128-ctr,aes192-ctr,aes256-ctr"
            )
        );
        assert_eq!(
            aes_gcm_first("chacha20-poly1305@openssh.com,aes256-gcm@openssh.com").as_deref(),
            Some("aes256-gcm@openssh.com,chacha20-poly1305@openssh.com")
        );
        assert_eq!(aes_gcm_first("chacha20-poly1305@openssh.com"), None);
    }

    #[test]
    fn a_failed_log_in_is_reported_in_ssh_s_own_words() {
        let said = "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.\r\nroot@127.0.0.1: Permission denied (publickey).\r\n";
        assert_eq!(
            reason(said, "unexpected EOF"),
            "ssh: root@127.0.0.1: Permission denied (publickey)."
        );
        assert_eq!(reason("", "unexpected EOF"), "unexpected EOF");
    }

    #[test]
    fn a_refused_key_or_host_key_is_final_a_lost_connection_is_not() {
        let final_ = [
            "ssh: root@127.0.0.1: Permission denied (publickey).",
            "ssh: Host key verification failed.",
        ];
        for why in final_ {
            assert_eq!(refusal(why), StoreErrorKind::Permanent, "{why}");
        }
        let again = [
            "ssh: connect to host 127.0.0.1 port 1: Connection refused",
            "ssh: kex_exchange_identification: Connection closed by remote host",
            "unexpected EOF",
        ];
        for why in again {
            assert_eq!(refusal(why), StoreErrorKind::Transient, "{why}");
        }
    }
}
