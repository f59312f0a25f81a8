//! Which Workflows URLs a channel may post to (the allow-list of the fixtures'
//! `allowed-hosts.md`, kept here in one place): https, no userinfo, no fragment, port 443, a DNS
//! name (no IP literal in any notation, no punycode, no trailing dot, no percent-encoding) on a
//! Workflows host with a trigger path. Retired Office 365 connector URLs are refused with how to
//! make a Workflows URL instead. Checked when a configuration is saved and again before each send.

use regex::Regex;
use std::sync::OnceLock;

pub const MIGRATE_HINT: &str = "Office 365 connector webhooks (*.webhook.office.com) are retired. \
In the channel, open ⋯ › Workflows, pick \"Post to a channel when a webhook request is received\", \
and paste the URL it gives (https://…environment.api.powerplatform.com/…)";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("not a URL")]
    Unparsable,
    #[error("only https URLs are accepted")]
    NotHttps,
    #[error("the URL must not carry a user name, password or fragment")]
    Userinfo,
    #[error("only the default https port is accepted")]
    Port,
    #[error("the host must be a DNS name, not an IP address")]
    IpLiteral,
    #[error(
        "the host is not written in plain ASCII (no punycode, percent-encoding or trailing dot)"
    )]
    HostSpelling,
    #[error("{MIGRATE_HINT}")]
    RetiredConnector,
    #[error("the host is not a Teams Workflows host")]
    HostNotAllowed,
    #[error("the path is not a Workflows trigger path")]
    Path,
}

struct Rule {
    host: Regex,
    path_prefix: &'static str,
}

fn rules() -> &'static [Rule; 2] {
    static R: OnceLock<[Rule; 2]> = OnceLock::new();
    R.get_or_init(|| {
        [
            Rule {
                host: Regex::new(
                    r"^(default)?[0-9a-f]{30}\.[0-9a-f]{2}\.environment\.api\.powerplatform\.com$",
                )
                .expect("constant"),
                path_prefix: "/powerautomate/automations/direct/workflows/",
            },
            Rule {
                host: Regex::new(r"^prod-[0-9]{1,3}\.[a-z0-9]+\.logic\.azure\.com$")
                    .expect("constant"),
                path_prefix: "/workflows/",
            },
        ]
    })
}

fn legacy_host(host: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    let r = R.get_or_init(|| Regex::new(r"^[a-z0-9-]+\.webhook\.office\.com$").expect("constant"));
    r.is_match(host) || host == "outlook.office.com" || host == "outlook.office365.com"
}

/// The authority of the raw text (between `//` and the next `/`, `?`, `#` or `\`), looked at
/// before parsing: the WHATWG parser decodes `%2E` in a host, which would hide the trick.
fn raw_authority(raw: &str) -> &str {
    let rest = raw.split_once("//").map(|(_, r)| r).unwrap_or(raw);
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    &rest[..end]
}

/// The parsed URL if a channel post may go there.
pub fn check(raw: &str) -> Result<url::Url, UrlRefusal> {
    let raw = raw.trim();
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UrlRefusal::Unparsable);
    }
    let u = url::Url::parse(raw).map_err(|_| UrlRefusal::Unparsable)?;
    let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
    // A retired connector gets the how-to message whatever else is wrong with it.
    if legacy_host(&host) {
        return Err(UrlRefusal::RetiredConnector);
    }
    if u.scheme() != "https" {
        return Err(UrlRefusal::NotHttps);
    }
    if !u.username().is_empty() || u.password().is_some() || u.fragment().is_some() {
        return Err(UrlRefusal::Userinfo);
    }
    if raw_authority(raw).contains('@') {
        return Err(UrlRefusal::Userinfo);
    }
    if u.port().is_some_and(|p| p != 443) {
        return Err(UrlRefusal::Port);
    }
    match u.host() {
        Some(url::Host::Domain(_)) => {}
        Some(_) => return Err(UrlRefusal::IpLiteral),
        None => return Err(UrlRefusal::Unparsable),
    }
    let authority = raw_authority(raw);
    if authority.contains('%')
        || !authority.is_ascii()
        || host.ends_with('.')
        || host.split('.').any(|l| l.starts_with("xn--"))
    {
        return Err(UrlRefusal::HostSpelling);
    }
    let rule = rules()
        .iter()
        .find(|r| r.host.is_match(&host))
        .ok_or(UrlRefusal::HostNotAllowed)?;
    if !u.path().starts_with(rule.path_prefix) {
        return Err(UrlRefusal::Path);
    }
    Ok(u)
}

