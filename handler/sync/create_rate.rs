//! Watches how fast Moodle creates users during a pass. Moodle's web services check every new
//! user's e-mail with `LOWER(email) = LOWER(:email)` over the whole user table unless the site
//! allows accounts with the same e-mail; without an index on `lower(email)` each create costs a
//! scan, so a large initial load slows down as the table grows. Saying so once, with the two
//! remedies, saves the admin from guessing.

use std::time::Duration;

/// Users created before the first rate is taken as the baseline.
const BASELINE_USERS: u64 = 300;
/// Fewer users than this in one batch say nothing reliable about the rate.
const MIN_SAMPLE: u64 = 50;
/// Warn when a batch runs below this share of the baseline rate.
const SLOW_SHARE: f64 = 0.5;

#[derive(Debug, Default)]
pub struct CreateRate {
    users: u64,
    secs: f64,
    baseline: Option<f64>,
    warned: bool,
}

impl CreateRate {
    /// One batch of creates: `n` users in `took`. Returns the warning the first time the rate
    /// falls below half of what it was at the start of the pass.
    pub fn observe(&mut self, n: u64, took: Duration) -> Option<String> {
        let secs = took.as_secs_f64();
        if n < MIN_SAMPLE || secs <= 0.0 {
            return None;
        }
        let rate = n as f64 / secs;
        let Some(base) = self.baseline else {
            self.users += n;
            self.secs += secs;
            if self.users >= BASELINE_USERS {
                self.baseline = Some(self.users as f64 / self.secs);
            }
            return None;
        };
        if self.warned || rate >= base * SLOW_SHARE {
            return None;
        }
        self.warned = true;
        Some(format!(
            "creating users slowed from {base:.0}/s to {rate:.0}/s as Moodle's user table grew: \
             Moodle compares each new user's e-mail with every account (a LOWER(email) scan) \
             unless the site allows accounts with the same e-mail (allowaccountssameemail=1) or \
             PostgreSQL has an index on lower(email); see the README, \"Loading a large directory\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_sec(rate: f64, n: u64) -> Duration {
        Duration::from_secs_f64(n as f64 / rate)
    }

    #[test]
    fn warns_once_when_the_rate_halves_and_not_on_noise() {
        let mut w = CreateRate::default();
        for _ in 0..3 {
            assert_eq!(w.observe(100, per_sec(90.0, 100)), None);
        }
        assert_eq!(
            w.observe(100, per_sec(60.0, 100)),
            None,
            "a third slower: not yet"
        );
        assert_eq!(w.observe(10, per_sec(5.0, 10)), None, "too few to judge");
        let msg = w.observe(100, per_sec(30.0, 100)).expect("halved");
        assert!(msg.contains("90/s to 30/s") && msg.contains("allowaccountssameemail=1"));
        assert!(msg.contains("lower(email)"));
        assert_eq!(w.observe(100, per_sec(10.0, 100)), None, "said once");
    }
}
