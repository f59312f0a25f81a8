//! LDAP source (ldap3): ldap:// or ldaps://, optional StartTLS, simple bind, RFC 2696 paged search.

use super::{Entry, Query, ReadSummary, SourceError};
use crate::sync::filter::with_since;
use crate::sync::settings::LdapSettings;
use ldap3::adapters::PagedResults;
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use std::time::Duration;
use tokio::sync::mpsc;

/// Server diagnostics are remote text: scrubbed like every other (`crate::redact`).
fn err(e: impl std::fmt::Display) -> SourceError {
    SourceError::Ldap(crate::redact::redact(&e.to_string()))
}

pub async fn connect(s: &LdapSettings) -> Result<ldap3::Ldap, SourceError> {
    let settings = LdapConnSettings::new()
        .set_conn_timeout(Duration::from_secs(s.timeout_secs))
        .set_starttls(s.starttls)
        .set_no_tls_verify(s.no_tls_verify);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &s.url)
        .await
        .map_err(err)?;
    ldap3::drive!(conn);
    ldap.with_timeout(Duration::from_secs(s.timeout_secs));
    if let (Some(dn), Some(pw)) = (&s.bind_dn, &s.bind_password) {
        // The error text of a failed bind never includes the password (ldap3 does not echo it).
        ldap.simple_bind(dn, pw.expose())
            .await
            .map_err(err)?
            .success()
            .map_err(|e| err(format!("bind as {dn}: {e}")))?;
    }
    Ok(ldap)
}

pub async fn read(
    s: &LdapSettings,
    q: &Query,
    tx: mpsc::Sender<Entry>,
) -> Result<ReadSummary, SourceError> {
    let mut ldap = connect(s).await?;
    let filter = with_since(&q.filter, q.since.as_deref());
    let mut stream = ldap
        .streaming_search_with(
            PagedResults::new(s.page_size),
            &q.base,
            Scope::Subtree,
            &filter,
            q.attrs.clone(),
        )
        .await
        .map_err(err)?;
    let mut summary = ReadSummary::default();
    while let Some(re) = stream.next().await.map_err(err)? {
        let se = SearchEntry::construct(re);
        let mut e = Entry::new(se.dn);
        for (k, vs) in se.attrs {
            for v in vs {
                e.push(&k, v);
            }
        }
        summary.entries += 1;
        if tx.send(e).await.is_err() {
            // The consumer stopped: abandon the search, report a partial read.
            let _ = stream.finish().await;
            return Err(SourceError::Ldap("read stopped by the consumer".into()));
        }
    }
    let res = stream.finish().await;
    res.success()
        .map_err(|e| err(format!("search {filter} under {}: {e}", q.base)))?;
    summary.requests = summary.entries / s.page_size.max(1) as u64 + 1;
    let _ = ldap.unbind().await;
    Ok(summary)
}