/// What may be logged of a webhook URL: the host only (the query's `sig` is the credential).
pub fn loggable(u: &url::Url) -> String {
    u.host_str().unwrap_or("?").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_ENV: &str = "https://default0123456789abcdef0123456789abcd.ef.environment.api.powerplatform.com:443/powerautomate/automations/direct/workflows/0123456789abcdef0123456789abcdef/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=REDACTED";
    const GOOD_LOGIC: &str = "https://prod-27.westus.logic.azure.com:443/workflows/0123456789abcdef0123456789abcdef/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=REDACTED";

    #[test]
    fn the_fixture_examples_pass() {
        assert!(check(GOOD_ENV).is_ok());
        assert!(check(GOOD_LOGIC).is_ok());
    }

    #[test]
    fn every_rejected_url_of_the_fixture_list() {
        use UrlRefusal::*;
        let cases = [
            ("http://prod-27.westus.logic.azure.com/workflows/x", NotHttps),
            ("https://169.254.169.254/metadata/instance", IpLiteral),
            ("https://127.0.0.1/", IpLiteral),
            ("https://[::1]/", IpLiteral),
            ("https://[::ffff:127.0.0.1]/", IpLiteral),
            ("https://2130706433/", IpLiteral),
            ("https://0x7f000001/", IpLiteral),
            ("https://017700000001/", IpLiteral),
            ("https://127.1/", IpLiteral),
            ("https://localhost/", HostNotAllowed),
            ("https://localhost.localdomain/", HostNotAllowed),
            ("https://foo.internal/", HostNotAllowed),
            ("https://prod-27.westus.logic.azure.com@evil.example/workflows/x", Userinfo),
            ("https://user:pass@prod-27.westus.logic.azure.com/workflows/x", Userinfo),
            ("https://evil.example#@prod-27.westus.logic.azure.com/", Userinfo),
            ("https://evil.example\\@prod-27.westus.logic.azure.com/", HostNotAllowed),
            ("https://prod-27.westus.logic.azure.com.evil.example/workflows/x", HostNotAllowed),
            ("https://notlogic.azure.com/workflows/x", HostNotAllowed),
            ("https://evil-logic.azure.com/x", HostNotAllowed),
            ("https://prod-27.westus.xn--lgic-55d.azure.com/workflows/x", HostSpelling),
            ("https://prod-27.westus.lоgic.azure.com/workflows/x", HostSpelling),
            ("https://default0123456789abcdef0123456789abcd.ef.environment.api.xn--pwerplatform-4fk.com/x", HostSpelling),
            ("https://prod-27.westus.logic.azure.com./workflows/x", HostSpelling),
            ("https://prod-27.westus.logic%2Eazure.com/workflows/x", HostSpelling),
            ("https://prod-27.westus.logic.azure.com:8443/workflows/x", Port),
            ("https://prod-27.westus.logic.azure.com/other/path", Path),
            ("https://contoso.webhook.office.com/webhookb2/x", RetiredConnector),
            ("https://outlook.office.com/webhook/x", RetiredConnector),
            ("not a url", Unparsable),
        ];
        for (url, want) in cases {
            assert_eq!(check(url).map(|_| ()), Err(want.clone()), "{url}");
        }
        assert!(UrlRefusal::RetiredConnector
            .to_string()
            .contains("Workflows"));
    }
}
