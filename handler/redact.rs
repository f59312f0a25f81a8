//! The one place that scrubs secrets from text that came back from a remote service (an error
//! body, a server diagnostic, an error's cause chain) before it goes into an error, a log line, a
//! report or the store. A proxy, WAF or debug page may echo the request, token included, so such
//! text is never trusted to be clean.
//!
//! Two nets: every configured secret's exact value (and its form/percent encodings, since an echo
//! of a form body carries the encoded bytes), registered by the settings loader at start; and
//! well-known token shapes (`wstoken=…`, `"access_token":"…"`, `Bearer …`, JWTs) for secrets the
//! process never configured, such as tokens it obtained at run time.

use regex::Regex;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock, RwLock};

/// What replaces a secret.
pub const MARK: &str = "[redacted]";

/// Secrets shorter than this are not matched by value (they would erase ordinary words); the
/// shape net still catches them after a `key=`.
const MIN_SECRET_CHARS: usize = 3;

/// Cap on remembered values, so a caller registering run-time tokens cannot grow it without bound.
const MAX_SECRETS: usize = 256;

static KNOWN: RwLock<Option<Arc<Vec<String>>>> = RwLock::new(None);

/// Remember a configured secret so it is redacted from every remote text from now on.
pub fn register(value: &str) {
    if value.chars().count() < MIN_SECRET_CHARS {
        return;
    }
    let mut forms = vec![value.to_string()];
    let form_encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    forms.push(form_encoded.clone());
    // `%20` rather than `+`: how a query string or a JSON-quoted URL would carry it.
    forms.push(form_encoded.replace('+', "%20"));
    if let Ok(json) = serde_json::to_string(value) {
        forms.push(json[1..json.len() - 1].to_string());
    }
    let mut guard = KNOWN.write().unwrap_or_else(|e| e.into_inner());
    let mut list: Vec<String> = guard.as_deref().cloned().unwrap_or_default();
    for f in forms {
        if !list.contains(&f) && list.len() < MAX_SECRETS {
            list.push(f);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    *guard = Some(Arc::new(list));
}

fn known() -> Arc<Vec<String>> {
    KNOWN
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

fn shapes() -> &'static [(Regex, &'static str)] {
    static SHAPES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let rx = |s: &str| Regex::new(s).expect("redaction pattern");
        vec![
            // key=value, key: value, "key":"value" for keys that name a credential.
            (
                rx(r#"(?i)\b([a-z_]*token|client_secret|secret|password|passwd|accountkey|sig|assertion)\b("?\s*[:=]\s*"?)[^&\s"',;<>]+"#),
                "${1}${2}[redacted]",
            ),
            (rx(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [redacted]"),
            // A JWT anywhere (header.payload.signature, base64url).
            (
                rx(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
                "[redacted-jwt]",
            ),
        ]
    })
}

/// `text` with every known secret and every token-shaped value replaced.
pub fn redact(text: &str) -> String {
    let mut out = Cow::Borrowed(text);
    for secret in known().iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MARK));
        }
    }
    for (re, with) in shapes() {
        if let Cow::Owned(s) = re.replace_all(&out, *with) {
            out = Cow::Owned(s);
        }
    }
    out.into_owned()
}

/// The first `max_chars` characters of a remote answer, redacted. Redaction runs on a window long
/// enough to hold any secret that starts inside the excerpt, so a secret cut by the truncation
/// is still recognised.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let longest = known().first().map_or(0, |s| s.chars().count());
    let window: String = text.chars().take(max_chars + longest.max(256)).collect();
    let clean = redact(&window);
    let mut head: String = clean.chars().take(max_chars).collect();
    if clean.chars().count() > max_chars || text.chars().count() > window.chars().count() {
        head.push('…');
    }
    head
}

/// An error and its causes, outermost first ("error sending request: client error (Connect): tcp
/// connect error: Connection refused"), redacted: the top message alone often hides the cause.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let msg = e.to_string();
        // Wrappers often repeat their source's text; keep each message once.
        if !msg.is_empty() && !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = e.source();
    }
    redact(&parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_secrets_are_removed_in_every_encoding() {
        register("tok+en/ré=1");
        let body = "wsfunction=x&wstoken=tok%2Ben%2Fr%C3%A9%3D1&raw=tok+en/ré=1";
        let out = redact(body);
        assert!(
            !out.contains("tok%2Ben") && !out.contains("tok+en"),
            "{out}"
        );
        assert!(out.contains("wsfunction=x"), "{out}");
    }

    #[test]
    fn token_shapes_are_removed_without_configuration() {
        let cases = [
            ("wstoken=abcdef0123&x=1", "abcdef0123"),
            (
                r#"{"access_token":"zzz.yyy.xxx","expires_in":3600}"#,
                "zzz.yyy",
            ),
            ("Authorization: Bearer qwertyuiop", "qwertyuiop"),
            ("client_secret=s3cr3t", "s3cr3t"),
            (
                "id eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl end",
                "eyJzdWIiOiIx",
            ),
        ];
        for (text, secret) in cases {
            let out = redact(text);
            assert!(!out.contains(secret), "{text} -> {out}");
            assert!(out.contains("[redacted"), "{text} -> {out}");
        }
        assert_eq!(
            redact("Invalid token - token not found"),
            "Invalid token - token not found"
        );
    }

    #[test]
    fn an_excerpt_never_keeps_the_start_of_a_cut_secret() {
        register("0123456789abcdefSECRET");
        let text = format!("{}0123456789abcdefSECRET and more", "x".repeat(70));
        let out = excerpt(&text, 80);
        assert!(!out.contains("0123456789"), "{out}");
        assert!(out.chars().count() <= 81, "{out}");
    }

    #[test]
    fn the_cause_chain_is_shown_once_per_message() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(error_chain(&Outer(io)), "error sending request: refused");
    }
}
