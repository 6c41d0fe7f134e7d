//! Asking a person for a password on the controlling terminal, without echo. Never reads a
//! pipe: a secret that is not typed comes from the environment, a file or systemd.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    os::fd::AsRawFd,
};

use crate::{
    error::{Error, Result},
    secret::Secret,
};

/// Asks once on `/dev/tty` with echo off.
///
/// # Errors
/// There is no terminal (a scheduled job), or it cannot be read.
pub fn ask(prompt: &str, no_terminal: &str) -> Result<Secret> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| Error::Input(no_terminal.to_string()))?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd we hold open.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for the whole call.
    if unsafe { libc::tcgetattr(fd, &raw mut old) } != 0 {
        return Err(Error::Input(no_terminal.to_string()));
    }
    let mut quiet = old;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: as above; the old settings are restored below on every path.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw const quiet) };
    let read = read_line(&tty, prompt);
    // SAFETY: as above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw const old) };
    let line = read.map_err(|source| Error::Io {
        path: "/dev/tty".into(),
        source,
    })?;
    let line = line.trim_end_matches(['\n', '\r']).to_string();
    if line.is_empty() {
        return Err(Error::Input("an empty password is not accepted".into()));
    }
    Ok(Secret::new(line))
}

/// Asks once on `/dev/tty`, echoing what is typed (a confirmation, not a secret).
///
/// # Errors
/// There is no terminal, or it cannot be read.
pub fn ask_plain(prompt: &str, no_terminal: &str) -> Result<String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| Error::Input(no_terminal.to_string()))?;
    let line = read_line(&tty, prompt).map_err(|source| Error::Io {
        path: "/dev/tty".into(),
        source,
    })?;
    Ok(line.trim().to_string())
}

fn read_line(tty: &File, prompt: &str) -> std::io::Result<String> {
    let mut out = tty.try_clone()?;
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    let mut line = String::new();
    BufReader::new(tty).read_line(&mut line)?;
    Ok(line)
}

/// Asks twice; both must match.
///
/// # Errors
/// As [`ask`], or the two differ.
pub fn ask_twice(prompt: &str, no_terminal: &str) -> Result<Secret> {
    let first = ask(prompt, no_terminal)?;
    let again = ask("Again: ", no_terminal)?;
    if first.expose() != again.expose() {
        return Err(Error::Input(
            "the two entries differ; nothing was changed".into(),
        ));
    }
    Ok(first)
}

/// A new secret: from the environment variable `var` when it is set (a script, a test), else
/// asked twice on the terminal.
///
/// # Errors
/// Neither gives one, or the two entries differ.
pub fn new_secret(var: &str, prompt: &str) -> Result<Secret> {
    if let Ok(s) =
        crate::secret::SecretRef::Env(var.to_string()).resolve(var, &crate::secret::NoVault)
    {
        return Ok(s);
    }
    ask_twice(prompt, &format!("set {var}, or run on a terminal"))
}
