//! One retry policy for every outbound call: the caller says whether a failure is retryable or
//! permanent (and what `Retry-After` the service sent); the policy decides how long to wait —
//! the server's `Retry-After` when given, full-jitter exponential backoff otherwise — and stops
//! after a bounded number of attempts or once the waits would pass a total budget.

use std::future::Future;
use std::time::{Duration, SystemTime};

/// What one failed attempt means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again: after `retry_after` when the service said so, after a backoff otherwise.
    Retryable { retry_after: Option<Duration> },
    /// Trying again cannot help (bad request, refused credentials, 403…).
    Permanent,
}

/// A failed attempt: the error the caller will see if it is the last one, and its verdict.
#[derive(Debug)]
pub struct Failure<E> {
    pub error: E,
    pub verdict: Verdict,
}

impl<E> Failure<E> {
    pub fn retryable(error: E, retry_after: Option<Duration>) -> Self {
        Failure {
            error,
            verdict: Verdict::Retryable { retry_after },
        }
    }

    pub fn permanent(error: E) -> Self {
        Failure {
            error,
            verdict: Verdict::Permanent,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Ceiling of the first backoff; it doubles with each attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Sum of all waits of one call: a wait that would pass it ends the call with the last error,
    /// so a caller is never held longer than this by retries (a long `Retry-After` included).
    pub max_total_wait: Duration,
}

impl RetryPolicy {
    /// Moodle web services: a few quick retries of transient failures.
    pub const MOODLE: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(5),
        max_total_wait: Duration::from_secs(30),
    };

    /// Bot Connector and other Microsoft APIs: 429/412/502/503/504 honour `Retry-After`.
    pub const MICROSOFT: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(30),
        max_total_wait: Duration::from_secs(120),
    };

    /// Upper bound of the full-jitter backoff before attempt `attempt + 1` (`attempt` ≥ 1 failed).
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base_backoff
            .checked_mul(1u32 << doublings)
            .unwrap_or(Duration::MAX)
            .min(self.max_backoff)
    }

    /// Full jitter: uniform in `[0, ceiling]`, so clients that failed together spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.backoff_ceiling(attempt);
        ceiling.mul_f64(rand::random::<f64>())
    }

    /// How long to wait after failed attempt `attempt`, given the waits so far; `None` = stop.
    pub fn next_wait(&self, attempt: u32, verdict: Verdict, waited: Duration) -> Option<Duration> {
        let Verdict::Retryable { retry_after } = verdict else {
            return None;
        };
        if attempt >= self.max_attempts {
            return None;
        }
        let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
        let total = waited.checked_add(wait)?;
        (total <= self.max_total_wait).then_some(wait)
    }

    /// Run `op` (given the attempt number, from 1) until it succeeds, fails permanently, or the
    /// policy's bounds are reached; the last error is returned.
    pub async fn run<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Failure<E>>>,
        E: std::fmt::Display,
    {
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            let Some(wait) = self.next_wait(attempt, failure.verdict, waited) else {
                return Err(failure.error);
            };
            tracing::warn!(
                what,
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %failure.error,
                "transient failure, retrying"
            );
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }
}

/// `Retry-After` as seconds (`"120"`, or fractional `"2.128"` as Graph sends) or an HTTP date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`, counted from `now`; a date in the past means no wait).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        // Rejects negative, NaN and values too large for a Duration.
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of a response, if it has a usable one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// Statuses worth another try on Microsoft APIs (their retry guidance): throttled, concurrent
/// operation, and the gateway family. 500 is not: the Connector documents it as permanent.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 412 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    const RETRY: Verdict = Verdict::Retryable { retry_after: None };

    #[test]
    fn retry_after_in_seconds_whole_and_fractional() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("2.128", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
        assert_eq!(parse_retry_after("1e300", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_as_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date already passed: go now rather than never.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        let mut headers = reqwest::header::HeaderMap::new();
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(61));
        headers.insert(reqwest::header::RETRY_AFTER, in_a_minute.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(61),
            "{wait:?}"
        );
    }

    #[test]
    fn full_jitter_stays_within_the_doubling_capped_ceiling() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            max_total_wait: Duration::from_secs(60),
        };
        assert_eq!(p.backoff_ceiling(1), Duration::from_millis(100));
        assert_eq!(p.backoff_ceiling(2), Duration::from_millis(200));
        assert_eq!(p.backoff_ceiling(3), Duration::from_millis(400));
        assert_eq!(p.backoff_ceiling(4), Duration::from_millis(700));
        assert_eq!(p.backoff_ceiling(u32::MAX), Duration::from_millis(700));
        for attempt in 1..6 {
            let ceiling = p.backoff_ceiling(attempt);
            let samples: Vec<Duration> = (0..500).map(|_| p.backoff(attempt)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            // Full jitter spreads over the whole range, not just above a floor.
            assert!(
                samples.iter().any(|d| *d < ceiling / 4),
                "attempt {attempt}"
            );
            assert!(
                samples.iter().any(|d| *d > ceiling * 3 / 4),
                "attempt {attempt}"
            );
        }
        let huge = RetryPolicy {
            base_backoff: Duration::MAX,
            max_backoff: Duration::MAX,
            ..p
        };
        assert_eq!(huge.backoff_ceiling(40), Duration::MAX);
    }

    #[test]
    fn waits_follow_retry_after_and_stop_at_the_bounds() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            max_total_wait: Duration::from_secs(5),
        };
        let after = |s| Verdict::Retryable {
            retry_after: Some(Duration::from_secs(s)),
        };
        assert_eq!(
            p.next_wait(1, after(2), Duration::ZERO),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.next_wait(1, Verdict::Permanent, Duration::ZERO), None);
        assert_eq!(
            p.next_wait(3, RETRY, Duration::ZERO),
            None,
            "attempts bound"
        );
        assert_eq!(
            p.next_wait(2, after(4), Duration::from_secs(2)),
            None,
            "2 s waited + 4 s > 5 s budget"
        );
        assert_eq!(
            p.next_wait(1, after(u64::MAX), Duration::from_secs(1)),
            None
        );
    }

    #[tokio::test]
    async fn run_stops_after_max_attempts_and_returns_the_last_error() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_total_wait: Duration::from_secs(1),
        };
        let calls = AtomicU32::new(0);
        let out: Result<(), String> = p
            .run("test", |attempt| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { Err(Failure::retryable(format!("failure {attempt}"), None)) }
            })
            .await;
        assert_eq!(out.unwrap_err(), "failure 3");
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let out: Result<u32, String> = p
            .run("test", |attempt| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt < 2 {
                        Err(Failure::retryable("busy".to_string(), Some(Duration::ZERO)))
                    } else {
                        Ok(attempt)
                    }
                }
            })
            .await;
        assert_eq!(out.unwrap(), 2);

        let calls = AtomicU32::new(0);
        let out: Result<(), String> = p
            .run("test", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(Failure::permanent("refused".to_string())) }
            })
            .await;
        assert_eq!(out.unwrap_err(), "refused");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "permanent: no retry");
    }

    #[tokio::test]
    async fn run_gives_up_at_once_when_retry_after_exceeds_the_total_wait() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            max_total_wait: Duration::from_millis(500),
        };
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let out: Result<(), String> = p
            .run("test", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    Err(Failure::retryable(
                        "throttled".to_string(),
                        Some(Duration::from_secs(3600)),
                    ))
                }
            })
            .await;
        assert_eq!(out.unwrap_err(), "throttled");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_millis(400));
    }
}
