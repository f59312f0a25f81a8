//! `bench teams [--courses N] [--members M] [--concurrency C]`: Moodle courses → Teams, N courses (default 1,000)
//! of M members each (default 30: one teacher, the rest students), against the Moodle double and
//! the Graph double enforcing Graph's throttling table, over loopback HTTP.
//!
//! Run 1 asks for every team (`POST /groups`, `POST /teams`: the 10 rps limit binds); run 2 (the
//! operations made due, as `TEAMS_POLL_SECS` later would) polls them and adds the members
//! (`members/add`: the 30 rps Teams write limit binds); run 3 changes nothing. For runs 1 and 2 it
//! prints the binding limit's calls per second as "NN% of the allowed rate", the 429s received,
//! and the wall time; for run 3 the Graph calls and Moodle writes.

use bridge::config::Source;
use bridge::graph::GraphClient;
use bridge::store::sqlite::SqliteStore;
use bridge::store::{tables, BatchOp, SharedStore};
use bridge::sync::run::{run_inline, SyncEnv};
use bridge::sync::{SyncOptions, SyncSettings};
use bridge::teams_sync::{link, users, TeamsEnv, TeamsSettings};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use testkit::fake_moodle::{FakeMoodle, FakeUser};
use testkit::graph_double::{teams, GraphDouble};

fn entra(moodle_id: i64) -> String {
    format!("11111111-1111-4111-8111-{moodle_id:012x}")
}

fn arg(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or_else(|| anyhow::anyhow!("{name} N"))?
            .parse()?),
        None => Ok(default),
    }
}

async fn make_polls_due(store: &SharedStore) -> anyhow::Result<()> {
    let mut next = None;
    loop {
        let page = store
            .query(tables::MAPPINGS, link::COURSE_PK, next.as_deref(), 1000)
            .await?;
        for e in page.entities {
            if let Some(mut l) = e.json::<link::CourseTeam>("link")? {
                l.polled_at -= 3600;
                link::save(store, &l).await?;
            }
        }
        match page.next {
            Some(n) => next = Some(n),
            None => return Ok(()),
        }
    }
}

