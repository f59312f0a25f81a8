//! Keyed rate limiter with several sliding windows per key (issue 16): Teams allows per
//! conversation 7 sends per second, 8 per 2 s, 60 per 30 s and 1800 per hour, plus an app-wide
//! budget; a webhook takes 4 per second. A send books the earliest instant at which every key it
//! names has room in every window, so concurrent callers line up in order instead of all waking
//! at once, and a caller can ask "would this wait longer than X?" and do something else (queue
//! the send) instead of waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `limit` sends in any `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub period: Duration,
    pub limit: usize,
}

impl Window {
    pub const fn new(limit: usize, period: Duration) -> Self {
        Window { period, limit }
    }
}

/// A named set of windows applied to every key of one kind (one conversation, one webhook…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub name: &'static str,
    pub windows: Vec<Window>,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Quota {
    /// Teams: sends to one conversation (thread) by one bot.
    pub fn teams_conversation() -> Quota {
        Quota {
            name: "teams-conversation",
            windows: vec![
                Window::new(7, secs(1)),
                Window::new(8, secs(2)),
                Window::new(60, secs(30)),
                Window::new(1800, secs(3600)),
            ],
        }
    }

    /// Teams: every bot API request of the app (documented 50 per second per app and tenant).
    pub fn teams_app(per_second: usize) -> Quota {
        Quota {
            name: "teams-app",
            windows: vec![Window::new(per_second, secs(1))],
        }
    }

    /// A Teams incoming webhook (channel connector): 4 per second.
    pub fn webhook() -> Quota {
        Quota {
            name: "webhook",
            windows: vec![Window::new(4, secs(1))],
        }
    }

    /// The same limits, each window `margin` longer: a client booking exact instants still
    /// reaches the service a little early or late (scheduling, network), and a service counting
    /// arrivals would see a burst where the client booked none. Costs `margin / period` of the
    /// rate (50 ms on 1 s: 5%).
    pub fn with_margin(mut self, margin: Duration) -> Quota {
        for w in &mut self.windows {
            w.period += margin;
        }
        self
    }

    /// This quota applied to `key`.
    pub fn key<'a>(&'a self, key: &'a str) -> Slot<'a> {
        Slot { quota: self, key }
    }

    fn longest(&self) -> Duration {
        self.windows
            .iter()
            .map(|w| w.period)
            .max()
            .unwrap_or_default()
    }
}

/// One key under one quota; a send names every slot it counts against.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    pub quota: &'a Quota,
    pub key: &'a str,
}

/// The send could not start within the allowed wait; nothing was booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit: the next free slot is {wait:?} away")]
pub struct WouldWait {
    pub wait: Duration,
}

/// Keys kept before idle ones are dropped.
const MAX_KEYS: usize = 10_000;

#[derive(Default)]
pub struct RateLimiter {
    /// Booked send instants per (quota, key), oldest first; entries may lie in the future.
    booked: Mutex<Booked>,
}

impl RateLimiter {
    pub fn new() -> Self {
        RateLimiter::default()
    }

