//! Structured logs (JSON by default) through `tracing`; one span per invocation carries its id.

use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr: stdout is for command output (reports, settings lists).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Stderr behind the redactor: remote text is scrubbed where it enters an error, and this last
/// net catches whatever a log field quotes without going through one.
struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter
    }
}

struct LineWriter;

impl Write for LineWriter {
    /// The formatter hands over one whole event per call, so a secret is never split across two.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let clean = crate::redact::redact(&String::from_utf8_lossy(buf));
        std::io::stderr().lock().write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Longest value from outside (a token's `kid`, a remote error code, a URL) written to a log
/// line or an error message: a sender must not be able to write megabytes into the logs.
pub const LOGGED_VALUE_MAX: usize = 128;

/// `s` cut to [`LOGGED_VALUE_MAX`] characters; a cut value says how long it was.
pub fn capped(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(LOGGED_VALUE_MAX) {
        None => std::borrow::Cow::Borrowed(s),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}… ({} bytes)", &s[..end], s.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        assert_eq!(capped("kid-1"), "kid-1");
        let long = "é".repeat(300_000);
        let c = capped(&long);
        assert!(c.chars().count() < LOGGED_VALUE_MAX + 20, "{}", c.len());
        assert!(c.ends_with("(600000 bytes)"));
    }
}
