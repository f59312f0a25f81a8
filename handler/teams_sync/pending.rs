//! Courses waiting for their team (no owner role holder, or none linked to Entra): one row per
//! course in `mappings` (partition [`PK`], row key = course id) with the reason and since when,
//! for the admin page ([`list`]) and the run report. Written only when a course becomes pending
//! or its reason changes, removed when its team is requested or it leaves the selection, so a
//! run where nothing changed writes nothing.

use crate::store::{tables, Entity, SharedStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

pub const PK: &str = "teams-pending";

/// One course waiting for its team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCourse {
    pub course_id: i64,
    /// The course's full name when it was found pending (for a list a person reads).
    pub course: String,
    pub reason: String,
    /// When a run first found the course pending (RFC 3339, UTC); kept while it stays pending.
    pub since: String,
}

impl PendingCourse {
    fn from_entity(e: &Entity) -> Option<Self> {
        Some(PendingCourse {
            course_id: e.row_key.parse().ok()?,
            course: e.str("course").unwrap_or_default().to_string(),
            reason: e.str("reason").unwrap_or_default().to_string(),
            since: e.str("since").unwrap_or_default().to_string(),
        })
    }

    fn to_entity(&self) -> Entity {
        Entity::new(PK, self.course_id.to_string())
            .with("course", self.course.as_str())
            .with("reason", self.reason.as_str())
            .with("since", self.since.as_str())
    }
}

/// Why a course waits, as the report and the store say it (English, like every run report). The
/// admin page shows them in French too ([`reason_fr`]); kept side by side so the two stay in step.
pub fn no_owner_role(owner_roles: &[String]) -> String {
    format!(
        "pending: nobody holds an owner role ({})",
        owner_roles.join(", ")
    )
}

pub fn owners_unlinked(owner_role_holders: usize) -> String {
    format!(
        "pending: none of the {owner_role_holders} owner(s) is linked to an Entra account; created on the first run after one is"
    )
}

pub const OWNER_UNLINKED_SINCE: &str =
    "pending: no owner linked to Entra any more; creation resumes when one is";

/// The French of a reason written by [`no_owner_role`], [`owners_unlinked`] or
/// [`OWNER_UNLINKED_SINCE`]; `None` for any other text (shown as stored).
pub fn reason_fr(reason: &str) -> Option<String> {
    if reason == OWNER_UNLINKED_SINCE {
        return Some(
            "en attente : plus aucun propriétaire lié à Entra ; la création reprend dès qu'il y en a un"
                .into(),
        );
    }
    if let Some(roles) = reason
        .strip_prefix("pending: nobody holds an owner role (")
        .and_then(|r| r.strip_suffix(')'))
    {
        return Some(format!(
            "en attente : personne n'a de rôle propriétaire ({roles})"
        ));
    }
    let n = reason.strip_prefix("pending: none of the ")?.strip_suffix(
        " owner(s) is linked to an Entra account; created on the first run after one is",
    )?;
    n.parse::<usize>().ok().map(|n| {
        format!(
            "en attente : aucun des {n} propriétaire(s) n'est lié à un compte Entra ; l'équipe sera créée au premier passage après qu'un le soit"
        )
    })
}

async fn read_all(store: &SharedStore) -> Result<Vec<PendingCourse>, StoreError> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = store
            .query(tables::MAPPINGS, PK, next.as_deref(), 1000)
            .await?;
        out.extend(page.entities.iter().filter_map(PendingCourse::from_entity));
        match page.next {
            Some(n) => next = Some(n),
            None => return Ok(out),
        }
    }
}

/// Every pending course, longest waiting first (the admin page's list).
pub async fn list(store: &SharedStore) -> Result<Vec<PendingCourse>, StoreError> {
    let mut v = read_all(store).await?;
    v.sort_by(|a, b| a.since.cmp(&b.since).then(a.course_id.cmp(&b.course_id)));
    Ok(v)
}

/// The pending rows as the run found them (read once per pass), kept up to date by the pass.
#[derive(Debug, Default)]
pub struct Known {
    rows: Mutex<BTreeMap<i64, PendingCourse>>,
}

impl Known {
    pub async fn load(store: &SharedStore) -> Result<Self, StoreError> {
        let rows = read_all(store)
            .await?
            .into_iter()
            .map(|p| (p.course_id, p))
            .collect();
        Ok(Known {
            rows: Mutex::new(rows),
        })
    }

    fn get(&self, course: i64) -> Option<PendingCourse> {
        self.rows
            .lock()
            .expect("pending rows")
            .get(&course)
            .cloned()
    }

