//! Optional profile photos (`ENTRA_SYNC_PHOTO`): Entra's photo of a user becomes their Moodle
//! picture. Graph's `/users/delta` never reports a photo change, so photos are looked at for the
//! users a run creates or newly links, and for linked users whose last look is older than
//! `ENTRA_PHOTO_RECHECK_HOURS`. A look is the photo's metadata (`GET /users/{id}/photo`, through
//! `$batch`, 20 per envelope); the photo itself (`GET /users/{id}/photo/$value`) is downloaded
//! only when its `@odata.mediaEtag` differs from the one stored on the link row (without an etag:
//! downloaded, and its SHA-256 compared), and uploaded to Moodle (draft area, then
//! `core_user_update_picture`) only when it changed.
//!
//! Kept on the link row (`mappings`, `entra-user/<id>`): `photo_etag` (the etag, `sha256:<hex>`,
//! or empty for "no photo") and `photo_checked_at` (Unix seconds); rows written before photos
//! existed have neither and count as never checked. The earliest next re-check sits in the
//! `checkpoints` row `entra/photos-next-due`, so a run with nothing due reads neither Graph nor
//! the link rows: a no-change run stays one Graph call.
//!
//! A photo that fails (Graph, Moodle) is an issue line and is retried next run; it never fails the
//! user's other updates or the run. A photo above [`MAX_PHOTO_BYTES`], or that is not a JPEG, PNG
//! or GIF (what Moodle's `optimised_image` type takes), is refused with its reason and not fetched
//! again until its etag changes. `--simulate` reads no photo and writes nothing: it counts the
//! photos the run would look at.
//!
//! Graph's shapes here are unconfirmed by a recording (no fixture holds them): Microsoft Learn
//! "Get profilePhoto" documents the metadata (`@odata.mediaContentType`, `@odata.mediaEtag`,
//! `id`, `width`, `height`) and a 404 for a user without a photo (error code `ImageNotFound`
//! today, `ErrorItemNotFound` in older answers): any 404 is read as "no photo", whatever its code.

use super::plan::{self, LinkRow};
use super::{EntraError, EntraPass, RunState, CHECKPOINT_PARTITION};
use crate::bot::mapping::ENTRA_USER_PARTITION;
use crate::graph::{BatchRequest, GraphError};
use crate::ids::MoodleUserId;
use crate::moodle::{pictures, MoodleError};
use crate::store::{key_escape, tables, BatchOp, Entity, StoreError};
use crate::sync::report::{EntityKind, EntraSummary, PhotoSummary, RunReport};

/// The photo step's entity in run reports.
pub const ENTITY: EntityKind = EntityKind::EntraPhotos;
/// Largest photo downloaded (Entra stores up to 4 MB; Microsoft 365 sizes are far below).
pub const MAX_PHOTO_BYTES: usize = 4 * 1024 * 1024;
pub(super) const ETAG_PROP: &str = "photo_etag";
pub(super) const CHECKED_PROP: &str = "photo_checked_at";
const DUE_ROW: &str = "photos-next-due";
/// Linked users re-checked per round of `$batch` envelopes (5 × 20).
const RECHECK_CHUNK: usize = 100;

/// A user whose photo is looked at.
pub(super) struct Candidate {
    pub key: String,
    pub moodle_id: MoodleUserId,
    /// `photo_etag` of the link row (None: never checked).
    pub stored: Option<String>,
}

enum Outcome {
    /// Uploaded; the identity to store.
    Updated(String),
    Unchanged(String),
    None,
    /// Not uploaded until the photo changes (identity when known), and why.
    Refused(Option<String>, String),
    /// Retried next run.
    Failed(String),
}

/// The image types Moodle makes pictures of, by their first bytes (a `Content-Type` alone can lie).
fn sniff(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", "jpg"))
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", "png"))
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(("image/gif", "gif"))
    } else {
        None
    }
}

fn image_type(content_type: &str) -> bool {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        t.as_str(),
        "image/jpeg" | "image/jpg" | "image/pjpeg" | "image/png" | "image/gif"
    )
}

