//! `cargo run --release -p testkit --bin bench -- notify [--notifications 10000] [--users 1000]
//! [--channels 50] [--workers 16]`
//!
//! `NotifyFanout` end to end in-process, against the doubles that enforce Teams' limits
//! (`testkit::notify_doubles`: per conversation 7/1 s, 8/2 s, 60/30 s, 1,800/h; 50 requests per
//! second for the app; 4 posts per second per Workflows URL; 429 + `Retry-After` past them).
//! Notification `i` goes to user `i % users` (a stored personal conversation, French or English)
//! and to the one channel configuration of course `i % channels`, so 10,000 notifications are
//! 20,000 deliveries. The queue is an in-memory FIFO worked by `--workers` concurrent invocations
//! (the Functions host runs up to 16 + 8 per instance, host.json `batchSize`/`newBatchThreshold`);
//! a failed invocation is put back with its dequeue count, as a queue does. Everything else —
//! store (SQLite), deliveries, limiter, Connector client, webhook sender — is the app's own code.
//!
//! Prints delivered, duplicates, 429s received, achieved rate per kind of target and as a share
//! of what the limits allow, wall time and peak RSS.

use bridge::notify::queue::NotifyMessage;
use bridge::notify::schema::{Kind, Notification, Recipients};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::notify_app::{conversation_of, spawn_notify_app};
use testkit::notify_doubles::workflows_path;

fn arg(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or_else(|| anyhow::anyhow!("{name} N"))?
            .parse()?),
        None => Ok(default),
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The in-memory queue: FIFO of (body, dequeue count), and how many invocations are running.
#[derive(Default)]
struct Queue {
    pending: Mutex<VecDeque<(String, u32)>>,
    running: AtomicUsize,
    invocations: AtomicUsize,
    failures: AtomicUsize,
    poisoned: Mutex<Vec<String>>,
}

impl Queue {
    fn pop(&self) -> Option<(String, u32)> {
        let mut p = self.pending.lock().unwrap();
        let m = p.pop_front();
        if m.is_some() {
            // Counted under the lock, so an idle worker never sees "empty and nothing running"
            // while a message is between the queue and its invocation.
            self.running.fetch_add(1, Ordering::SeqCst);
        }
        m
    }

    fn idle(&self) -> bool {
        let p = self.pending.lock().unwrap();
        p.is_empty() && self.running.load(Ordering::SeqCst) == 0
    }
}

