//! The run history as an inline SVG chart: per run, its duration and the bytes its backup added
//! (bars coloured by the run's result) and its sample verification (a dot: passed or failed).
//! Plain shapes with `<title>` tooltips, so it needs no script and prints as it shows.

use std::fmt::Write;

use super::esc;
use crate::{history::Entry, report::human_bytes};

const SLOT: usize = 8;
const LEFT: usize = 92;
const ROW: usize = 56;

fn colour(result: &str) -> &'static str {
    match result {
        "ok" => "#2e7d32",
        "partial" => "#e69500",
        _ => "#c62828",
    }
}

/// The chart of `runs` (oldest first) for repository `client`.
#[must_use]
pub fn history(client: &str, runs: &[Entry]) -> String {
    let width = LEFT + runs.len().max(1) * SLOT + 8;
    let height = 2 * ROW + 40;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"history\" id=\"history-{id}\" data-runs=\"{n}\" \
         xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"last {n} runs of {c}\">\
         <title>last {n} runs of {c}: duration, bytes added, verification</title>",
        id = esc(client),
        c = esc(client),
        n = runs.len(),
    );
    let max_secs = runs.iter().map(|r| r.seconds).fold(0.0_f64, f64::max);
    let max_bytes = runs.iter().filter_map(|r| r.bytes_added).max().unwrap_or(0);
    let _ = write!(
        s,
        "<text x=\"0\" y=\"14\" class=\"axis\">duration</text>\
         <text x=\"0\" y=\"28\" class=\"axis\">max {:.0} s</text>\
         <text x=\"0\" y=\"{}\" class=\"axis\">bytes added</text>\
         <text x=\"0\" y=\"{}\" class=\"axis\">max {}</text>\
         <text x=\"0\" y=\"{}\" class=\"axis\">verification</text>",
        max_secs,
        ROW + 14,
        ROW + 28,
        human_bytes(max_bytes),
        2 * ROW + 24,
    );
    for (i, r) in runs.iter().enumerate() {
        let x = LEFT + i * SLOT;
        let tip = format!(
            "{}: {} (exit {}), {:.1} s, {} added{}",
            r.started,
            r.result,
            r.exit_code,
            r.seconds,
            r.bytes_added.map_or_else(|| "nothing".into(), human_bytes),
            r.verify.as_ref().map_or_else(String::new, |v| format!(
                ", verification of {} file(s) {}",
                v.files,
                if v.ok { "passed" } else { "failed" }
            ))
        );
        let bar = |value: f64, max: f64, bottom: usize| {
            let h = if max > 0.0 {
                ((value / max) * (ROW - 8) as f64).round().max(1.0) as usize
            } else {
                1
            };
            (bottom - h, h)
        };
        let (y, h) = bar(r.seconds, max_secs, ROW);
        let _ = write!(
            s,
            "<g class=\"run\" data-result=\"{res}\"><title>{tip}</title>\
             <rect class=\"duration\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" \
             fill=\"{fill}\"/>",
            res = esc(&r.result),
            tip = esc(&tip),
            w = SLOT - 2,
            fill = colour(&r.result),
        );
        let (y, h) = bar(r.bytes_added.unwrap_or(0) as f64, max_bytes as f64, 2 * ROW);
        let _ = write!(
            s,
            "<rect class=\"bytes\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" \
             fill=\"#5c6bc0\"/>",
            w = SLOT - 2,
        );
        if let Some(v) = &r.verify {
            let _ = write!(
                s,
                "<circle class=\"verify\" data-ok=\"{ok}\" cx=\"{cx}\" cy=\"{cy}\" r=\"3\" \
                 fill=\"{fill}\"/>",
                ok = v.ok,
                cx = x + (SLOT - 2) / 2,
                cy = 2 * ROW + 20,
                fill = if v.ok { "#2e7d32" } else { "#c62828" },
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}
