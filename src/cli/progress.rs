//! Progress for people and for logs: indicatif bars (overall and per target) on a terminal,
//! plain timestamped lines every few seconds otherwise, nothing with `--json` but warnings.

use std::{
    fmt::Write as _,
    io::IsTerminal,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use cairn::{fanout::Member, progress::Observer, report::human_bytes};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars on a terminal.
    Bars,
    /// Periodic log lines.
    Lines,
    /// Nothing (machine output).
    Quiet,
}

impl Mode {
    pub fn detect(json: bool) -> Self {
        if json {
            Self::Quiet
        } else if std::io::stderr().is_terminal() {
            Self::Bars
        } else {
            Self::Lines
        }
    }
}

/// A structured log line on stderr: `TIME LEVEL message`; under systemd, whose journal stamps
/// the time itself, `<PRIORITY>LEVEL message` (sd-daemon(3) prefixes: the journal files the
/// line under that priority).
pub fn log_line(level: &str, msg: &str) {
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        let priority = match level {
            "ERROR" | "FAIL" => 3,
            "WARN" => 4,
            _ => 6,
        };
        eprintln!("<{priority}>{level} {msg}");
        return;
    }
    eprintln!(
        "{} {level:<5} {msg}",
        rustic_core::jiff::Timestamp::now()
            .round(rustic_core::jiff::Unit::Second)
            .unwrap_or_else(|_| rustic_core::jiff::Timestamp::now())
    );
}

#[derive(Debug)]
struct LineProgress {
    started: Instant,
    prefix: Mutex<String>,
    kind: ProgressType,
    len: AtomicU64,
    pos: AtomicU64,
    done: AtomicBool,
}

/// Time left at the rate so far, once there is a rate to go by.
fn eta(pos: u64, len: u64, elapsed: Duration) -> Option<Duration> {
    (pos > 0 && len > pos).then(|| elapsed.mul_f64((len - pos) as f64 / pos as f64))
}

#[derive(Debug)]
struct LineHandle(Arc<LineProgress>);

