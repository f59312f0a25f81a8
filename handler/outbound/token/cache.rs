//! Per-scope token cache with single-flight refresh: while one request for a scope is in
//! flight, every other caller for that scope awaits the same request (and shares its error),
//! so a burst of callers at expiry costs the token service one request. The request is a
//! shared future, not a lock held by the first caller: if that caller is cancelled the others
//! still get the answer.

use super::{AccessToken, Fetch, TokenError, TokenSource};
use futures::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A cached token is renewed once it has less than this left.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

type Flight = Shared<BoxFuture<'static, Result<AccessToken, TokenError>>>;

#[derive(Default)]
struct Slot {
    token: Option<AccessToken>,
    flight: Option<Flight>,
}

pub struct Cached<F: Fetch> {
    fetch: Arc<F>,
    slots: Mutex<HashMap<String, Slot>>,
}

impl<F: Fetch> Cached<F> {
    pub fn new(fetch: F) -> Self {
        Cached {
            fetch: Arc::new(fetch),
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &F {
        &self.fetch
    }

    /// Forget every cached token (the next call fetches).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding the map cannot leave it inconsistent (plain inserts).
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn fresh(token: &AccessToken, now: SystemTime) -> bool {
    now.checked_add(REFRESH_MARGIN)
        .is_some_and(|t| t < token.expires_at)
}

#[async_trait::async_trait]
impl<F: Fetch> TokenSource for Cached<F> {
    async fn token(&self, scope: &str) -> Result<AccessToken, TokenError> {
        let flight = {
            let mut slots = self.lock();
            let slot = slots.entry(scope.to_string()).or_default();
            if let Some(t) = slot.token.as_ref().filter(|t| fresh(t, SystemTime::now())) {
                return Ok(t.clone());
            }
            match &slot.flight {
                Some(f) => f.clone(),
                None => {
                    let f = self.fetch.clone().fetch(scope.to_string()).boxed().shared();
                    slot.flight = Some(f.clone());
                    f
                }
            }
        };
        let result = flight.clone().await;
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(scope) {
            // The first caller back retires this flight; a newer one is left alone.
            if slot.flight.as_ref().is_some_and(|f| f.ptr_eq(&flight)) {
                slot.flight = None;
                if let Ok(t) = &result {
                    slot.token = Some(t.clone());
                }
            }
        }
        result
    }

    fn forget(&self, scope: &str) {
        if let Some(slot) = self.lock().get_mut(scope) {
            slot.token = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Counts requests; answers after a pause so concurrent callers overlap.
    struct Counting {
        calls: AtomicU32,
        lifetime: Duration,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl Fetch for Counting {
        async fn fetch(self: Arc<Self>, scope: String) -> Result<AccessToken, TokenError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.fail {
                return Err(TokenError::Config("no".into()));
            }
            Ok(AccessToken::expiring_in(
                Secret::new(format!("{scope}#{n}")),
                self.lifetime,
            ))
        }
    }

    fn counting(lifetime: Duration, fail: bool) -> Arc<Cached<Counting>> {
        Arc::new(Cached::new(Counting {
            calls: AtomicU32::new(0),
            lifetime,
            fail,
        }))
    }

    async fn hundred_at_once(
        cache: &Arc<Cached<Counting>>,
        scope: &'static str,
    ) -> Vec<Result<AccessToken, TokenError>> {
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.token(scope).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hundred_concurrent_callers_make_one_request() {
        let cache = counting(Duration::from_secs(3600), false);
        let results = hundred_at_once(&cache, "s").await;
        assert_eq!(cache.inner().calls.load(Ordering::SeqCst), 1);
        assert!(results
            .iter()
            .all(|r| r.as_ref().unwrap().secret.expose() == "s#1"));
        // Cached now; another scope has its own token.
        cache.token("s").await.unwrap();
        assert_eq!(cache.inner().calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            cache.token("other").await.unwrap().secret.expose(),
            "other#2"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_refresh_is_shared_too_and_not_cached() {
        let cache = counting(Duration::from_secs(3600), true);
        let results = hundred_at_once(&cache, "s").await;
        assert_eq!(cache.inner().calls.load(Ordering::SeqCst), 1);
        assert!(results.iter().all(|r| r.is_err()));
        assert!(cache.token("s").await.is_err());
        assert_eq!(cache.inner().calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn kept_until_five_minutes_before_expiry() {
        let long = counting(REFRESH_MARGIN + Duration::from_secs(60), false);
        long.token("s").await.unwrap();
        long.token("s").await.unwrap();
        assert_eq!(long.inner().calls.load(Ordering::SeqCst), 1);
        let short = counting(REFRESH_MARGIN - Duration::from_secs(1), false);
        short.token("s").await.unwrap();
        short.token("s").await.unwrap();
        assert_eq!(short.inner().calls.load(Ordering::SeqCst), 2);
        short.clear();
    }

    #[tokio::test]
    async fn a_huge_lifetime_does_not_overflow() {
        let cache = counting(Duration::MAX, false);
        let t = cache.token("s").await.unwrap();
        assert!(t.expires_at > SystemTime::now() + Duration::from_secs(23 * 3600));
        cache.token("s").await.unwrap();
        assert_eq!(cache.inner().calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cancelled_first_caller_does_not_strand_the_others() {
        let cache = counting(Duration::from_secs(3600), false);
        let first = {
            let c = cache.clone();
            tokio::spawn(async move { c.token("s").await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = {
            let c = cache.clone();
            tokio::spawn(async move { c.token("s").await })
        };
        first.abort();
        assert_eq!(second.await.unwrap().unwrap().secret.expose(), "s#1");
        assert_eq!(cache.inner().calls.load(Ordering::SeqCst), 1);
    }
}
