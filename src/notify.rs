//! Telling the outside world how a run went: the `[notify]` hooks by result, and a ping URL in
//! the style of healthchecks.io (`URL/start`, `URL`, `URL/fail`). Neither ever fails or blocks
//! a run beyond its time limit; the URL holds a token, so only its scheme and host are shown.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Which ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ping {
    /// The run starts.
    Start,
    /// It succeeded.
    Success,
    /// It failed, or was only partially done.
    Fail,
}

/// What became of a ping.
#[derive(Debug, Clone, Serialize)]
pub struct PingResult {
    /// Which one.
    pub ping: Ping,
    /// The URL's scheme and host (its path holds the check's token).
    pub to: String,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Why it did not get through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds it took.
    pub seconds: f64,
}

impl PingResult {
    /// Whether the server took it (2xx).
    #[must_use]
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// One line for a log.
    #[must_use]
    pub fn describe(&self) -> String {
        let ping = match self.ping {
            Ping::Start => "start",
            Ping::Success => "success",
            Ping::Fail => "fail",
        };
        match (self.status, &self.error) {
            (Some(s), _) => format!("{ping} ping to {} answered HTTP {s}", self.to),
            (None, Some(e)) => format!("{ping} ping to {} failed: {e}", self.to),
            (None, None) => format!("{ping} ping to {} failed", self.to),
        }
    }
}

/// `https://host:port/…`: what of a ping URL may be shown.
#[must_use]
pub fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}/…",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(malformed URL)".into(),
    }
}

/// Sends one ping (a POST; `body` is shown in the check's log), giving up after `timeout`.
#[must_use]
pub fn ping(url: &str, which: Ping, body: &str, timeout: Duration) -> PingResult {
    let started = Instant::now();
    let base = url.trim_end_matches('/');
    let full = match which {
        Ping::Start => format!("{base}/start"),
        Ping::Success => base.to_string(),
        Ping::Fail => format!("{base}/fail"),
    };
    let mut result = PingResult {
        ping: which,
        to: shown(url),
        status: None,
        error: None,
        seconds: 0.0,
    };
    let sent = crate::store::runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()
                .map_err(|e| e.to_string())?;
            let body = body.to_string();
            rt.block_on(async move {
                tokio::time::timeout(timeout, client.post(&full).body(body).send())
                    .await
                    .map_err(|_| format!("no answer within {}s", timeout.as_secs()))?
                    .map_err(|e| describe(&e))
            })
        });
    match sent {
        Ok(resp) => result.status = Some(resp.status().as_u16()),
        Err(e) => result.error = Some(e),
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

/// A reqwest error without its URL (which holds the token).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scheme_and_host_of_a_ping_url_are_shown() {
        assert_eq!(
            shown("https://hc-ping.com/0f5ee0a4-secret-uuid"),
            "https://hc-ping.com/…"
        );
        assert_eq!(shown("http://127.0.0.1:9/x"), "http://127.0.0.1:9/…");
    }
}
