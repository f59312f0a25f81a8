//! `bench entra [--users 50000]`: the Entra → Moodle initial round of N generated Entra users
//! (Graph double: delta pages of 200, the throttling table enforced) into the Moodle double, then
//! a run with no change. Both doubles run in a child process (`bench entra-doubles`), so the
//! peak RSS printed (VmHWM of this process) is the bridge's alone: the sync run, its Graph and
//! Moodle clients, the SQLite store and the runtime. Prints wall time, Graph and Moodle calls
//! (per 1,000 users), 429s, and both runs' reports.

use bridge::config::Source;
use bridge::graph::{GraphAuth, GraphClient, GraphSettings};
use bridge::store::sqlite::SqliteStore;
use bridge::store::SharedStore;
use bridge::sync::entra::{EntraEnv, EntraSettings};
use bridge::sync::run::{run_inline, SyncEnv};
use bridge::sync::{SyncOptions, SyncSettings};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use testkit::fake_moodle::FakeMoodle;
use testkit::graph_double::GraphDouble;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

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

fn users_arg(args: &[String]) -> anyhow::Result<usize> {
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
    Ok(users)
}

/// The child: both doubles with N users; one JSON line with their addresses on stdout, then
/// `stats` / `reset` commands on stdin until it closes.
pub async fn doubles(args: &[String]) -> anyhow::Result<()> {
    let users = users_arg(args)?;
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
    let g = graph.settings();
    let GraphAuth::Secret(secret) = &g.auth else {
        anyhow::bail!("the Graph double uses a client secret");
    };
    let m = fake.settings();
    let hello = json!({
        "graph_base": g.base_url.as_str(),
        "graph_token": g.token_endpoint.as_ref().map(|u| u.to_string()),
        "tenant": g.tenant_id,
        "client_id": g.client_id,
        "secret": secret.expose(),
        "ru": g.identity_ru_per_10s,
        "moodle_url": m.url.as_str(),
        "moodle_token": m.token.expose(),
        "max_input_vars": m.max_form_fields,
        "rss_mib": mib(status_kib("VmRSS:")),
    });
    let mut out = tokio::io::stdout();
    out.write_all(format!("{hello}\n").as_bytes()).await?;
    out.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(cmd) = lines.next_line().await? {
        let answer = match cmd.trim() {
            "stats" => {
                let (users, total, writes, calls) = {
                    let st = fake.lock();
                    (
                        st.users.len(),
                        st.total_calls(),
                        st.write_calls(),
                        st.calls.clone(),
                    )
                };
                json!({
                    "moodle_users": users,
                    "moodle_total": total,
                    "moodle_writes": writes,
                    "moodle_calls": calls,
                    "graph_calls": graph.calls(),
                    "graph_throttled": graph.lock().throttled,
                })
            }
            "reset" => {
                fake.reset_calls();
                json!({"ok": true})
            }
            other => json!({"error": format!("unknown command {other:?}")}),
        };
        out.write_all(format!("{answer}\n").as_bytes()).await?;
        out.flush().await?;
    }
    Ok(())
}

struct Child {
    proc: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Child {
    async fn ask(&mut self, cmd: &str) -> anyhow::Result<Value> {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the doubles' process ended"))?;
        Ok(serde_json::from_str(&line)?)
    }
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let users = users_arg(args)?;
    let rss_start = status_kib("VmRSS:");
    let mut proc = tokio::process::Command::new(std::env::current_exe()?)
        .args(["entra-doubles", "--users", &users.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = proc.stdin.take().expect("piped");
    let mut lines = BufReader::new(proc.stdout.take().expect("piped")).lines();
    let hello: Value = serde_json::from_str(
        &lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the doubles' process did not start"))?,
    )?;
    let mut child = Child { proc, stdin, lines };
    let text = |k: &str| hello[k].as_str().unwrap_or_default().to_string();
    let graph_settings = GraphSettings {
        tenant_id: text("tenant"),
        client_id: text("client_id"),
        auth: GraphAuth::Secret(bridge::config::Secret::new(text("secret"))),
        base_url: text("graph_base").parse()?,
        token_endpoint: Some(text("graph_token").parse()?),
        identity_ru_per_10s: hello["ru"].as_u64().unwrap_or(8000) as usize,
        platform_identity: Default::default(),
    };
    let moodle_settings = bridge::config::MoodleSettings {
        url: text("moodle_url").parse()?,
        token: bridge::config::Secret::new(text("moodle_token")),
        max_form_fields: hello["max_input_vars"].as_u64().unwrap_or(1000) as usize,
        timeout_secs: 30,
    };
    let moodle = bridge::moodle::MoodleClient::new(&moodle_settings)?;
    let graph = GraphClient::from_settings(bridge::outbound::http::shared()?, &graph_settings)?;
    let dir = tempfile::tempdir()?;
    let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("bench.sqlite"))?);
    store.ensure_tables().await?;
    let mut src = Source::from_map(BTreeMap::new());
    let entra = EntraSettings::load(&mut src);
    let mut sync = SyncSettings::load(&mut src);
    anyhow::ensure!(src.problems().is_empty(), "{:?}", src.problems());
    sync.removal_max_share = 0.05;
    let env = SyncEnv {
        settings: Arc::new(sync),
        store,
        blobs: None,
        moodle,
        teams: None,
        entra: Some(EntraEnv {
            graph: Arc::new(graph),
            settings: Arc::new(entra),
        }),
    };
    let opts = SyncOptions {
        entra: true,
        ..Default::default()
    };
    let rss_before = status_kib("VmRSS:");
    println!(
        "== Entra initial round: {users} users (every 50th disabled), delta pages of 200; both doubles in a child process (its RSS: {:.1} MiB), over loopback HTTP",
        hello["rss_mib"].as_f64().unwrap_or(0.0)
    );
    println!(
        "bridge process RSS at start {:.1} MiB, before the round {:.1} MiB",
        mib(rss_start),
        mib(rss_before)
    );
    let t = Instant::now();
    let r = run_inline(&env, &opts, None).await?;
    let wall = t.elapsed();
    print!("{}", r.render());
    let stats = child.ask("stats").await?;
    let calls: u64 = r.moodle_calls.values().sum();
    println!("wall time: {:.1}s", wall.as_secs_f64());
    println!(
        "Graph calls: {} ({} 429s answered by the double)",
        r.graph_calls.values().sum::<u64>(),
        stats["graph_throttled"]
    );
    println!(
        "Moodle calls: {calls} = {:.1} per 1,000 users ({:?}); the double counted {}",
        calls as f64 * 1000.0 / users as f64,
        r.moodle_calls,
        stats["moodle_total"]
    );
    println!("Moodle users now: {}", stats["moodle_users"]);
    let hwm = status_kib("VmHWM:");
    println!(
        "peak RSS of the bridge (VmHWM of this process, doubles excluded): {:.1} MiB (target < 100 MiB)",
        mib(hwm)
    );

    child.ask("reset").await?;
    let t = Instant::now();
    let r2 = run_inline(&env, &opts, None).await?;
    let stats = child.ask("stats").await?;
    println!("\n== second run, no change");
    print!("{}", r2.render());
    println!("wall time: {:.3}s", t.elapsed().as_secs_f64());
    println!(
        "Graph calls: {}, Moodle calls: {} (double: {}), Moodle writes: {} (double: {})",
        r2.graph_calls.values().sum::<u64>(),
        r2.moodle_calls.values().sum::<u64>(),
        stats["moodle_total"],
        r2.moodle_writes(),
        stats["moodle_writes"]
    );
    drop(child.stdin);
    let _ = child.proc.wait().await;
    Ok(())
}