    /// Book the earliest instant, at or after `now`, at which one more send fits every window of
    /// every slot — unless that is more than `max_wait` away, in which case nothing is booked.
    /// Slots are booked together: a send never holds a place in one and not the other.
    pub fn reserve(
        &self,
        slots: &[Slot<'_>],
        now: Instant,
        max_wait: Duration,
    ) -> Result<Instant, WouldWait> {
        let mut map = self.booked.lock().unwrap_or_else(|p| p.into_inner());
        let at = earliest(&mut map, slots, now)?;
        let wait = at.saturating_duration_since(now);
        if wait > max_wait {
            return Err(WouldWait { wait });
        }
        for slot in slots {
            map.entry((slot.quota.name, slot.key.to_string()))
                .or_default()
                .push_back(at);
        }
        Ok(at)
    }

    /// How long a send on these slots would wait now (nothing is booked).
    pub fn would_wait(&self, slots: &[Slot<'_>], now: Instant) -> Duration {
        let mut map = self.booked.lock().unwrap_or_else(|p| p.into_inner());
        match earliest(&mut map, slots, now) {
            Ok(at) => at.saturating_duration_since(now),
            Err(WouldWait { wait }) => wait,
        }
    }

    /// Wait for a slot, however long it takes (queue workers, proactive sends).
    pub async fn acquire(&self, slots: &[Slot<'_>]) {
        let _ = self.acquire_within(slots, Duration::MAX).await;
    }

    /// Wait for a slot if one frees up within `max_wait`; otherwise answer at once with how long
    /// it would have taken, so the caller can hand the work to a queue.
    pub async fn acquire_within(
        &self,
        slots: &[Slot<'_>],
        max_wait: Duration,
    ) -> Result<(), WouldWait> {
        let now = Instant::now();
        let at = self.reserve(slots, now, max_wait)?;
        if at > now {
            tokio::time::sleep_until(at.into()).await;
        }
        Ok(())
    }
}

type Booked = HashMap<(&'static str, String), VecDeque<Instant>>;

/// Longest window any quota uses; keys idle for longer hold nothing worth keeping.
const LONGEST_WINDOW: Duration = secs(3600);

/// The first instant at or after `now` with room in every window of every slot.
fn earliest(map: &mut Booked, slots: &[Slot<'_>], now: Instant) -> Result<Instant, WouldWait> {
    if map.len() > MAX_KEYS {
        map.retain(|_, q| q.back().is_some_and(|t| *t + LONGEST_WINDOW > now));
    }
    let mut at = now;
    for slot in slots {
        if slot.quota.windows.iter().any(|w| w.limit == 0) {
            return Err(WouldWait {
                wait: Duration::MAX,
            });
        }
        let Some(q) = map.get_mut(&(slot.quota.name, slot.key.to_string())) else {
            continue;
        };
        let longest = slot.quota.longest();
        while q.front().is_some_and(|t| *t + longest <= now) {
            q.pop_front();
        }
        // First come, first served: never book before a send already booked.
        if let Some(last) = q.back() {
            at = at.max(*last);
        }
        for w in &slot.quota.windows {
            if q.len() >= w.limit {
                // Free once the `limit`-th most recent send leaves the window.
                at = at.max(q[q.len() - w.limit] + w.period);
            }
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Duration = Duration::ZERO;

    fn go(l: &RateLimiter, slots: &[Slot<'_>], t: Instant) -> bool {
        l.reserve(slots, t, NONE).is_ok()
    }

    #[test]
    fn seven_per_second_then_waits_and_keys_are_independent() {
        let l = RateLimiter::new();
        let conv = Quota::teams_conversation();
        let t0 = Instant::now();
        for _ in 0..7 {
            assert!(go(&l, &[conv.key("c")], t0));
        }
        let wait = l
            .reserve(&[conv.key("c")], t0, NONE)
            .expect_err("8th must wait")
            .wait;
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::from_millis(900),
            "{wait:?}"
        );
        assert!(
            go(&l, &[conv.key("other")], t0),
            "limits are per conversation"
        );
    }

    #[test]
    fn eight_per_two_seconds() {
        let l = RateLimiter::new();
        let conv = Quota::teams_conversation();
        let t0 = Instant::now();
        for _ in 0..7 {
            assert!(go(&l, &[conv.key("c")], t0));
        }
        let t1 = t0 + Duration::from_secs(1);
        assert!(go(&l, &[conv.key("c")], t1), "8th in the second second");
        let wait = l.would_wait(&[conv.key("c")], t1);
        assert_eq!(wait, Duration::from_secs(1), "9th waits for the 2 s window");
    }

    #[test]
    fn sixty_per_thirty_seconds() {
        let l = RateLimiter::new();
        let conv = Quota::teams_conversation();
        let t0 = Instant::now();
        for i in 0..60u64 {
            // 3 per second: under the 1 s and 2 s limits.
            let t = t0 + Duration::from_millis(i * 1000 / 3);
            assert!(go(&l, &[conv.key("c")], t), "send {i}");
        }
        let t = t0 + Duration::from_millis(20_500);
        let wait = l.would_wait(&[conv.key("c")], t);
        assert!(
            wait > Duration::from_secs(9),
            "61st within 30 s must wait: {wait:?}"
        );
    }

    #[test]
    fn eighteen_hundred_per_hour() {
        let l = RateLimiter::new();
        let conv = Quota::teams_conversation();
        let t0 = Instant::now();
        for i in 0..1800u64 {
            // One every 1.1 s stays under every shorter window.
            let t = t0 + Duration::from_millis(i * 1100);
            assert!(go(&l, &[conv.key("c")], t), "send {i}");
        }
        let t = t0 + Duration::from_millis(1800 * 1100);
        let wait = l.would_wait(&[conv.key("c")], t);
        assert_eq!(
            wait,
            Duration::from_secs(3600) - Duration::from_millis(1800 * 1100)
        );
    }

    #[test]
    fn a_global_budget_spans_every_key_and_slots_are_booked_together() {
        let l = RateLimiter::new();
        let conv = Quota::teams_conversation();
        let app = Quota::teams_app(10);
        let t0 = Instant::now();
        for i in 0..10 {
            let key = format!("c{i}");
            assert!(go(&l, &[conv.key(&key), app.key("")], t0));
        }
        // Conversation c10 has room, the app does not: nothing is booked for c10.
        let wait = l.would_wait(&[conv.key("c10"), app.key("")], t0);
        assert_eq!(wait, Duration::from_secs(1));
        for _ in 0..7 {
            assert!(
                go(&l, &[conv.key("c10")], t0),
                "c10 untouched by the refusal"
            );
        }
        let hook = Quota::webhook();
        for _ in 0..4 {
            assert!(go(&l, &[hook.key("https://hook/1")], t0));
        }
        assert!(
            !go(&l, &[hook.key("https://hook/1")], t0),
            "4 per second per webhook"
        );
    }

    #[test]
    fn a_margin_lengthens_every_window() {
        let l = RateLimiter::new();
        let hook = Quota::webhook().with_margin(Duration::from_millis(50));
        let t0 = Instant::now();
        for _ in 0..4 {
            assert!(go(&l, &[hook.key("h")], t0));
        }
        assert_eq!(
            l.would_wait(&[hook.key("h")], t0),
            Duration::from_millis(1050)
        );
        let conv = Quota::teams_conversation().with_margin(Duration::from_millis(50));
        assert_eq!(conv.windows[3].period, Duration::from_millis(3_600_050));
    }

    #[test]
    fn would_wait_answers_without_booking_and_reserve_respects_the_bound() {
        let l = RateLimiter::new();
        let conv = Quota::teams_conversation();
        let slots = [conv.key("c")];
        let t0 = Instant::now();
        assert_eq!(l.would_wait(&slots, t0), NONE);
        assert_eq!(l.would_wait(&slots, t0), NONE, "asking books nothing");
        for _ in 0..7 {
            assert_eq!(l.reserve(&slots, t0, NONE), Ok(t0));
        }
        // Booked ahead: the 8th gets t0 + 1 s when allowed to wait that long, and the 9th
        // then lines up behind it (t0 + 2 s, the 8-per-2 s window).
        assert_eq!(
            l.reserve(&slots, t0, Duration::from_millis(500)),
            Err(WouldWait {
                wait: Duration::from_secs(1)
            })
        );
        assert_eq!(
            l.reserve(&slots, t0, Duration::from_secs(2)),
            Ok(t0 + Duration::from_secs(1))
        );
        assert_eq!(l.would_wait(&slots, t0), Duration::from_secs(2));
        assert_eq!(
            l.reserve(&slots, t0, Duration::from_secs(2)),
            Ok(t0 + Duration::from_secs(2))
        );
        // The 2 s window (t0, t0 + 2 s] holds two sends: more fit at t0 + 2 s.
        assert_eq!(l.would_wait(&slots, t0), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn acquire_within_waits_for_a_near_slot_and_refuses_a_far_one() {
        let l = RateLimiter::new();
        let q = Quota {
            name: "test",
            windows: vec![Window::new(1, Duration::from_millis(100))],
        };
        let t = Instant::now();
        l.acquire_within(&[q.key("k")], NONE).await.unwrap();
        l.acquire_within(&[q.key("k")], Duration::from_millis(150))
            .await
            .unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(100),
            "waited for the window"
        );
        let err = l
            .acquire_within(&[q.key("k")], Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.wait > Duration::from_millis(50), "{err}");
        l.acquire(&[q.key("k")]).await;
        assert!(t.elapsed() >= Duration::from_millis(200));
    }
}
