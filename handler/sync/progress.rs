//! Progress of a `handler sync` run: a bar on a terminal (entries read / planned / written,
//! rate, ETA when the directory's size is known from the last full pass), a line every
//! 10 seconds otherwise (logs, cron mails), so a long run is never silent.

use super::engine::{Progress, Step};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Counters {
    pub read: AtomicU64,
    pub planned: AtomicU64,
    pub written: AtomicU64,
}

impl Counters {
    pub fn apply(&self, step: Step) {
        match step {
            Step::Read(n) => self.read.fetch_add(n, Ordering::Relaxed),
            Step::Planned(n) => self.planned.fetch_add(n, Ordering::Relaxed),
            Step::Written(n) => self.written.fetch_add(n, Ordering::Relaxed),
        };
    }

    /// `read 1500 · planned 1500 · written 1000 entries (95/s, about 5 s left)`
    pub fn line(&self, elapsed: Duration, expected: Option<u64>) -> String {
        let (r, p, w) = (
            self.read.load(Ordering::Relaxed),
            self.planned.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
        );
        let rate = w as f64 / elapsed.as_secs_f64().max(0.001);
        let eta = match expected {
            Some(total) if rate > 0.0 && total > w => {
                format!(", about {:.0} s left", (total - w) as f64 / rate)
            }
            _ => String::new(),
        };
        format!("read {r} · planned {p} · written {w} entries ({rate:.0}/s{eta})")
    }
}

/// Where progress goes for one run; `finish` before printing the report.
pub struct Display {
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    pub progress: Progress,
}

impl Display {
    /// `expected`: entries the last full pass read, if known (for the ETA).
    pub fn start(terminal: bool, expected: Option<u64>) -> Display {
        let counters = Arc::new(Counters::default());
        let started = Instant::now();
        if terminal {
            let bar = match expected {
                Some(n) => indicatif::ProgressBar::new(n).with_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} written · {msg} · {per_sec} · ETA {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                ),
                None => indicatif::ProgressBar::new_spinner().with_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {elapsed} {pos} written · {msg} · {per_sec}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                ),
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            let (b, c) = (bar.clone(), counters.clone());
            let progress: Progress = Arc::new(move |step| {
                c.apply(step);
                b.set_position(c.written.load(Ordering::Relaxed));
                b.set_message(format!(
                    "read {} · planned {}",
                    c.read.load(Ordering::Relaxed),
                    c.planned.load(Ordering::Relaxed)
                ));
            });
            return Display {
                bar: Some(bar),
                ticker: None,
                progress,
            };
        }
        let c = counters.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            every.tick().await;
            loop {
                every.tick().await;
                eprintln!("sync: {}", c.line(started.elapsed(), expected));
            }
        });
        let progress: Progress = Arc::new(move |step| counters.apply(step));
        Display {
            bar: None,
            ticker: Some(ticker),
            progress,
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
        if let Some(t) = self.ticker {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_read_planned_written_rate_and_time_left() {
        let c = Counters::default();
        c.apply(Step::Read(1000));
        c.apply(Step::Planned(1000));
        c.apply(Step::Written(500));
        let line = c.line(Duration::from_secs(5), Some(2000));
        assert_eq!(
            line,
            "read 1000 · planned 1000 · written 500 entries (100/s, about 15 s left)"
        );
        assert!(!c.line(Duration::from_secs(5), None).contains("left"));
    }
}
