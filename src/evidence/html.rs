//! The evidence as one self-contained HTML page: no script, font, image or style sheet from
//! elsewhere, so it opens from a USB stick or an e-mail as it was written. Problems first, in
//! words; then the matrix of clients and targets; then each client in detail with its run
//! history; then the erasures.

use std::fmt::Write;

use super::{ClientEvidence, Evidence, TargetEvidence, age, age_secs, chart, esc, what_erased};
use crate::{erasure::Certificate, report::human_bytes};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:80em}\
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}\
h3{font-size:1em}table{border-collapse:collapse;margin:.5em 0}\
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top;font-size:.9em}\
.meta{color:#555;font-size:.9em}ul.problems li{margin:.2em 0}\
.failed{background:#fbe3e3}.never{background:#eee}.lagging{background:#fff0cc}\
.stale{background:#fff8e1}.ok{background:#e6f4e6}.unused{background:#fafafa;color:#999}\
.met{background:#e6f4e6}.not-met{background:#fff0cc}.state{font-weight:bold}\
svg.history text.axis{font-size:10px;fill:#555}code{font-size:.95em}";

/// The page.
#[must_use]
pub fn render(ev: &Evidence) -> String {
    let mut s = String::new();
    let scope = if ev.one_client {
        ev.clients
            .first()
            .map_or_else(String::new, |c| c.name.clone())
    } else {
        "all clients".into()
    };
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>cairn backup evidence: {scope}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Backup evidence: {scope}</h1>\n<p class=\"meta\">Generated {gen} on {host} by cairn \
         {ver} from <code>{cfg}</code>. Everything here is what this machine recorded of its \
         runs, checks and erasures, and the operators' keys as the targets hold them.</p>\n",
        scope = esc(&scope),
        gen = esc(&ev.generated),
        host = esc(&ev.host),
        ver = esc(ev.version),
        cfg = esc(&ev.config),
    );
    problems(&mut s, ev);
    matrix(&mut s, ev);
    for c in &ev.clients {
        client(&mut s, c);
    }
    erasures(&mut s, &ev.erasures);
    let _ = write!(
        s,
        "<h2>How to read this</h2>\n<p class=\"meta\">A cell is <b>failed</b> when the \
         target's last sample verification or read check found damage; <b>never</b> when it \
         never received a complete snapshot; <b>lagging</b> when it missed backups; \
         <b>stale</b> when its last complete snapshot is older than {}\u{a0}h or its last \
         verified restore older than {}\u{a0}days; <b>ok</b> otherwise. 3-2-1-1-0: 3 copies \
         with a snapshot of the last {} days, on 2 kinds of storage, 1 off site, 1 offline or \
         immutable, 0 errors in the last verification.</p>\n</body>\n</html>\n",
        super::BACKUP_HOURS,
        super::VERIFY_DAYS,
        crate::rule::FRESH_DAYS,
    );
    s
}

fn problems(s: &mut String, ev: &Evidence) {
    let _ = writeln!(
        s,
        "<section id=\"problems\">\n<h2>Problems ({})</h2>",
        ev.problems.len()
    );
    if ev.problems.is_empty() {
        s.push_str("<p class=\"none\">No problems found.</p>\n");
    } else {
        s.push_str("<ul class=\"problems\">\n");
        for p in &ev.problems {
            let _ = writeln!(
                s,
                "<li class=\"problem\" data-client=\"{}\">{}</li>",
                esc(&p.client),
                esc(&p.text)
            );
        }
        s.push_str("</ul>\n");
    }
    s.push_str("</section>\n");
}

/// The targets of every client shown, in configuration order.
fn target_names(ev: &Evidence) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for t in ev.clients.iter().flat_map(|c| &c.targets) {
        if !names.contains(&t.name.as_str()) {
            names.push(&t.name);
        }
    }
    names
}

fn ago(at: Option<&str>, now: jiff::Timestamp) -> String {
    age_secs(at, now).map_or_else(|| "never".into(), |s| format!("{} ago", age(s)))
}

fn matrix(s: &mut String, ev: &Evidence) {
    let now = jiff::Timestamp::now();
    let names = target_names(ev);
    s.push_str(
        "<section id=\"matrix\">\n<h2>Clients and targets</h2>\n<table class=\"matrix\">\n\
         <thead><tr><th scope=\"col\">client</th>",
    );
    for n in &names {
        let _ = write!(s, "<th scope=\"col\">{}</th>", esc(n));
    }
    s.push_str("<th scope=\"col\">3-2-1-1-0</th></tr></thead>\n<tbody>\n");
    for c in &ev.clients {
        let _ = write!(
            s,
            "<tr data-client=\"{n}\"><th scope=\"row\">{n}</th>",
            n = esc(&c.name)
        );
        for name in &names {
            let Some(t) = c.targets.iter().find(|t| t.name == *name) else {
                let _ = write!(
                    s,
                    "<td class=\"cell unused\" data-client=\"{}\" data-target=\"{}\" \
                     data-state=\"unused\">not used</td>",
                    esc(&c.name),
                    esc(name)
                );
                continue;
            };
            let state = crate::report::label(t.state);
            let r = &t.recorded;
            let _ = write!(
                s,
                "<td class=\"cell {state}\" data-client=\"{}\" data-target=\"{}\" \
                 data-state=\"{state}\"><span class=\"state\">{state}</span><br>backup {}<br>\
                 verified {}",
                esc(&c.name),
                esc(name),
                ago(r.last_complete_at.as_deref(), now),
                ago(r.last_verify_at.as_deref(), now),
            );
            if r.lagging_backups > 0 {
                let _ = write!(s, "<br>{} missed", r.lagging_backups);
            }
            s.push_str("</td>");
        }
        let met = if c.rule.met { "met" } else { "not-met" };
        let _ = writeln!(
            s,
            "<td class=\"{met}\" data-rule=\"{met}\">{}</td></tr>",
            if c.rule.met { "met" } else { "not met" }
        );
    }
    s.push_str("</tbody>\n</table>\n</section>\n");
}

fn or_dash(v: Option<&str>) -> String {
    v.map_or_else(|| "-".into(), esc)
}

fn verify_cell(t: &TargetEvidence) -> String {
    let r = &t.recorded;
    let Some(at) = &r.last_verify_at else {
        return "never".into();
    };
    let result = match r.last_verify_ok {
        Some(true) => "passed",
        Some(false) => "FAILED",
        None => "?",
    };
    let sample = r
        .last_verify_sample
        .as_ref()
        .map(|s| format!(", {} file(s), seed {}", s.files, s.seed))
        .unwrap_or_default();
    format!("{} {}{}", result, esc(at), sample)
}

fn client(s: &mut String, c: &ClientEvidence) {
    let now = jiff::Timestamp::now();
    let _ = write!(
        s,
        "<section class=\"client\" id=\"client-{n}\">\n<h2>{n}</h2>\n<p>{}</p>\n",
        esc(&c.rule.line()),
        n = esc(&c.name)
    );
    if let Some((end, erase_on)) = &c.contract {
        let _ = writeln!(
            s,
            "<p>Contract ends {}; its backups are erased on {}.</p>",
            esc(end),
            esc(erase_on)
        );
    }
    match &c.last_run {
        Some(r) => {
            let _ = writeln!(
                s,
                "<p>Last run {} (exit {}, {:.1} s); last successful run {}.</p>",
                esc(&r.at),
                r.exit_code,
                r.millis as f64 / 1000.0,
                or_dash(r.last_success_at.as_deref())
            );
        }
        None => s.push_str("<p>No run recorded.</p>\n"),
    }
    s.push_str(
        "<table class=\"targets\">\n<thead><tr><th scope=\"col\">target</th>\
         <th scope=\"col\">kind</th><th scope=\"col\">region</th>\
         <th scope=\"col\">last complete backup</th><th scope=\"col\">lag</th>\
         <th scope=\"col\">bytes written</th><th scope=\"col\">last sample verification</th>\
         <th scope=\"col\">last read check</th><th scope=\"col\">last error</th></tr></thead>\n\
         <tbody>\n",
    );
    for t in &c.targets {
        let r = &t.recorded;
        let lag = if r.lagging_backups > 0 {
            format!(
                "{} backup(s) since {}",
                r.lagging_backups,
                or_dash(r.lagging_since.as_deref())
            )
        } else {
            "level".into()
        };
        let read = r.last_read_check.as_ref().map_or_else(
            || "never".into(),
            |k| {
                format!(
                    "{} of {} ({} file(s)): {}",
                    esc(&k.at),
                    esc(&k.share),
                    k.files,
                    if k.problems == 0 {
                        "clean".into()
                    } else {
                        format!("{} problem(s)", k.problems)
                    }
                )
            },
        );
        let _ = writeln!(
            s,
            "<tr data-target=\"{n}\" data-state=\"{state}\"><th scope=\"row\">{n}{req}</th>\
             <td>{kind}</td><td>{region}</td><td>{last} ({ago})</td><td>{lag}</td>\
             <td>{bytes}</td><td>{verify}</td><td>{read}</td><td>{err}</td></tr>",
            n = esc(&t.name),
            req = if t.required { "" } else { " (optional)" },
            state = crate::report::label(t.state),
            kind = esc(&t.kind),
            region = or_dash(t.region.as_deref()),
            last = or_dash(r.last_complete_at.as_deref()),
            ago = ago(r.last_complete_at.as_deref(), now),
            bytes = r.last_backup_bytes.map_or_else(|| "-".into(), human_bytes),
            verify = verify_cell(t),
            err = or_dash(r.last_error.as_deref()),
        );
    }
    s.push_str("</tbody>\n</table>\n");
    keys(s, c);
    let _ = writeln!(
        s,
        "<p class=\"audit\" data-verifies=\"{}\">Audit log: {} record(s); {}.</p>",
        c.audit.fault.is_none(),
        c.audit.records,
        c.audit.fault.as_ref().map_or_else(
            || "its chain verifies".to_string(),
            |f| format!("its chain does NOT verify: {}", esc(f))
        )
    );
    let _ = writeln!(s, "<h3>Last {} run(s)</h3>", c.history.len());
    if c.history.is_empty() {
        s.push_str("<p>No run recorded yet.</p>\n");
    } else {
        s.push_str(&chart::history(&c.name, &c.history));
        s.push('\n');
    }
    s.push_str("</section>\n");
}

fn keys(s: &mut String, c: &ClientEvidence) {
    s.push_str("<h3>Operators' keys</h3>\n");
    match &c.keys {
        Err(why) => {
            let _ = writeln!(s, "<p class=\"keys\">Keys {}.</p>", esc(why));
        }
        Ok(keys) => {
            s.push_str(
                "<table class=\"keys\">\n<thead><tr><th scope=\"col\">operator</th>\
                 <th scope=\"col\">host</th><th scope=\"col\">created</th>\
                 <th scope=\"col\">proven</th><th scope=\"col\">targets</th></tr></thead>\n\
                 <tbody>\n",
            );
            for k in keys {
                let _ = writeln!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&k.operator),
                    esc(&k.host),
                    esc(&k.created),
                    if k.removed {
                        "removal recorded"
                    } else if k.proven {
                        "yes"
                    } else {
                        "no (not written by cairn)"
                    },
                    esc(&k.targets.join(", "))
                );
            }
            s.push_str("</tbody>\n</table>\n");
        }
    }
}

fn erasures(s: &mut String, certs: &[Certificate]) {
    let _ = writeln!(
        s,
        "<section id=\"erasures\">\n<h2>Erasures ({})</h2>",
        certs.len()
    );
    if certs.is_empty() {
        s.push_str("<p>None.</p>\n</section>\n");
        return;
    }
    s.push_str(
        "<table class=\"erasures\">\n<thead><tr><th scope=\"col\">client</th>\
         <th scope=\"col\">what</th><th scope=\"col\">decided</th><th scope=\"col\">by</th>\
         <th scope=\"col\">reason</th><th scope=\"col\">targets</th><th scope=\"col\">state</th>\
         <th scope=\"col\">certificate</th></tr></thead>\n<tbody>\n",
    );
    for c in certs {
        let targets: Vec<String> = c
            .targets
            .iter()
            .map(|a| match &a.applied {
                Some(at) => format!("{}: done {}", esc(&a.target), esc(at)),
                None => format!("{}: pending", esc(&a.target)),
            })
            .collect();
        let state = if c.done.is_some() { "final" } else { "pending" };
        let _ = writeln!(
            s,
            "<tr data-client=\"{client}\" data-state=\"{state}\"><td>{client}</td><td>{what}</td>\
             <td>{decided}</td><td>{op}</td><td>{reason}</td><td>{targets}</td><td>{state}</td>\
             <td><code>{id}</code></td></tr>",
            client = esc(&c.repository),
            what = esc(&what_erased(c)),
            decided = esc(&c.decided),
            op = esc(&c.operator),
            reason = esc(&c.reason),
            targets = targets.join("<br>"),
            id = esc(&c.id),
        );
    }
    s.push_str("</tbody>\n</table>\n</section>\n");
}