async fn worker(state: bridge::app::AppState, q: Arc<Queue>) {
    loop {
        let Some((text, count)) = q.pop() else {
            if q.idle() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        };
        q.invocations.fetch_add(1, Ordering::Relaxed);
        let result = testkit::notify_app::run_on(&state, &text, count).await;
        {
            let mut p = q.pending.lock().unwrap();
            match result {
                Ok(out) => {
                    for (queue, body) in out.queue {
                        match queue.as_str() {
                            "notify" => p.push_back((body, 1)),
                            _ => q.poisoned.lock().unwrap().push(body),
                        }
                    }
                }
                Err(_) => {
                    q.failures.fetch_add(1, Ordering::Relaxed);
                    p.push_back((text, count + 1));
                }
            }
            q.running.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn rate(n: usize, times: &[Instant]) -> (f64, Duration) {
    let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
        return (0.0, Duration::ZERO);
    };
    let span = last.duration_since(*first);
    // n arrivals span n - 1 intervals.
    let r = if span.is_zero() {
        0.0
    } else {
        (n.saturating_sub(1)) as f64 / span.as_secs_f64()
    };
    (r, span)
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let notifications = arg(args, "--notifications", 10_000)?;
    let users = arg(args, "--users", 1_000)?.max(1);
    let channels = arg(args, "--channels", 50)?.max(1);
    let workers = arg(args, "--workers", 16)?.max(1);
    let app = spawn_notify_app(vec![("LOG_LEVEL".into(), "error".into())]).await;
    for u in 1..=users as i64 {
        app.add_user(u, Some(if u % 2 == 0 { "en-GB" } else { "fr-FR" }))
            .await;
    }
    for c in 1..=channels as i64 {
        app.add_channel(c, &format!("chan-{c}"), &[Kind::Announcement], "fr")
            .await;
    }
    app.connector.log.lock().unwrap().slim = true;
    app.webhooks.log.lock().unwrap().slim = true;
    let q = Arc::new(Queue::default());
    {
        let mut p = q.pending.lock().unwrap();
        for i in 0..notifications {
            let n = Notification {
                id: format!("bench-{i}"),
                kind: Kind::Announcement,
                course: Some((i % channels) as i64 + 1),
                recipients: Recipients::Users(vec![(i % users) as i64 + 1]),
                title: format!("Annonce {i}"),
                text: "Réunion parents-professeurs jeudi à 18 h.".into(),
                link: Some(format!(
                    "https://moodle.example/mod/forum/discuss.php?d={i}"
                )),
                due: None,
                items: Vec::new(),
            };
            p.push_back((NotifyMessage::Fanout { notification: n }.to_json(), 1));
        }
    }
    println!(
        "notify: {notifications} notifications → {users} users + {channels} channels ({} deliveries), {workers} concurrent invocations",
        notifications * 2
    );
    let rss_before = status_kib("VmRSS:");
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| tokio::spawn(worker(app.state().clone(), q.clone())))
        .collect();
    for h in handles {
        h.await?;
    }
    let wall = started.elapsed();

    let (sent, bot_throttled) = {
        let log = app.connector.log.lock().unwrap();
        (log.sent.clone(), log.throttled)
    };
    let (posts, hook_throttled) = {
        let log = app.webhooks.log.lock().unwrap();
        (log.posts.clone(), log.throttled)
    };
    // The doubles keep only each card's title (`slim`).
    let title_of = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (conv, activity, _) in &sent {
        *seen.entry((conv.clone(), title_of(activity))).or_default() += 1;
    }
    for (path, body, _) in &posts {
        let p = path.split('?').next().unwrap_or_default().to_string();
        *seen.entry((p, title_of(body))).or_default() += 1;
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    // Every delivery reached the right target: user i % users, channel i % channels.
    let mut misrouted = 0usize;
    for i in 0..notifications {
        let title = format!("Annonce {i}");
        if !seen.contains_key(&(conversation_of((i % users) as i64 + 1), title.clone())) {
            misrouted += 1;
        }
        if !seen.contains_key(&(workflows_path(&format!("chan-{}", i % channels + 1)), title)) {
            misrouted += 1;
        }
    }

    let bot_times: Vec<Instant> = sent.iter().map(|s| s.2).collect();
    let hook_times: Vec<Instant> = posts.iter().map(|p| p.2).collect();
    let (bot_rate, bot_span) = rate(sent.len(), &bot_times);
    let (hook_rate, hook_span) = rate(posts.len(), &hook_times);
    let app_rate = app.connector.app_rate as f64;
    // What the limits allow for this load: the app budget for personal messages (1,000 users
    // never reach a conversation's 7/s), 4/s per webhook for the channels; both run side by side.
    let per_conversation_max = (notifications as f64 / users as f64).ceil();
    let hook_allowed = 4.0 * channels as f64;
    let bound = (notifications as f64 / app_rate).max(notifications as f64 / hook_allowed);
    println!(
        "delivered: {} personal messages + {} channel posts of {} (targets missed: {misrouted})",
        sent.len(),
        posts.len(),
        notifications * 2
    );
    println!("duplicates: {duplicates}");
    println!(
        "429s received: {} from the Connector, {} from webhooks",
        bot_throttled, hook_throttled
    );
    println!(
        "personal messages: {bot_rate:.1}/s over {:.1} s = {:.1}% of the app's {app_rate}/s ({per_conversation_max} per conversation)",
        bot_span.as_secs_f64(),
        100.0 * bot_rate / app_rate
    );
    println!(
        "channel posts: {hook_rate:.1}/s over {:.1} s ({:.1}% of {hook_allowed}/s, 4/s × {channels} webhooks; they share the workers with the personal messages and end with them)",
        hook_span.as_secs_f64(),
        100.0 * hook_rate / hook_allowed
    );
    println!(
        "throughput as a share of the allowed rate: {:.1}% (fastest the limits allow: {bound:.1} s; took {:.1} s)",
        100.0 * bound / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!(
        "queue: {} invocations, {} retried, {} poisoned",
        q.invocations.load(Ordering::Relaxed),
        q.failures.load(Ordering::Relaxed),
        q.poisoned.lock().unwrap().len()
    );
    println!("wall time: {:.1} s", wall.as_secs_f64());
    println!(
        "peak RSS (VmHWM, whole process incl. the doubles, which keep each card's title and arrival, and SQLite): {:.1} MiB; before the run (set up, queue filled): {:.1} MiB",
        status_kib("VmHWM:") as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    Ok(())
}
