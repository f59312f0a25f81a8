//! Batched writes. Batches are sized by form fields (PHP `max_input_vars` silently truncates a
//! large form and fails the whole call) and item count. Moodle rolls back a whole batch when
//! one item is bad, so a batch failing with an item-specific error is split in halves until the
//! bad entries are isolated and reported, while the good ones land.

use crate::moodle::MoodleError;
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
