//! A run (or shard) that had nothing to write never called Moodle, so a wrong or revoked token
//! would pass unnoticed and the run look complete. Proving the token costs one site-info call:
//! 60–140 ms of Moodle's PHP bootstrap on the lab, which was the whole cost of a no-change run
//! (the rest is ~20 ms). So the proof is remembered in the store, per Moodle endpoint and token
//! (`MoodleClient::identity`, a hash — never the token), and an idle run re-proves it only when
//! the last proof is older than `SYNC_TOKEN_RECHECK_SECS` (0: every idle run). A run that made
//! Moodle calls and finished without an error has proven it too. Any doubt (no row, another
//! token, unreadable row, clock gone backwards) means: call Moodle.
//!
//! The same holds for who the token belongs to (site info's user id and username, which the
//! sync needs to keep its hands off its own account): a token never changes owner and the
//! identity hash changes with the token, so a pass that re-reads entries which all turn out
//! unchanged (the overlap window of an incremental run) makes no Moodle call either.

use crate::ids::MoodleUserId;
use crate::moodle::site::SiteInfo;
use crate::moodle::{MoodleClient, MoodleError};
use crate::store::{tables, Entity, SharedStore};
use chrono::{DateTime, Utc};

const PARTITION: &str = "moodle";
const ROW: &str = "token-proven";
const SITE_ROW: &str = "site-info";

/// What an idle run did about the token.
#[derive(Debug, Clone, PartialEq)]
pub enum Proof {
    /// Site info answered just now.
    Checked,
    /// Proven at this time by an earlier run, within the re-check interval.
    Recent(DateTime<Utc>),
}

/// Prove the token unless a proof for this very token is younger than `recheck_secs`.
pub async fn prove_if_stale(
    store: &SharedStore,
    moodle: &MoodleClient,
    recheck_secs: u64,
    now: DateTime<Utc>,
) -> Result<Proof, MoodleError> {
    if recheck_secs > 0 {
        if let Some((_, at)) = fresh_row(store, ROW, &moodle.identity(), recheck_secs, now).await {
            return Ok(Proof::Recent(at));
        }
    }
    crate::moodle::site::site_info(moodle).await?;
    remember(store, moodle, now).await;
    Ok(Proof::Checked)
}

/// Record that `moodle`'s token worked at `now`. Best effort: a lost row only costs the next
/// idle run one site-info call.
pub async fn remember(store: &SharedStore, moodle: &MoodleClient, now: DateTime<Utc>) {
    let row = Entity::new(PARTITION, ROW)
        .with("identity", moodle.identity())
        .with("at", now.to_rfc3339());
    if let Err(e) = store.upsert(tables::CHECKPOINTS, &row).await {
        tracing::warn!(error = %e, "could not record the Moodle token proof; the next idle run checks again");
    }
}

/// The row `key` when it was written for this very token less than `recheck_secs` ago (a clock
/// gone backwards counts as stale), with the time it was written.
async fn fresh_row(
    store: &SharedStore,
    key: &str,
    identity: &str,
    recheck_secs: u64,
    now: DateTime<Utc>,
) -> Option<(Entity, DateTime<Utc>)> {
    let row = store
        .get(tables::CHECKPOINTS, PARTITION, key)
        .await
        .ok()??;
    if row.str("identity") != Some(identity) {
        return None;
    }
    let at = DateTime::parse_from_rfc3339(row.str("at")?)
        .ok()?
        .with_timezone(&Utc);
    let age = now - at;
    if age < chrono::Duration::zero()
        || age >= chrono::Duration::seconds(recheck_secs.min(i64::MAX as u64) as i64)
    {
        return None;
    }
    Some((row, at))
}

/// Site info for this token: from the store when read for this very token within
/// `recheck_secs`, else from Moodle (then remembered, with the token proof it also is).
pub async fn site_info(
    store: &SharedStore,
    moodle: &MoodleClient,
    recheck_secs: u64,
    now: DateTime<Utc>,
) -> Result<SiteInfo, MoodleError> {
    let identity = moodle.identity();
    if recheck_secs > 0 {
        if let Some(info) = remembered_site_info(store, &identity, recheck_secs, now).await {
            return Ok(info);
        }
    }
    let info = crate::moodle::site::site_info(moodle).await?;
    let row = Entity::new(PARTITION, SITE_ROW)
        .with("identity", identity)
        .with("at", now.to_rfc3339())
        .with("userid", info.userid.get())
        .with("username", info.username.clone())
        .with("userissiteadmin", info.userissiteadmin);
    if let Err(e) = store.upsert(tables::CHECKPOINTS, &row).await {
        tracing::warn!(error = %e, "could not record site info; the next pass reads it again");
    }
    remember(store, moodle, now).await;
    Ok(info)
}

async fn remembered_site_info(
    store: &SharedStore,
    identity: &str,
    recheck_secs: u64,
    now: DateTime<Utc>,
) -> Option<SiteInfo> {
    let (row, _) = fresh_row(store, SITE_ROW, identity, recheck_secs, now).await?;
    Some(SiteInfo {
        userid: MoodleUserId::new(row.int("userid")?).ok()?,
        username: row.str("username")?.to_string(),
        userissiteadmin: row.bool("userissiteadmin")?,
        siteid: None,
    })
}
