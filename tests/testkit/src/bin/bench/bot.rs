//! `cargo run --release -p testkit --bin bench -- bot [--secs 10] [--concurrency 64] [--users 2000] [--answer-cache-secs 0]`
//!
//! 1. `/api/messages` end to end, in-process on loopback: a valid Bot Connector JWT, a personal
//!    "mes notes" message, the user mapped through the Store, two Moodle reads answered by a
//!    local Moodle double (recorded fixture bodies), and the reply POSTed to a local Connector
//!    double **before** the 200 goes back (the reply is inside the measured latency).
//! 2. JWT validation alone (`TokenValidator::verify` with the key set cached), tight loop.
//!
//! Everything (load generator, app, doubles) shares this machine's cores.
//!
//! The key server and the token endpoint (each called once, then cached) are the tests' doubles
//! (`testkit::bot_app`), and so are the settings, the token and the mappings. The two doubles on
//! the hot path (the Connector's reply route, the Moodle reads) are bare counters here: wiremock
//! keeps a copy of every request, and this measures the bridge, not the doubles.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use bridge::app::AppState;
use bridge::store::SharedStore;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::bot_app::{self, APP_ID};
use testkit::fake_moodle::FakeMoodle;

struct Doubles {
    grades: Value,
    courses: Value,
    moodle_calls: AtomicU64,
    replies: AtomicU64,
}

async fn reply(State(d): State<Arc<Doubles>>, _body: axum::body::Bytes) -> Json<Value> {
    d.replies.fetch_add(1, Ordering::Relaxed);
    Json(json!({"id": "1"}))
}

