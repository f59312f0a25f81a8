//! Where people come from: the directory (LDAP) or an export file, and how to reach the directory.

use crate::config::{Secret, Source};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Ldap,
    Ldif(PathBuf),
    Csv(PathBuf),
}

#[derive(Debug, Clone)]
pub struct LdapSettings {
    pub url: String,
    pub starttls: bool,
    pub no_tls_verify: bool,
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    pub page_size: i32,
    pub timeout_secs: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Ldap,
    Ldif,
    Csv,
}

pub(super) fn load_kind(src: &mut Source) -> SourceKind {
    let kind = src
        .choice(
            "SYNC_SOURCE",
            "ldap",
            &[
                ("ldap", Kind::Ldap),
                ("ldif", Kind::Ldif),
                ("csv", Kind::Csv),
            ],
            "where people come from: ldap, ldif or csv (an export file)",
        )
        .unwrap_or(Kind::Ldap);
    let file = src.opt(
        "SYNC_SOURCE_FILE",
        "path of the LDIF or CSV export when SYNC_SOURCE is ldif or csv",
    );
    match (kind, file) {
        (Kind::Ldap, _) => SourceKind::Ldap,
        (Kind::Ldif, Some(f)) => SourceKind::Ldif(f.into()),
        (Kind::Csv, Some(f)) => SourceKind::Csv(f.into()),
        (Kind::Ldif | Kind::Csv, None) => {
            let name = if matches!(kind, Kind::Ldif) {
                "ldif"
            } else {
                "csv"
            };
            src.problem(format!(
                "SYNC_SOURCE_FILE: required when SYNC_SOURCE={name}"
            ));
            SourceKind::Ldap
        }
    }
}

pub(super) fn load_ldap(src: &mut Source, source: &SourceKind) -> LdapSettings {
    let url = src.string(
        "LDAP_URL",
        "ldap://127.0.0.1:389",
        "ENT directory URL, ldap:// or ldaps://",
    );
    if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
        src.problem(format!(
            "LDAP_URL: {url:?} must start with ldap:// or ldaps://"
        ));
    }
    let starttls = src.flag(
        "LDAP_STARTTLS",
        false,
        "upgrade an ldap:// connection with StartTLS",
    );
    if starttls && url.starts_with("ldaps://") {
        src.problem("LDAP_STARTTLS: not with ldaps:// (already TLS)");
    }
    let no_tls_verify = src.flag(
        "LDAP_TLS_NO_VERIFY",
        false,
        "accept any LDAP server certificate (tests only)",
    );
    let bind_dn = src.opt(
        "LDAP_BIND_DN",
        "DN the sync binds as (anonymous when empty)",
    );
    let bind_password = src.secret("LDAP_BIND_PASSWORD", "password of LDAP_BIND_DN");
    if bind_dn.is_some() && bind_password.is_none() {
        src.problem("LDAP_BIND_PASSWORD: required when LDAP_BIND_DN is set");
    }
    let allow_insecure = src.flag(
        "LDAP_ALLOW_INSECURE",
        false,
        "accept ldap:// without LDAP_STARTTLS to another host: the bind password then crosses the network in clear text",
    );
    if matches!(source, SourceKind::Ldap)
        && bind_password.is_some()
        && url.starts_with("ldap://")
        && !starttls
        && !allow_insecure
    {
        let host = url::Url::parse(&url).ok();
        let host = host.as_ref().and_then(|u| u.host());
        if !host.as_ref().is_some_and(crate::config::is_loopback_host) {
            src.problem(format!(
                "LDAP_URL: ldap:// without StartTLS would send LDAP_BIND_PASSWORD in clear text to {}; \
                 use ldaps:// or LDAP_STARTTLS=true, or set LDAP_ALLOW_INSECURE=true if the network path is trusted",
                host.map_or_else(|| "?".to_string(), |h| h.to_string())
            ));
        }
    }
    let page_size = src.parse(
        "LDAP_PAGE_SIZE",
        500i32,
        "entries per page of a paged search (RFC 2696)",
    );
    if page_size < 1 {
        src.problem("LDAP_PAGE_SIZE: at least 1");
    }
    let timeout_secs = src.parse(
        "LDAP_TIMEOUT_SECS",
        30u64,
        "LDAP connect and operation timeout",
    );
    LdapSettings {
        url,
        starttls,
        no_tls_verify,
        bind_dn,
        bind_password,
        page_size,
        timeout_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::super::problems;

    #[test]
    fn a_bind_password_over_clear_ldap_to_another_host_is_refused_unless_allowed() {
        let bind = [
            ("LDAP_BIND_DN", "cn=sync,dc=ent"),
            ("LDAP_BIND_PASSWORD", "pw-very-secret"),
        ];
        let with = |url: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![("LDAP_URL", url)];
            pairs.extend_from_slice(&bind);
            pairs.extend_from_slice(extra);
            problems(&pairs)
        };
        let refused = with("ldap://ldap.example.org:389", &[]).join("\n");
        assert!(
            refused.contains("LDAP_URL")
                && refused.contains("clear text")
                && refused.contains("LDAP_ALLOW_INSECURE=true"),
            "{refused}"
        );
        assert!(!refused.contains("pw-very-secret"), "{refused}");
        for (url, extra) in [
            ("ldaps://ldap.example.org", &[][..]),
            ("ldap://ldap.example.org", &[("LDAP_STARTTLS", "true")][..]),
            (
                "ldap://ldap.example.org",
                &[("LDAP_ALLOW_INSECURE", "true")][..],
            ),
            ("ldap://127.0.0.1:3389", &[][..]),
            ("ldap://localhost", &[][..]),
            ("ldap://[::1]:389", &[][..]),
            // An export file is read instead: the password never travels.
            (
                "ldap://ldap.example.org",
                &[("SYNC_SOURCE", "csv"), ("SYNC_SOURCE_FILE", "p.csv")][..],
            ),
        ] {
            assert!(
                with(url, extra).is_empty(),
                "{url} {extra:?}: {:?}",
                with(url, extra)
            );
        }
        // Anonymous bind: nothing secret travels.
        assert!(problems(&[("LDAP_URL", "ldap://ldap.example.org")]).is_empty());
    }
}