impl RusticProgress for LineHandle {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.0.len.store(len, Ordering::Relaxed);
    }
    fn set_title(&self, title: &str) {
        if let Ok(mut p) = self.0.prefix.lock() {
            *p = title.to_string();
        }
    }
    fn inc(&self, inc: u64) {
        self.0.pos.fetch_add(inc, Ordering::Relaxed);
    }
    fn finish(&self) {
        self.0.done.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct BarProgress(ProgressBar);

impl RusticProgress for BarProgress {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn set_title(&self, title: &str) {
        self.0.set_prefix(title.to_string());
    }
    fn inc(&self, inc: u64) {
        self.0.inc(inc);
    }
    // A finished phase leaves the screen: a run has dozens, and its summary says what they did.
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[derive(Debug, Default)]
struct Shared {
    lines: Mutex<Vec<Arc<LineProgress>>>,
    members: Mutex<Vec<Arc<Member>>>,
    target_bars: Mutex<Vec<ProgressBar>>,
    stop: AtomicBool,
    ticker: Mutex<Option<thread::JoinHandle<()>>>,
}

/// rustic_core's progress bars and cairn's observer in one.
#[derive(Debug, Clone)]
pub struct Reporter {
    mode: Mode,
    mp: MultiProgress,
    shared: Arc<Shared>,
    interval: Duration,
}

impl Reporter {
    pub fn new(mode: Mode) -> Self {
        let mp = if mode == Mode::Bars {
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5))
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        let secs = std::env::var("CAIRN_PROGRESS_INTERVAL")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        Self {
            mode,
            mp,
            shared: Arc::default(),
            interval: Duration::from_secs(secs),
        }
    }

    pub fn print(&self, level: &str, msg: &str) {
        match self.mode {
            Mode::Bars => {
                let _ = self.mp.println(format!("{level}: {msg}"));
            }
            _ => log_line(level, msg),
        }
    }

    fn tick_lines(shared: &Shared, started: Instant) {
        let mut msg = format!("[{:>4}s]", started.elapsed().as_secs());
        if let Ok(lines) = shared.lines.lock() {
            for l in lines.iter().filter(|l| !l.done.load(Ordering::Relaxed)) {
                let prefix = l.prefix.lock().map(|p| p.clone()).unwrap_or_default();
                let (pos, len) = (l.pos.load(Ordering::Relaxed), l.len.load(Ordering::Relaxed));
                // A counter that has not started says nothing.
                if matches!(l.kind, ProgressType::Counter) && len == 0 && pos == 0 {
                    continue;
                }
                let _ = match l.kind {
                    ProgressType::Bytes => write!(
                        msg,
                        " {prefix} {} / {}{};",
                        human_bytes(pos),
                        human_bytes(len),
                        eta(pos, len, l.started.elapsed())
                            .map(|d| format!(", about {}s left", d.as_secs()))
                            .unwrap_or_default()
                    ),
                    ProgressType::Counter => write!(msg, " {prefix} {pos} / {len};"),
                    ProgressType::Spinner => write!(msg, " {prefix};"),
                };
            }
        }
        if let Ok(members) = shared.members.lock() {
            for m in members.iter() {
                let state = if m.failure().is_some() {
                    " (failed)"
                } else {
                    ""
                };
                let _ = write!(
                    msg,
                    " {}: {} written{state};",
                    m.name,
                    human_bytes(m.bytes_written())
                );
            }
        }
        log_line("INFO", msg.trim_end_matches(';'));
    }
}

impl ProgressBars for Reporter {
    fn progress(&self, kind: ProgressType, prefix: &str) -> Progress {
        match self.mode {
            Mode::Quiet => Progress::hidden(),
            Mode::Bars => {
                let pb = self.mp.add(ProgressBar::new(0));
                let tpl = match kind {
                    ProgressType::Spinner => "{spinner} {prefix:30} {elapsed_precise}",
                    ProgressType::Counter => {
                        "{spinner} {prefix:30} {elapsed_precise} [{wide_bar}] {pos:>10}/{len:10}"
                    }
                    ProgressType::Bytes => {
                        "{spinner} {prefix:30} {elapsed_precise} [{wide_bar}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:12} ETA {eta}"
                    }
                };
                pb.set_style(
                    ProgressStyle::with_template(tpl)
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                pb.set_prefix(prefix.to_string());
                pb.enable_steady_tick(Duration::from_millis(200));
                Progress::new(BarProgress(pb))
            }
            Mode::Lines => {
                let l = Arc::new(LineProgress {
                    started: Instant::now(),
                    prefix: Mutex::new(prefix.to_string()),
                    kind,
                    len: AtomicU64::new(0),
                    pos: AtomicU64::new(0),
                    done: AtomicBool::new(false),
                });
                if let Ok(mut lines) = self.shared.lines.lock() {
                    lines.retain(|l| !l.done.load(Ordering::Relaxed));
                    lines.push(l.clone());
                }
                Progress::new(LineHandle(l))
            }
        }
    }
}

impl Observer for Reporter {
    fn target_failed(&self, target: &str, error: &str) {
        self.print(
            "WARN",
            &format!("target `{target}` dropped from this run: {error}"),
        );
    }

    fn warn(&self, message: &str) {
        self.print("WARN", message);
    }

    fn info(&self, message: &str) {
        if self.mode != Mode::Quiet {
            self.print("INFO", message);
        }
    }

    fn writing_to(&self, members: &[Arc<Member>]) {
        if self.mode == Mode::Quiet {
            return;
        }
        if let Ok(mut m) = self.shared.members.lock() {
            *m = members.to_vec();
        }
        if self.mode == Mode::Bars
            && let Ok(mut bars) = self.shared.target_bars.lock()
        {
            for m in members {
                let pb = self.mp.add(ProgressBar::no_length());
                pb.set_style(
                    ProgressStyle::with_template(
                        "  target {prefix:20} {bytes:>10} written {binary_bytes_per_sec:12} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                pb.set_prefix(m.name.clone());
                bars.push(pb);
            }
        }
        self.shared.stop.store(false, Ordering::Relaxed);
        let shared = self.shared.clone();
        let (mode, interval) = (self.mode, self.interval);
        let handle = thread::spawn(move || {
            let started = Instant::now();
            let mut last_line = Instant::now();
            while !shared.stop.load(Ordering::Relaxed) {
                thread::park_timeout(Duration::from_millis(200));
                if mode == Mode::Bars {
                    if let (Ok(bars), Ok(members)) =
                        (shared.target_bars.lock(), shared.members.lock())
                    {
                        for (b, m) in bars.iter().zip(members.iter()) {
                            b.set_position(m.bytes_written());
                            if m.failure().is_some() {
                                b.set_message("FAILED");
                            }
                        }
                    }
                } else if last_line.elapsed() >= interval {
                    last_line = Instant::now();
                    Self::tick_lines(&shared, started);
                }
            }
        });
        if let Ok(mut t) = self.shared.ticker.lock() {
            *t = Some(handle);
        }
    }

    fn writing_done(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.shared.ticker.lock().ok().and_then(|mut t| t.take()) {
            h.thread().unpark();
            let _ = h.join();
        }
        if let Ok(mut bars) = self.shared.target_bars.lock() {
            for b in bars.drain(..) {
                b.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn time_left_follows_the_rate_so_far() {
        assert_eq!(
            super::eta(25, 100, Duration::from_secs(10)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(super::eta(0, 100, Duration::from_secs(10)), None);
        assert_eq!(super::eta(100, 100, Duration::from_secs(10)), None);
    }
}