fn sha256_id(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A Moodle answer that every further upload would get too (configuration, not this photo).
fn stops_photos(e: &MoodleError) -> bool {
    e.is_fatal() || matches!(e, MoodleError::MissingCapability(_))
}

impl EntraPass<'_> {
    fn period_secs(&self) -> i64 {
        (self.settings().photo_recheck_hours as i64).saturating_mul(3600)
    }

    /// Looks at the photos of `cands` and brings Moodle's pictures in step.
    pub(super) async fn photos(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
        sum: &mut EntraSummary,
        cands: Vec<Candidate>,
    ) -> Result<(), EntraError> {
        if cands.is_empty() {
            return Ok(());
        }
        for c in &cands {
            st.photo_done.insert(c.key.clone());
        }
        let p = sum.photos.get_or_insert_with(PhotoSummary::default);
        p.checked += cands.len() as u64;
        report.counts(ENTITY);
        if self.opts.simulate {
            p.updated += cands.len() as u64;
            report.counts(ENTITY).updated += cands.len() as u64;
            for c in &cands {
                report.trace(|| format!("{ENTITY} {}: would look at the photo", c.key));
            }
            return Ok(());
        }
        let requests: Vec<BatchRequest> = cands
            .iter()
            .enumerate()
            .map(|(i, c)| {
                BatchRequest::get(
                    i.to_string(),
                    format!(
                        "/users/{}/photo",
                        crate::bot::connector::encode_segment(&c.key)
                    ),
                )
            })
            .collect();
        let before = self.graph().stats().requests;
        let answers = self.graph().batch(requests).await;
        self.count_graph(report, "POST /$batch (GET /users/{id}/photo)", before);
        let mut stop: Option<String> = match &answers {
            Err(e) => Some(format!("reading photo metadata: {e}")),
            Ok(_) => None,
        };
        let answers = answers.unwrap_or_default();
        let mut rows: Vec<(String, Option<String>)> = Vec::new();
        for (i, c) in cands.iter().enumerate() {
            let outcome = match (&stop, answers.get(i)) {
                (Some(why), _) => Outcome::Failed(why.clone()),
                (None, None) => Outcome::Failed("no answer for the photo metadata".into()),
                (None, Some((_, meta))) => self.one_photo(c, meta, &mut stop, report).await,
            };
            let p = sum.photos.get_or_insert_with(PhotoSummary::default);
            match outcome {
                Outcome::Updated(id) => {
                    p.updated += 1;
                    report.counts(ENTITY).updated += 1;
                    report.trace(|| format!("{ENTITY} {}: picture set in Moodle", c.key));
                    rows.push((c.key.clone(), Some(id)));
                }
                Outcome::Unchanged(id) => {
                    p.unchanged += 1;
                    report.counts(ENTITY).unchanged += 1;
                    rows.push((c.key.clone(), Some(id)));
                }
                Outcome::None => {
                    p.none += 1;
                    // Not an issue: most users have no photo. Counted apart in the summary.
                    report.counts(ENTITY).skipped += 1;
                    report.trace(|| format!("{ENTITY} {}: no photo in Entra", c.key));
                    rows.push((c.key.clone(), Some(String::new())));
                }
                Outcome::Refused(id, why) => {
                    p.refused += 1;
                    report.counts(ENTITY).skipped += 1;
                    report.issue(ENTITY, &c.key, "refused", why);
                    // Without an identity the next look downloads it again (after the period).
                    rows.push((c.key.clone(), id.or_else(|| c.stored.clone())));
                }
                Outcome::Failed(why) => {
                    p.failed += 1;
                    report.counts(ENTITY).failed += 1;
                    // Not `report.failed`: that would put the user in the retry set and re-read
                    // them; a photo is retried by the next run's re-check instead.
                    report.issue(ENTITY, &c.key, "failed", why);
                    st.photo_failed = true;
                }
            }
        }
        if let Some(why) = stop {
            report
                .warnings
                .push(format!("entra photos: stopped for this run: {why}"));
        }
        self.save_photo_rows(&rows).await?;
        Ok(())
    }

    /// One user's photo, from its metadata answer.
    async fn one_photo(
        &self,
        c: &Candidate,
        meta: &Result<crate::graph::BatchAnswer, GraphError>,
        stop: &mut Option<String>,
        report: &mut RunReport,
    ) -> Outcome {
        let body = match meta {
            Ok(a) => &a.body,
            Err(GraphError::NotFound { .. }) => return Outcome::None,
            Err(e) => {
                if e.is_fatal() {
                    *stop = Some(e.to_string());
                }
                return Outcome::Failed(format!("photo metadata: {e}"));
            }
        };
        let etag = body["@odata.mediaEtag"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        // The same photo as last look (copied then, or refused then): nothing to do.
        if etag.is_some() && etag == c.stored {
            return Outcome::Unchanged(etag.unwrap_or_default());
        }
        if let Some(t) = body["@odata.mediaContentType"].as_str() {
            if !image_type(t) {
                return Outcome::Refused(
                    etag,
                    format!("the Entra photo is {t:?}, not a JPEG, PNG or GIF image: not copied"),
                );
            }
        }
        let path = format!(
            "/users/{}/photo/$value",
            crate::bot::connector::encode_segment(&c.key)
        );
        let before = self.graph().stats().requests;
        let got = self.graph().get_bytes(&path, MAX_PHOTO_BYTES).await;
        self.count_graph(report, "GET /users/{id}/photo/$value", before);
        let photo = match got {
            Ok(b) => b,
            Err(GraphError::NotFound { .. }) => return Outcome::None,
            Err(GraphError::TooLarge { size, .. }) => {
                return Outcome::Refused(
                    etag,
                    format!(
                        "the Entra photo is {} the {} MiB cap: not copied",
                        size.map(|s| format!("{s} bytes, above"))
                            .unwrap_or_else(|| "above".into()),
                        MAX_PHOTO_BYTES / (1024 * 1024)
                    ),
                )
            }
            Err(e) => {
                if e.is_fatal() {
                    *stop = Some(e.to_string());
                }
                return Outcome::Failed(format!("photo download: {e}"));
            }
        };
        let Some((mime, ext)) = sniff(&photo.bytes) else {
            return Outcome::Refused(
                etag,
                format!(
                    "the Entra photo ({} bytes, Content-Type {:?}) is not a JPEG, PNG or GIF image: not copied",
                    photo.bytes.len(),
                    photo.content_type.as_deref().unwrap_or("none")
                ),
            );
        };
        let id = etag.unwrap_or_else(|| sha256_id(&photo.bytes));
        if c.stored.as_deref() == Some(id.as_str()) {
            return Outcome::Unchanged(id);
        }
        let filename = format!("entra-photo.{ext}");
        let set = async {
            let item = pictures::upload_draft(self.moodle, &filename, mime, &photo.bytes).await?;
            pictures::set_picture(self.moodle, c.moodle_id, item).await
        };
        match set.await {
            Ok(()) => Outcome::Updated(id),
            Err(e) => {
                if stops_photos(&e) {
                    *stop = Some(e.to_string());
                }
                Outcome::Failed(format!("Moodle picture (id {}): {e}", c.moodle_id))
            }
        }
    }

    /// Writes what was looked at to the link rows (other properties as they are).
    async fn save_photo_rows(&self, rows: &[(String, Option<String>)]) -> Result<(), StoreError> {
        let now = now_secs();
        for chunk in rows.chunks(crate::store::MAX_BATCH) {
            let mut ops = Vec::new();
            for (key, id) in chunk {
                let Some(mut e) = self
                    .store
                    .get(tables::MAPPINGS, ENTRA_USER_PARTITION, &key_escape(key))
                    .await?
                else {
                    continue;
                };
                if let Some(id) = id {
                    e.set(ETAG_PROP, id.as_str());
                }
                e.set(CHECKED_PROP, now);
                ops.push(BatchOp::Upsert(e));
            }
            if !ops.is_empty() {
                self.store
                    .batch(tables::MAPPINGS, ENTRA_USER_PARTITION, ops)
                    .await?;
            }
        }
        Ok(())
    }

    /// End of a round: re-check the linked users whose last look is older than the period (all
    /// of them with `--force`), unless the stored next due time says none is.
    pub(super) async fn photo_recheck(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
        sum: &mut EntraSummary,
    ) -> Result<(), EntraError> {
        if !self.settings().photo {
            return Ok(());
        }
        let now = now_secs();
        let period = self.period_secs();
        let due_row = self
            .store
            .get(tables::CHECKPOINTS, CHECKPOINT_PARTITION, DUE_ROW)
            .await?;
        let next_due = due_row.as_ref().and_then(|e| e.int("next_due"));
        if !self.opts.force && next_due.is_some_and(|d| now < d) {
            return Ok(());
        }
        let mut due: Vec<Candidate> = Vec::new();
        let mut earliest = now.saturating_add(period);
        let mut next: Option<String> = None;
        loop {
            let page = self
                .store
                .query(
                    tables::MAPPINGS,
                    ENTRA_USER_PARTITION,
                    next.as_deref(),
                    1000,
                )
                .await?;
            for e in &page.entities {
                let key = e.row_key.to_ascii_lowercase();
                let Some(row) = super::link_row(e) else {
                    continue;
                };
                if row.suspended || st.photo_done.contains(&key) {
                    continue;
                }
                match e.int(CHECKED_PROP) {
                    Some(at) if !self.opts.force && at.saturating_add(period) > now => {
                        earliest = earliest.min(at.saturating_add(period));
                    }
                    _ => due.push(candidate(&key, &row, e)),
                }
            }
            next = page.next;
            if next.is_none() {
                break;
            }
        }
        if !due.is_empty() {
            report.trace(|| format!("{ENTITY}: re-checking {} linked users' photos", due.len()));
            sum.photos
                .get_or_insert_with(PhotoSummary::default)
                .rechecked += due.len() as u64;
        }
        while !due.is_empty() {
            let rest = due.split_off(due.len().min(RECHECK_CHUNK));
            let chunk = std::mem::replace(&mut due, rest);
            self.photos(st, report, sum, chunk).await?;
        }
        if self.opts.simulate {
            return Ok(());
        }
        // A failed photo is looked at again next run.
        let next_due = if st.photo_failed { now } else { earliest };
        let e = Entity::new(CHECKPOINT_PARTITION, DUE_ROW)
            .with("next_due", next_due)
            .with("updated_at", chrono::Utc::now().to_rfc3339());
        self.store.upsert(tables::CHECKPOINTS, &e).await?;
        Ok(())
    }

    /// The photos of the users this batch created or newly linked (`rows`: key, Moodle id, decision).
    pub(super) async fn new_photos(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
        sum: &mut EntraSummary,
        rows: &[(String, MoodleUserId, &plan::Decision)],
    ) -> Result<(), EntraError> {
        if !self.settings().photo {
            return Ok(());
        }
        let mut cands: Vec<Candidate> = rows
            .iter()
            .filter(|(_, _, d)| d.create.is_some() || (d.new_link && !d.suspend))
            .map(|(key, id, _)| Candidate {
                key: key.clone(),
                moodle_id: *id,
                stored: None,
            })
            .collect();
        while !cands.is_empty() {
            let rest = cands.split_off(cands.len().min(RECHECK_CHUNK));
            let chunk = std::mem::replace(&mut cands, rest);
            self.photos(st, report, sum, chunk).await?;
        }
        Ok(())
    }

    /// Simulation: the photos the batch's creates and new links would have looked at.
    pub(super) fn simulated_photos(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
        sum: &mut EntraSummary,
        keys: Vec<String>,
    ) {
        if !self.settings().photo || keys.is_empty() {
            return;
        }
        let p = sum.photos.get_or_insert_with(PhotoSummary::default);
        p.checked += keys.len() as u64;
        p.updated += keys.len() as u64;
        report.counts(ENTITY).updated += keys.len() as u64;
        for k in keys {
            report.trace(|| format!("{ENTITY} {k}: would look at the photo"));
            st.photo_done.insert(k);
        }
    }
}

fn candidate(key: &str, row: &LinkRow, e: &Entity) -> Candidate {
    Candidate {
        key: key.to_string(),
        moodle_id: row.moodle_id,
        stored: e.str(ETAG_PROP).map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_images_moodle_takes_pass() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).unwrap().0,
            "image/jpeg"
        );
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").unwrap().1, "png");
        assert_eq!(sniff(b"GIF89a..").unwrap().1, "gif");
        assert!(sniff(b"<html>").is_none() && sniff(b"").is_none());
        assert!(image_type("image/jpeg") && image_type("Image/PNG; q=1"));
        assert!(!image_type("text/html") && !image_type("image/svg+xml"));
        assert_eq!(sha256_id(b"").len(), "sha256:".len() + 64);
    }
}