fn calls_of(graph: &GraphDouble, method: &str, suffix: &str, from: usize) -> usize {
    graph.lock().log[from..]
        .iter()
        .filter(|(m, p)| m == method && p.split('?').next().is_some_and(|p| p.ends_with(suffix)))
        .count()
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let courses = arg(args, "--courses", 1_000)?;
    let members = arg(args, "--members", 30)?.max(1);
    let concurrency = match arg(args, "--concurrency", 0)? {
        0 => None,
        n => Some(n),
    };
    let fake = FakeMoodle::start().await;
    let graph = GraphDouble::start().await;
    teams::with(&graph, |t| t.polls_to_finish = 0);
    let dir = std::env::temp_dir().join(format!("bench-teams-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store: SharedStore = Arc::new(SqliteStore::open(&dir.join("bench.sqlite"))?);
    store.ensure_tables().await?;
    let t = Instant::now();
    let mut links = Vec::new();
    {
        let mut st = fake.lock();
        for c in 0..courses {
            let course = st.insert_course(&format!("C{c:04}"), &format!("ID-C{c:04}"), 1);
            for m in 0..members {
                let id = st.insert_user(FakeUser {
                    username: format!("u{c}-{m}"),
                    firstname: "U".into(),
                    lastname: format!("{c}-{m}"),
                    email: format!("u{c}-{m}@lab.example.test"),
                    auth: "manual".into(),
                    ..Default::default()
                });
                st.enrolments
                    .insert((if m == 0 { 3 } else { 5 }, id, course));
                links.push(users::link_row(&entra(id), id));
            }
        }
    }
    for chunk in links.chunks(100) {
        let ops = chunk.iter().cloned().map(BatchOp::Upsert).collect();
        store.batch(tables::MAPPINGS, "entra-user", ops).await?;
    }
    println!(
        "set up {courses} courses × {members} members, {} Entra links, in {:.1}s",
        links.len(),
        t.elapsed().as_secs_f64()
    );
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    map.insert("TEAMS_COURSES".into(), "all".into());
    if let Some(c) = concurrency {
        map.insert("TEAMS_CONCURRENCY".into(), c.to_string());
    }
    let mut src = Source::from_map(map);
    let settings = TeamsSettings::load(&mut src);
    anyhow::ensure!(src.problems().is_empty(), "{:?}", src.problems());
    println!(
        "TEAMS_CONCURRENCY={} (courses worked at once)",
        settings.concurrency
    );
    let client = GraphClient::from_settings(bridge::outbound::http::shared()?, &graph.settings())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let moodle = fake.client();
    let env = SyncEnv {
        settings: Arc::new(SyncSettings::load(&mut Source::default())),
        store: store.clone(),
        blobs: None,
        moodle: moodle.clone(),
        teams: Some(TeamsEnv {
            settings: Arc::new(settings),
            store: store.clone(),
            moodle,
            graph: Arc::new(client),
            after_ready: None,
        }),
        entra: None,
    };
    let opts = SyncOptions {
        teams: true,
        ..Default::default()
    };

    let throttled_before = std::cell::Cell::new(0u64);
    let phase = |name: &str, limit: &str, per_sec: f64, calls: usize, wall: f64, from: usize| {
        let (total, throttled) = {
            let s = graph.lock();
            (s.log.len() - from, s.throttled - throttled_before.get())
        };
        throttled_before.set(throttled_before.get() + throttled);
        let rate = calls as f64 / wall;
        println!("\n== {name}");
        println!("wall time: {wall:.1}s; Graph calls: {total}");
        println!(
            "{limit}: {calls} calls, {rate:.2}/s = {:.0}% of the allowed rate ({per_sec}/s)",
            100.0 * rate / per_sec
        );
        println!(
            "429s received: {throttled} ({:.2}% of calls)",
            100.0 * throttled as f64 / total.max(1) as f64
        );
    };

    let from = graph.calls();
    let t = Instant::now();
    let r1 = run_inline(&env, &opts, None).await?;
    let wall1 = t.elapsed().as_secs_f64();
    print!(
        "{}",
        r1.render().lines().take(8).collect::<Vec<_>>().join("\n")
    );
    let posts = calls_of(&graph, "POST", "/teams", from);
    phase(
        "run 1: every team requested",
        "POST /teams (10 rps per app and tenant)",
        10.0,
        posts,
        wall1,
        from,
    );

    make_polls_due(&store).await?;
    let from = graph.calls();
    let t = Instant::now();
    let r2 = run_inline(&env, &opts, None).await?;
    let wall2 = t.elapsed().as_secs_f64();
    print!(
        "\n{}",
        r2.render().lines().take(8).collect::<Vec<_>>().join("\n")
    );
    let adds = calls_of(&graph, "POST", "/members/add", from);
    phase(
        "run 2: operations polled, members added",
        "POST members/add (Teams writes: 30 rps per app and tenant)",
        30.0,
        adds,
        wall2,
        from,
    );
    let in_teams: usize = teams::with(&graph, |t| t.teams.values().map(|x| x.members.len()).sum());
    println!(
        "members in teams: {in_teams} (expected {})",
        courses * members
    );

    let from = graph.calls();
    fake.reset_calls();
    let t = Instant::now();
    let r3 = run_inline(&env, &opts, None).await?;
    let wall3 = t.elapsed().as_secs_f64();
    let calls3 = graph.calls() - from;
    println!("\n== run 3: no change");
    let (moodle_calls, moodle_writes) = {
        let st = fake.lock();
        (st.total_calls(), st.write_calls())
    };
    println!(
        "wall time: {wall3:.1}s; Graph calls: {calls3} ({:.2} per 100 courses); Moodle calls: {moodle_calls}, writes: {moodle_writes}",
        100.0 * calls3 as f64 / courses as f64,
    );
    println!(
        "teams unchanged: {}",
        r3.counts.get("teams").map(|c| c.unchanged).unwrap_or(0)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