async fn moodle(State(d): State<Arc<Doubles>>, body: axum::body::Bytes) -> Json<Value> {
    d.moodle_calls.fetch_add(1, Ordering::Relaxed);
    let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    Json(match form.get("wsfunction").map(String::as_str) {
        Some("gradereport_overview_get_course_grades") => d.grades.clone(),
        Some("core_enrol_get_users_courses") => d.courses.clone(),
        _ => json!({"exception": "x", "errorcode": "invalidparameter", "message": "bench double"}),
    })
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One `/api/messages` POST as the Connector sends it.
async fn send(
    client: &reqwest::Client,
    url: &str,
    auth: &str,
    body: bytes::Bytes,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let secs: u64 = arg(args, "--secs", 10);
    let concurrency: usize = arg(args, "--concurrency", 64);
    let users: usize = arg(args, "--users", 2000);
    let cache_secs: u64 = arg(args, "--answer-cache-secs", 0);

    // Doubles: the tests' key server and token endpoint on one server; the Connector and
    // Moodle on another, counting.
    let keys = wiremock::MockServer::start().await;
    bot_app::mount_keys(&keys, testkit::fixture_json("botframework/jwks.json")).await;
    bot_app::mount_token(&keys).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let doubles = Arc::new(Doubles {
        grades: FakeMoodle::fixture_body("gradereport_overview_get_course_grades/student.json"),
        courses: FakeMoodle::fixture_body("core_enrol_get_users_courses/student.json"),
        moodle_calls: AtomicU64::new(0),
        replies: AtomicU64::new(0),
    });
    let double_router = Router::new()
        .route("/emea/v3/conversations/{conv}/activities/{id}", post(reply))
        .route("/webservice/rest/server.php", post(moodle))
        .with_state(doubles.clone());
    tokio::spawn(async move { axum::serve(listener, double_router).await });

    // The app, configured like production but pointed at the doubles.
    let dir = std::env::temp_dir().join(format!("bridge-bench-bot-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = dir.join("bench.sqlite");
    let mut env = bot_app::bot_env(&sqlite, &dir.join("blobs"), &keys.uri(), &keys.uri(), &base);
    let extra = [
        ("MOODLE_URL", base.clone()),
        ("MOODLE_TOKEN", "TOKEN".into()),
        ("BOT_ANSWER_CACHE_SECS", cache_secs.to_string()),
        // The Connector double has no app-wide quota; Teams' 50 per second would make every
        // reply past the 50th of a second go through the queue, and this measures the bridge.
        ("BOT_APP_RATE_PER_SEC", "1000000".into()),
    ];
    env.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    let settings = bridge::settings::Settings::load(&mut bridge::config::Source::from_map(env))?;
    let store: SharedStore = Arc::new(bridge::store::sqlite::SqliteStore::open(&sqlite)?);
    store.ensure_tables().await?;
    for i in 0..users {
        bot_app::map_user(&store, &format!("aad-user-{i}"), 7).await?;
    }
    let blobs = Arc::new(bridge::store::blob::FsBlobStore::new(dir.join("blobs")));
    let state = AppState::from_parts(settings, store, blobs, false)?;
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_addr = app_listener.local_addr()?;
    let router = bridge::app::public_router(state.clone());
    tokio::spawn(async move { axum::serve(app_listener, router).await });

    let service_url = format!("{base}/emea/");
    let token = bot_app::valid_token(&service_url);
    let template: Value = testkit::fixture_json("botframework/message-personal.json");
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        (0..users)
            .map(|i| {
                let mut a = template.clone();
                a["serviceUrl"] = json!(service_url);
                a["id"] = json!(format!("17000000{i}"));
                a["from"]["id"] = json!(format!("29:user-{i}"));
                a["from"]["aadObjectId"] = json!(format!("aad-user-{i}"));
                a["conversation"]["id"] = json!(format!("a:conversation-{i}"));
                a["recipient"]["id"] = json!(format!("28:{APP_ID}"));
                bytes::Bytes::from(a.to_string())
            })
            .collect(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .build()?;
    let url = format!("http://{app_addr}/api/messages");
    let auth = format!("Bearer {token}");

    // Warm-up: every user once (loads keys, token, mappings, conversation references).
    let next = Arc::new(AtomicUsize::new(0));
    let warm: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, auth, bodies, next) = (
                client.clone(),
                url.clone(),
                auth.clone(),
                bodies.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() {
                        break;
                    }
                    let r = send(&client, &url, &auth, bodies[i].clone()).await;
                    if !matches!(r, Ok(ref r) if r.status() == 200) {
                        eprintln!("warm-up request failed: {:?}", r.map(|r| r.status()));
                    }
                }
            })
        })
        .collect();
    for w in warm {
        w.await?;
    }
    let (calls0, replies0) = (
        doubles.moodle_calls.load(Ordering::Relaxed),
        doubles.replies.load(Ordering::Relaxed),
    );

    // Measured run.
    let deadline = Instant::now() + Duration::from_secs(secs);
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, auth, bodies, next, errors) = (
                client.clone(),
                url.clone(),
                auth.clone(),
                bodies.clone(),
                next.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(50_000);
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed) % bodies.len();
                    let t = Instant::now();
                    let r = send(&client, &url, &auth, bodies[i].clone()).await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            lat.push(t.elapsed());
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let n = all.len();
    let calls = doubles.moodle_calls.load(Ordering::Relaxed) - calls0;
    let replies = doubles.replies.load(Ordering::Relaxed) - replies0;
    println!("== /api/messages (valid JWT, personal 'mes notes', Moodle double, reply POSTed to Connector double before the 200)");
    println!(
        "   concurrency {concurrency}, {users} users, answer cache {cache_secs}s, {:.1} s: {n} ok, {} errors",
        elapsed.as_secs_f64(),
        errors.load(Ordering::Relaxed)
    );
    println!(
        "   {:.0} req/s   p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        n as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.50).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "   Moodle calls {calls} ({:.2}/request), Connector replies {replies}",
        calls as f64 / n.max(1) as f64
    );

    // JWT validation alone: the full check (signature + claims), then the path requests take
    // (the same Bot Connector token reused: signature checked once, times checked every call).
    let bot = state
        .bot
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("bot not configured"))?;
    bot.validator
        .verify(&token)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    for cached in [false, true] {
        let count = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(3);
        let started = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (state, token, count) = (state.clone(), token.clone(), count.clone());
                tokio::spawn(async move {
                    let v = &state.bot.as_ref().expect("bot").validator;
                    let mut local = 0u64;
                    while Instant::now() < deadline {
                        for _ in 0..64 {
                            let ok = if cached {
                                v.verify(&token).await.is_ok()
                            } else {
                                v.verify_uncached(&token, chrono::Utc::now().timestamp())
                                    .await
                                    .is_ok()
                            };
                            local += u64::from(ok);
                        }
                        tokio::task::yield_now().await;
                    }
                    count.fetch_add(local, Ordering::Relaxed);
                })
            })
            .collect();
        for w in workers {
            w.await?;
        }
        let elapsed = started.elapsed();
        let total = count.load(Ordering::Relaxed);
        let what = if cached {
            "JWT validation as requests do it (same token reused: exp/nbf checked, signature cached)"
        } else {
            "JWT validation alone, full (RS256 2048-bit signature via ring + iss/aud/exp/nbf/serviceurl), key cached"
        };
        println!("== {what}, {threads} tasks");
        println!(
            "   {total} in {:.1} s: {:.0} verifications/s ({:.1} µs each per core)",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 * threads as f64 / total.max(1) as f64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
