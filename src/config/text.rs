//! The configuration file as text: line numbers of keys and tables, and toml's errors in words
//! that name the line and key but never a secret's value.

/// Position helper: byte offsets to 1-based line numbers of the source text.
pub(crate) struct Source<'a> {
    pub(crate) text: &'a str,
}

impl Source<'_> {
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The bytes of the table whose header starts at `span`, up to the next header (toml's span
    /// of an array-of-tables entry may cover only its header).
    pub(crate) fn table(&self, span: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let start = span.start.min(self.text.len());
        let mut end = start;
        for (n, line) in self.text[start..].split_inclusive('\n').enumerate() {
            if n > 0 && line.trim_start().starts_with('[') {
                break;
            }
            end += line.len();
        }
        start..end
    }

    /// Where the table `[name]` starts (the file's start when it has no such header).
    pub(crate) fn header(&self, name: &str) -> std::ops::Range<usize> {
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            if line.trim() == format!("[{name}]") {
                return offset..offset + line.len();
            }
            offset += line.len();
        }
        0..0
    }

    /// The line of `key = ...` in the table whose header starts at `span` (its header's line
    /// when the key is not there).
    pub(crate) fn key_line(&self, span: std::ops::Range<usize>, key: &str) -> usize {
        let table = self.table(span);
        let mut offset = table.start;
        for line in self.text[table.clone()].split_inclusive('\n') {
            if line
                .trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
            {
                return self.line_of(offset);
            }
            offset += line.len();
        }
        self.line_of(table.start)
    }
}

/// An object store's endpoint must be `https://`; `http://` only when asked for by name (a test
/// server on loopback), and never with a SAS token, which would cross the wire in the URL.
pub(crate) fn check_endpoint(
    endpoint: &str,
    allow_http: bool,
    sas: bool,
) -> std::result::Result<(), String> {
    let lower = endpoint.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    if !lower.starts_with("http://") {
        return Err(format!("{endpoint:?} must start with https://"));
    }
    if sas {
        return Err("a SAS token is never sent over plain http://; use https://".into());
    }
    if !allow_http {
        return Err(
            "plain http:// sends the data's metadata and the credentials' signatures unencrypted; \
             use https://, or set allow_insecure_http = true (a test server on loopback)"
                .into(),
        );
    }
    Ok(())
}

/// Keys whose value is a secret reference: an error about them never repeats the value (it may
/// be a password pasted inline).
const SECRET_KEYS: [&str; 5] = [
    "password",
    "key",
    "sas",
    "access_key_id",
    "secret_access_key",
];

/// toml's error as `line N: [WHERE: ]what`, never repeating a secret's value.
pub(crate) fn describe_toml_error(e: &toml::de::Error, text: &str, place: &str) -> String {
    let at = e.span().map(|s| s.start.min(text.len()));
    let line = at.map(|a| text[..a].matches('\n').count() + 1);
    let msg = plain_words(e.message().trim());
    let msg = msg.as_str();
    // `[target]` where `[[target]]` was meant: serde sees a table where a list belongs.
    if e.message()
        .starts_with("invalid type: map, expected a sequence")
        && let Some(a) = at
        && text[text[..a].rfind('\n').map_or(0, |i| i + 1)..]
            .trim_start()
            .starts_with("[target]")
    {
        return format!(
            "line {}: {place}`[target]` must be written `[[target]]`: one such table per target",
            text[..a].matches('\n').count() + 1
        );
    }
    let key = at.and_then(|a| {
        let start = text[..a].rfind('\n').map_or(0, |i| i + 1);
        let (key, _) = text[start..].lines().next()?.split_once('=')?;
        Some(key.trim().trim_matches('"'))
    });
    match (line, key) {
        (Some(l), Some(key)) if SECRET_KEYS.contains(&key) => format!(
            "line {l}: {place}key `{key}`: not a valid secret reference (the value is not \
             shown); write `env:NAME`, `file:PATH` or `command:CMD` in quotes"
        ),
        // A value toml or serde refused: say whose.
        (Some(l), Some(key)) if !msg.contains(&format!("`{key}`")) => {
            format!("line {l}: {place}key `{key}`: {msg}")
        }
        (Some(l), _) => format!("line {l}: {place}{msg}"),
        _ => format!("{place}{msg}"),
    }
}

/// serde's words for a value of the wrong kind, in a user's words.
fn plain_words(msg: &str) -> String {
    msg.replace("expected usize", "expected a whole number of 0 or more")
        .replace("expected u64", "expected a whole number of 0 or more")
        .replace("expected u32", "expected a whole number of 0 or more")
        .replace("expected u16", "expected a whole number from 0 to 65535")
        .replace("expected a sequence", "expected a list `[...]`")
        .replace("invalid type: map", "a table")
}

/// Whether a ping URL is one cairn will POST to (http or https).
pub(crate) fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}
