//! Batched writes. Batches are sized by form fields (PHP `max_input_vars` silently truncates a
//! large form and fails the whole call) and item count. Moodle rolls back a whole batch when
//! one item is bad, so a batch failing with an item-specific error is split in halves until the
//! bad entries are isolated and reported, while the good ones land. Calls whose items come back
//! with per-item warnings (user updates and suspensions, cohort members) report those items.
//!
//! The writers here apply a plan (`sync::plan`) and nothing else decides: a simulation never
//! reaches them.

use super::entity::EntityKind;
use super::report::RunReport;
use crate::ids::{MoodleCohortId, MoodleUserId};
use crate::moodle::roles::{self, Assignment};
use crate::moodle::{cohorts, users, MoodleClient, MoodleError};
use futures::stream::{self, StreamExt};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::Range;

/// Consecutive ranges whose summed field counts stay within `budget` and length within `max_items`.
pub fn chunks(sizes: &[usize], budget: usize, max_items: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut fields = 0;
    for (i, s) in sizes.iter().enumerate() {
        if i > start && (fields + s > budget || i - start >= max_items.max(1)) {
            out.push(start..i);
            start = i;
            fields = 0;
        }
        fields += s;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// What happened to each item of an all-or-nothing write.
#[derive(Debug)]
pub struct Outcome<R> {
    /// (index in the input, result for that item)
    pub ok: Vec<(usize, R)>,
    pub failed: Vec<(usize, String)>,
    pub calls: u64,
}

/// Apply `call` to `items` (already sized to fit one call); split on item-specific failures.
/// `call` gets a group of items and returns one result per item, in order. Fatal and
/// non-item-specific errors (token, capability, transport after retries) stop everything.
pub async fn bisect<I, R, F, Fut>(
    items: Vec<(usize, I)>,
    call: F,
) -> Result<Outcome<R>, MoodleError>
where
    I: Clone,
    F: Fn(Vec<I>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, MoodleError>>,
{
    let mut out = Outcome {
        ok: Vec::new(),
        failed: Vec::new(),
        calls: 0,
    };
    let mut stack = vec![items];
    while let Some(group) = stack.pop() {
        if group.is_empty() {
            continue;
        }
        out.calls += 1;
        let payload: Vec<I> = group.iter().map(|(_, i)| i.clone()).collect();
        match call(payload).await {
            Ok(results) => {
                if results.len() != group.len() {
                    return Err(MoodleError::Protocol(format!(
                        "{} results for {} items",
                        results.len(),
                        group.len()
                    )));
                }
                out.ok.extend(group.iter().map(|(i, _)| *i).zip(results));
            }
            Err(e) if e.is_fatal() || !e.may_be_item_specific() => return Err(e),
            Err(e) if group.len() == 1 => out.failed.push((group[0].0, e.to_string())),
            Err(_) => {
                let mut group = group;
                let right = group.split_off(group.len() / 2);
                // Pushed right first so the left half runs first: results stay roughly in order.
                stack.push(right);
                stack.push(group);
            }
        }
    }
    out.ok.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// Form fields of one user item.
pub type UserForm = Vec<(String, String)>;

/// `core_user_create_users` in batches sized by form fields, up to `concurrency` calls at once
/// (different people: independent calls), each bisected on an item-specific failure.
/// Returns the created ids and the failures (index in `items`, why).
pub async fn create_users(
    client: &MoodleClient,
    items: &[UserForm],
    budget: usize,
    batch_size: usize,
    concurrency: usize,
) -> Result<Outcome<MoodleUserId>, MoodleError> {
    let sizes: Vec<usize> = items.iter().map(Vec::len).collect();
    let outs: Vec<_> = stream::iter(chunks(&sizes, budget, batch_size).into_iter().map(|range| {
        let part: Vec<(usize, UserForm)> = range.map(|i| (i, items[i].clone())).collect();
        bisect(
            part,
            |items| async move { users::create(client, &items).await },
        )
    }))
    .buffered(concurrency.max(1))
    .collect()
    .await;
    let mut all = Outcome {
        ok: Vec::new(),
        failed: Vec::new(),
        calls: 0,
    };
    for out in outs {
        let out = out?;
        all.ok.extend(out.ok.into_iter().map(|(i, c)| (i, c.id)));
        all.failed.extend(out.failed);
        all.calls += out.calls;
    }
    Ok(all)
}

/// `core_user_update_users` (each item starts with its `id`), batched like creates. Moodle
/// answers item problems with warnings naming the user id: returns, per item, None (written)
/// or why not.
pub async fn update_users(
    client: &MoodleClient,
    items: &[(MoodleUserId, UserForm)],
    budget: usize,
    batch_size: usize,
    concurrency: usize,
) -> Result<Vec<Option<String>>, MoodleError> {
    let sizes: Vec<usize> = items.iter().map(|(_, f)| f.len()).collect();
    let outs: Vec<_> = stream::iter(chunks(&sizes, budget, batch_size).into_iter().map(
        |range| async move {
            let forms: Vec<UserForm> = items[range.clone()]
                .iter()
                .map(|(_, f)| f.clone())
                .collect();
            users::update(client, &forms).await.map(|w| (range, w))
        },
    ))
    .buffered(concurrency.max(1))
    .collect()
    .await;
    let mut result = vec![None; items.len()];
    for out in outs {
        let (range, warnings) = out?;
        let bad: HashMap<i64, String> = warnings
            .into_iter()
            .filter_map(|w| {
                w.itemid
                    .map(|id| (id, format!("{}: {}", w.warningcode, w.message)))
            })
            .collect();
        for i in range {
            result[i] = bad.get(&items[i].0.get()).cloned();
        }
    }
    Ok(result)
}

/// Suspend accounts (`core_user_update_users` with `suspended=1`); per item None or why not.
pub async fn suspend_users(
    client: &MoodleClient,
    ids: &[MoodleUserId],
    budget: usize,
    batch_size: usize,
) -> Result<Vec<Option<String>>, MoodleError> {
    let per_call = (budget / 2).clamp(1, batch_size.max(1));
    let mut result = Vec::with_capacity(ids.len());
    for part in ids.chunks(per_call) {
        let warnings = users::suspend(client, part).await?;
        for id in part {
            result.push(
                warnings
                    .iter()
                    .find(|w| w.itemid == Some(id.get()))
                    .map(|w| format!("{} {}", w.warningcode, w.message)),
            );
        }
    }
    Ok(result)
}

/// `core_cohort_create_cohorts` in batches, bisected on an item-specific failure.
pub async fn create_cohorts(
    client: &MoodleClient,
    items: &[cohorts::NewCohort],
    budget: usize,
    batch_size: usize,
) -> Result<Outcome<cohorts::Cohort>, MoodleError> {
    let mut all = Outcome {
        ok: Vec::new(),
        failed: Vec::new(),
        calls: 0,
    };
    let sizes = vec![cohorts::CREATE_FIELDS; items.len()];
    for range in chunks(&sizes, budget, batch_size) {
        let part: Vec<(usize, cohorts::NewCohort)> = range.map(|i| (i, items[i].clone())).collect();
        let out = bisect(part, |items| async move {
            cohorts::create(client, &items).await
        })
        .await?;
        all.ok.extend(out.ok);
        all.failed.extend(out.failed);
        all.calls += out.calls;
    }
    Ok(all)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleWrite {
    Assign,
    Unassign,
}

/// Assign or unassign in batches sized by form fields; a batch Moodle rejects is bisected so the
/// bad items are reported and the rest land.
pub async fn write_roles(
    client: &MoodleClient,
    items: &[Assignment],
    budget: usize,
    max_items: usize,
    op: RoleWrite,
) -> Result<Outcome<()>, MoodleError> {
    let mut all = Outcome {
        ok: Vec::new(),
        failed: Vec::new(),
        calls: 0,
    };
    let sizes = vec![roles::ASSIGN_FIELDS; items.len()];
    for range in chunks(&sizes, budget, max_items) {
        let part: Vec<(usize, Assignment)> = range.map(|j| (j, items[j].clone())).collect();
        let out = bisect(part, |batch| async move {
            match op {
                RoleWrite::Assign => roles::assign(client, &batch).await,
                RoleWrite::Unassign => roles::unassign(client, &batch).await,
            }
            .map(|()| vec![(); batch.len()])
        })
        .await?;
        all.ok.extend(out.ok);
        all.failed.extend(out.failed);
        all.calls += out.calls;
    }
    Ok(all)
}

/// One cohort membership to write; the report files its failure under `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberWrite {
    pub key: String,
    pub cohort_key: String,
    pub cohort: MoodleCohortId,
    pub user: MoodleUserId,
}

/// Which writes of [`cohort_members`] did not land (indices into its `adds` and `removes`).
#[derive(Debug, Default, PartialEq)]
pub struct MemberFailures {
    pub adds: HashSet<usize>,
    pub removes: HashSet<usize>,
}

/// The one writer of cohort memberships (class cohorts and directory groups alike), counting
/// and reporting as it goes. Adding reports problems as warnings without an item index: code
/// "3" (already a member) counts as unchanged; a warning naming a user or cohort id of the call
/// fails that item; any other warning cannot be pinned on an item and is a run error (it
/// blocks removals and the full-pass record, so it is seen). Removing is all or nothing: an
/// item-specific refusal fails the items of that call, anything else stops the pass.
pub async fn cohort_members(
    client: &MoodleClient,
    report: &mut RunReport,
    adds: &[MemberWrite],
    removes: &[MemberWrite],
    budget: usize,
) -> Result<MemberFailures, MoodleError> {
    let per_call = (budget / cohorts::MEMBER_FIELDS).clamp(1, 1000);
    let mut failures = MemberFailures::default();
    for (c, part) in adds.chunks(per_call).enumerate() {
        let base = c * per_call;
        let pairs: Vec<(MoodleCohortId, MoodleUserId)> =
            part.iter().map(|m| (m.cohort, m.user)).collect();
        let warnings = cohorts::add_members(client, &pairs).await?;
        let mut failed_here: HashSet<usize> = HashSet::new();
        let mut already = 0u64;
        for w in &warnings {
            if w.warningcode == "3" {
                already += 1;
                continue;
            }
            // "user id=N not exists" / "cohort … id=N not exists".
            let culprit = part.iter().position(|m| {
                w.message.contains(&format!("id={} ", m.user))
                    || w.message.contains(&format!("id={} ", m.cohort))
            });
            match culprit {
                Some(j) => {
                    let m = &part[j];
                    failed_here.insert(j);
                    failures.adds.insert(base + j);
                    report.failed(
                        EntityKind::Memberships,
                        &m.key,
                        format!("add to {}: {} {}", m.cohort_key, w.warningcode, w.message),
                    );
                }
                None => report.errors.push(format!(
                    "add_cohort_members warning {}: {}",
                    w.warningcode, w.message
                )),
            }
        }
        let ok = part.len() as u64 - failed_here.len() as u64;
        report.counts(EntityKind::Memberships).created += ok.saturating_sub(already);
        report.counts(EntityKind::Memberships).unchanged += already;
    }
    for (c, part) in removes.chunks(per_call).enumerate() {
        let pairs: Vec<(MoodleCohortId, MoodleUserId)> =
            part.iter().map(|m| (m.cohort, m.user)).collect();
        match cohorts::delete_members(client, &pairs).await {
            Ok(()) => report.counts(EntityKind::Memberships).removed += part.len() as u64,
            Err(e) if e.may_be_item_specific() => {
                for (j, m) in part.iter().enumerate() {
                    failures.removes.insert(c * per_call + j);
                    report.failed(
                        EntityKind::Memberships,
                        &m.key,
                        format!("remove from {}: {e}", m.cohort_key),
                    );
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_fields_and_items() {
        assert_eq!(
            chunks(&[10, 10, 10, 10, 10], 25, 100),
            vec![0..2, 2..4, 4..5]
        );
        assert_eq!(chunks(&[1, 1, 1], 100, 2), vec![0..2, 2..3]);
        assert_eq!(chunks(&[50], 10, 5), vec![0..1]);
        assert!(chunks(&[], 10, 5).is_empty());
    }

    #[tokio::test]
    async fn isolates_bad_items_and_keeps_the_good_ones() {
        let items: Vec<(usize, u32)> = (0..10).map(|i| (i as usize, i)).collect();
        let out = bisect(items, |group: Vec<u32>| async move {
            if group.contains(&3) || group.contains(&7) {
                Err(MoodleError::InvalidParameter {
                    code: "invalidparameter".into(),
                    message: "bad".into(),
                    debuginfo: None,
                })
            } else {
                Ok(group.iter().map(|g| g * 10).collect())
            }
        })
        .await
        .unwrap();
        let failed: Vec<usize> = out.failed.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed.len(), 2);
        assert!(failed.contains(&3) && failed.contains(&7));
        assert_eq!(out.ok.len(), 8);
        assert_eq!(out.ok[0], (0, 0));
    }

    fn moodle(server: &wiremock::MockServer) -> MoodleClient {
        MoodleClient::new(&crate::config::MoodleSettings {
            url: server.uri().parse().unwrap(),
            token: crate::config::Secret::new("TOKEN"),
            max_form_fields: 1000,
            timeout_secs: 5,
        })
        .unwrap()
    }

    fn member(key: &str, cohort: i64, user: i64) -> MemberWrite {
        MemberWrite {
            key: key.into(),
            cohort_key: format!("c{cohort}"),
            cohort: MoodleCohortId::new(cohort).unwrap(),
            user: MoodleUserId::new(user).unwrap(),
        }
    }

    /// Every warning is accounted for: "already a member" is unchanged, one naming an id of the
    /// call fails that item, and one that names none is a run error, never a silent count.
    #[tokio::test]
    async fn the_member_writer_pins_each_warning_on_an_item_or_reports_an_error() {
        use wiremock::matchers::{body_string_contains, method};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_string_contains("core_cohort_add_cohort_members"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "warnings": [
                    {"warningcode": "3", "message": "already a member"},
                    {"warningcode": "2", "message": "user id=12 not exists"},
                    {"warningcode": "9", "message": "something else"}
                ]
            })))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(body_string_contains("core_cohort_delete_cohort_members"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "exception": "invalid_parameter_exception",
                "errorcode": "invalidparameter",
                "message": "Invalid parameter value detected"
            })))
            .mount(&server)
            .await;
        let client = moodle(&server);
        let mut report = RunReport::new("r", &Default::default(), 10);
        let adds = vec![member("A", 1, 11), member("B", 1, 12), member("C", 1, 13)];
        let removes = vec![member("D", 1, 14)];
        let failed = cohort_members(&client, &mut report, &adds, &removes, 1000)
            .await
            .unwrap();
        assert_eq!(failed.adds, [1].into());
        assert_eq!(failed.removes, [0].into());
        let c = &report.counts["memberships"];
        assert_eq!((c.created, c.unchanged, c.failed, c.removed), (1, 1, 2, 0));
        assert!(report
            .issues
            .iter()
            .any(|i| i.key == "B" && i.reason.contains("add to c1: 2 user id=12")));
        assert!(report
            .issues
            .iter()
            .any(|i| i.key == "D" && i.reason.starts_with("remove from c1")));
        assert_eq!(
            report.errors,
            vec!["add_cohort_members warning 9: something else".to_string()]
        );
    }

    #[tokio::test]
    async fn fatal_errors_stop() {
        let items: Vec<(usize, u32)> = (0..4).map(|i| (i as usize, i)).collect();
        let r = bisect(items, |_g: Vec<u32>| async {
            Err::<Vec<()>, _>(MoodleError::InvalidToken)
        })
        .await;
        assert!(matches!(r, Err(MoodleError::InvalidToken)));
    }
}