    fn put(&self, p: PendingCourse) {
        self.rows
            .lock()
            .expect("pending rows")
            .insert(p.course_id, p);
    }

    fn take(&self, course: i64) -> Option<PendingCourse> {
        self.rows.lock().expect("pending rows").remove(&course)
    }
}

/// `course` is pending for `reason`: recorded (unless a simulation) and its `since` returned —
/// the first run's, when it was pending already.
pub async fn mark(
    store: &SharedStore,
    known: &Known,
    course: i64,
    name: &str,
    reason: &str,
    now: i64,
    simulate: bool,
) -> Result<String, StoreError> {
    let old = known.get(course);
    let since = old.as_ref().map(|p| p.since.clone()).unwrap_or_else(|| {
        chrono::DateTime::from_timestamp(now, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    let row = PendingCourse {
        course_id: course,
        course: name.to_string(),
        reason: reason.to_string(),
        since: since.clone(),
    };
    if old.as_ref() != Some(&row) && !simulate {
        store.upsert(tables::MAPPINGS, &row.to_entity()).await?;
        known.put(row);
    }
    Ok(since)
}

/// `course` is no longer pending (its team was requested).
pub async fn clear(store: &SharedStore, known: &Known, course: i64) -> Result<(), StoreError> {
    if known.take(course).is_some() {
        remove(store, course).await?;
    }
    Ok(())
}

async fn remove(store: &SharedStore, course: i64) -> Result<(), StoreError> {
    match store
        .delete(tables::MAPPINGS, PK, &course.to_string(), None)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// After a pass over every selected course: rows of courses no longer selected go.
pub async fn forget_others(
    store: &SharedStore,
    known: &Known,
    selected: &BTreeSet<i64>,
) -> Result<(), StoreError> {
    let stale: Vec<i64> = known
        .rows
        .lock()
        .expect("pending rows")
        .keys()
        .filter(|c| !selected.contains(c))
        .copied()
        .collect();
    for c in stale {
        known.take(c);
        remove(store, c).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_reason_written_has_its_french() {
        let roles = vec!["editingteacher".to_string(), "teacher".to_string()];
        assert_eq!(
            reason_fr(&no_owner_role(&roles)).as_deref(),
            Some("en attente : personne n'a de rôle propriétaire (editingteacher, teacher)")
        );
        assert!(reason_fr(&owners_unlinked(2))
            .unwrap()
            .starts_with("en attente : aucun des 2 propriétaire(s) n'est lié à un compte Entra"));
        assert!(reason_fr(OWNER_UNLINKED_SINCE).is_some());
        assert_eq!(reason_fr("something else"), None);
        assert_eq!(reason_fr("pending: none of the x owner(s) is linked to an Entra account; created on the first run after one is"), None);
    }

    #[tokio::test]
    async fn a_pending_course_keeps_its_first_date_and_goes_when_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(
            crate::store::sqlite::SqliteStore::open(&dir.path().join("s.sqlite")).unwrap(),
        );
        store.ensure_tables().await.unwrap();
        let known = Known::load(&store).await.unwrap();
        let t0 = 1_800_000_000;
        let s1 = mark(&store, &known, 7, "Maths", "no owner", t0, false)
            .await
            .unwrap();
        let s2 = mark(
            &store,
            &known,
            7,
            "Maths",
            "owner not linked",
            t0 + 3600,
            false,
        )
        .await
        .unwrap();
        assert_eq!(s1, s2, "since stays the first run's");
        mark(&store, &known, 9, "Physique", "no owner", t0 + 60, true)
            .await
            .unwrap();
        let l = list(&store).await.unwrap();
        assert_eq!(l.len(), 1, "a simulation records nothing: {l:?}");
        assert_eq!(
            (l[0].course_id, l[0].reason.as_str(), l[0].since.as_str()),
            (7, "owner not linked", "2027-01-15T08:00:00Z")
        );
        // Read back by a fresh pass: same row.
        let again = Known::load(&store).await.unwrap();
        assert_eq!(again.get(7), Some(l[0].clone()));
        clear(&store, &again, 7).await.unwrap();
        assert!(list(&store).await.unwrap().is_empty());
        mark(&store, &again, 8, "SVT", "no owner", t0, false)
            .await
            .unwrap();
        forget_others(&store, &again, &BTreeSet::from([1, 2]))
            .await
            .unwrap();
        assert!(list(&store).await.unwrap().is_empty());
    }
}
