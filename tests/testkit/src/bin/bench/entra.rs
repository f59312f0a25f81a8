//! `bench entra [--users 50000]`: the Entra → Moodle initial round of N generated Entra users
//! (Graph double: delta pages of 200, the throttling table enforced) into the Moodle double, then
//! a run with no change. Prints wall time, Graph and Moodle calls (per 1,000 users), 429s, and
//! peak RSS (VmHWM) of the whole process — which holds both doubles' N users too, so the RSS
//! before the round is printed beside it.

use bridge::config::Source;
use bridge::graph::GraphClient;
use bridge::store::sqlite::SqliteStore;
use bridge::store::SharedStore;
use bridge::sync::entra::{EntraOptions, EntraSettings, EntraSync};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use testkit::fake_moodle::FakeMoodle;
use testkit::graph_double::GraphDouble;

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

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let mut users = 50_000usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--users" {
            users = it
                .next()
                .ok_or_else(|| anyhow::anyhow!("--users N"))?
                .parse()?;
        }
    }
    let graph = GraphDouble::start().await;
    {
        let mut s = graph.lock();
        s.users.delta_page_size = 200;
        for n in 0..users {
            s.users.upsert(json!({
                "id": format!("11111111-1111-4111-8111-{n:012}"),
                "userPrincipalName": format!("eleve{n}@ecole.example"),
                "mail": format!("eleve{n}@ecole.example"),
                "givenName": format!("Prenom{n}"),
                "surname": format!("Nom{n}"),
                "accountEnabled": n % 50 != 0,
                "employeeId": format!("E-{n:06}"),
                "department": format!("Classe {}", n % 40),
            }));
        }
    }
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir()?;
    let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("bench.sqlite"))?);
    store.ensure_tables().await?;
    let mut src = Source::from_map(BTreeMap::new());
    let settings = EntraSettings::load(&mut src);
    anyhow::ensure!(src.problems().is_empty(), "{:?}", src.problems());
    let client = GraphClient::from_settings(bridge::outbound::http::shared()?, &graph.settings())?;
    let moodle = fake.client();
    let sync = EntraSync {
        graph: &client,
        moodle: &moodle,
        store: &store,
        settings: &settings,
        removal_max_share: 0.05,
        opts: EntraOptions::default(),
    };
    let rss_before = status_kib("VmRSS:");
    println!(
        "== Entra initial round: {users} users (every 50th disabled), delta pages of 200, Moodle double over loopback HTTP"
    );
    println!(
        "RSS before the round (both doubles loaded): {:.1} MiB",
        mib(rss_before)
    );
    let t = Instant::now();
    let r = sync.run().await?;
    let wall = t.elapsed();
    print!("{}", r.render());
    let calls = fake.lock().total_calls();
    println!("wall time: {:.1}s", wall.as_secs_f64());
    println!(
        "Graph calls: {} ({} 429s answered by the double)",
        r.graph_calls,
        graph.lock().throttled
    );
    println!(
        "Moodle calls: {calls} = {:.1} per 1,000 users ({:?})",
        calls as f64 * 1000.0 / users as f64,
        fake.calls()
    );
    println!("Moodle users now: {}", fake.lock().users.len());
    let hwm = status_kib("VmHWM:");
    println!(
        "peak RSS (VmHWM, whole process incl. both doubles and SQLite): {:.1} MiB; growth over the pre-round RSS: {:.1} MiB",
        mib(hwm),
        mib(hwm.saturating_sub(rss_before))
    );

    fake.reset_calls();
    let graph_before = graph.calls();
    let t = Instant::now();
    let r2 = sync.run().await?;
    let (total, writes) = {
        let st = fake.lock();
        (st.total_calls(), st.write_calls())
    };
    println!("\n== second run, no change");
    print!("{}", r2.render());
    println!("wall time: {:.3}s", t.elapsed().as_secs_f64());
    println!(
        "Graph calls: {} (double saw {}), Moodle calls: {total}, Moodle writes: {writes}",
        r2.graph_calls,
        graph.calls() - graph_before
    );
    Ok(())
}
