//! Entra → Moodle users (`sync::entra`) against the Graph double and the Moodle double: create,
//! link, update, suspend / re-enable, delete, each switch; matching; the creation filter; the
//! link rows the bot reads; incremental runs (a no-change run is one Graph call, no Moodle call);
//! removals never after a failed read and refused above the share unless forced; full rounds
//! after every expiry form; simulation writes nothing. Every run goes through the sync's run
//! (`run_inline`, or the SyncTimer → `sync-work` → SyncWorker path), so the pass reports into
//! the run report and uses the engine's writers and retry set.

use bridge::config::Source;
use bridge::graph::GraphClient;
use bridge::store::sqlite::SqliteStore;
use bridge::store::{tables, SharedStore};
use bridge::sync::entra::{EntraEnv, EntraSettings, ENTITY};
use bridge::sync::run::{apply_shard, plan_run, run_inline, SyncEnv};
use bridge::sync::{RunReport, SyncOptions, SyncSettings};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use testkit::fake_moodle::{FakeMoodle, FakeUser};
use testkit::graph_double::{DeltaExpiry, Fault, GraphDouble};

const CLAIRE: &str = "11111111-1111-4111-8111-000000000001";
const LOUIS: &str = "11111111-1111-4111-8111-000000000002";
const EMMA: &str = "11111111-1111-4111-8111-000000000003";
const JADE: &str = "11111111-1111-4111-8111-000000000007";
const NATHAN: &str = "11111111-1111-4111-8111-000000000006";

/// The users of the delta fixtures (claire, louis, emma without mail, jade, nathan disabled).
fn fixture_users() -> Vec<Value> {
    [
        "graph/users-delta-initial-page1.json",
        "graph/users-delta-initial-last.json",
    ]
    .iter()
    .flat_map(|f| {
        testkit::fixture_json(f)["response"]["body"]["value"]
            .as_array()
            .unwrap()
            .clone()
    })
    .filter(|u| u.get("@removed").is_none())
    .collect()
}

struct World {
    graph: GraphDouble,
    client: Arc<GraphClient>,
    moodle: FakeMoodle,
    store: SharedStore,
    settings: EntraSettings,
    sync: SyncSettings,
    share: f64,
    _dir: tempfile::TempDir,
}

/// What the assertions read: the entity's counts and the round's summary of one run report.
#[derive(Debug)]
struct Ran {
    /// Every page read, nothing refused, the delta link moved on (simulations: would have).
    complete: bool,
    full_round: bool,
    linked: u64,
    created: u64,
    updated: u64,
    suspended: u64,
    reenabled: u64,
    deleted: u64,
    skipped: BTreeMap<String, String>,
    failed: BTreeMap<String, String>,
    removals_refused: Option<String>,
    graph_calls: u64,
    moodle_writes: u64,
    trace: Vec<String>,
    report: RunReport,
}

impl Ran {
    fn of(report: RunReport) -> Ran {
        let e = report.entra.clone().expect("the Entra pass ran");
        let c = report.counts.get(&ENTITY).cloned().unwrap_or_default();
        let issues = |outcome: &str| -> BTreeMap<String, String> {
            report
                .issues
                .iter()
                .filter(|i| i.entity == ENTITY && i.outcome == outcome)
                .map(|i| (i.key.clone(), i.reason.clone()))
                .collect()
        };
        Ran {
            complete: report.complete
                && report.errors.is_empty()
                && (e.delta_advanced || report.options.simulate),
            full_round: e.full_round,
            linked: e.linked,
            created: c.created,
            updated: c.updated,
            suspended: e.suspended,
            reenabled: e.reenabled,
            deleted: e.deleted,
            skipped: issues("skipped"),
            failed: issues("failed"),
            removals_refused: e.removals_refused.clone(),
            graph_calls: report.graph_calls.values().sum(),
            moodle_writes: report.moodle_writes(),
            trace: report.trace.clone(),
            report,
        }
    }

    fn render(&self) -> String {
        self.report.render()
    }
}

impl World {
    async fn new(pairs: &[(&str, &str)]) -> World {
        let graph = GraphDouble::start().await;
        {
            let mut s = graph.lock();
            for u in fixture_users() {
                s.users.upsert(u);
            }
            s.users.delta_page_size = 2;
        }
        let moodle = FakeMoodle::start().await;
        // Claire already has a Moodle account (another username): linked by e-mail.
        moodle.lock().insert_user(FakeUser {
            username: "cmartin".into(),
            firstname: "Claire".into(),
            lastname: "Martin".into(),
            email: "claire.martin@ecole.example".into(),
            auth: "manual".into(),
            ..Default::default()
        });
        let mut client =
            GraphClient::from_settings(reqwest::Client::new(), &graph.settings()).unwrap();
        client.retry = bridge::outbound::RetryPolicy {
            max_attempts: 3,
            base_backoff: std::time::Duration::from_millis(10),
            max_backoff: std::time::Duration::from_millis(50),
            max_total_wait: std::time::Duration::from_secs(5),
        };
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
        store.ensure_tables().await.unwrap();
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut src = Source::from_map(env);
        let settings = EntraSettings::load(&mut src);
        assert!(src.problems().is_empty(), "{:?}", src.problems());
        let sync = SyncSettings::load(&mut src);
        World {
            graph,
            client: Arc::new(client),
            moodle,
            store,
            settings,
            sync,
            share: 0.5,
            _dir: dir,
        }
    }

    fn env(&self) -> SyncEnv {
        let mut sync = self.sync.clone();
        sync.removal_max_share = self.share;
        SyncEnv {
            settings: Arc::new(sync),
            store: self.store.clone(),
            blobs: None,
            moodle: self.moodle.client(),
            teams: None,
            entra: Some(EntraEnv {
                graph: self.client.clone(),
                settings: Arc::new(self.settings.clone()),
            }),
        }
    }

    async fn report_with(&self, opts: SyncOptions) -> RunReport {
        let opts = SyncOptions {
            entra: true,
            ..opts
        };
        run_inline(&self.env(), &opts, None).await.unwrap()
    }

    async fn run_with(&self, opts: SyncOptions) -> Ran {
        Ran::of(self.report_with(opts).await)
    }

    async fn run(&self) -> Ran {
        self.run_with(SyncOptions::default()).await
    }

    fn moodle_user(&self, username: &str) -> Option<FakeUser> {
        self.moodle.lock().user_by_username(username).cloned()
    }

    async fn moodle_id_of(&self, entra: &str) -> Option<i64> {
        self.store
            .get(tables::MAPPINGS, "entra-user", entra)
            .await
            .unwrap()
            .and_then(|e| e.int("moodle_user_id"))
    }
}

#[tokio::test]
async fn first_run_creates_links_and_leaves_disabled_users_out_then_a_quiet_run_is_one_call() {
    let w = World::new(&[]).await;
    let r = w.run().await;
    assert!(r.complete, "{}", r.render());
    assert!(r.full_round);
    assert_eq!(r.linked, 1, "claire found by e-mail: {}", r.render());
    assert_eq!(r.created, 3, "louis, emma, jade: {}", r.render());
    assert!(r.skipped.contains_key(NATHAN), "disabled: no account");
    let louis = w
        .moodle_user("louis.bernard@ecole.example")
        .expect("created");
    assert_eq!(
        (louis.firstname.as_str(), louis.department.as_str()),
        ("Louis", "2nde B")
    );
    assert_eq!(louis.auth, "oauth2");
    let emma = w.moodle_user("emma.petit@ecole.example").expect("created");
    assert_eq!(
        emma.email, "emma.petit@ecole.example",
        "no mail: the UPN stands in"
    );
    // The link the bot and the notifications read, both ways.
    let claire_id = w.moodle_user("cmartin").unwrap().id;
    assert_eq!(w.moodle_id_of(CLAIRE).await, Some(claire_id));
    let reverse = w
        .store
        .get(tables::MAPPINGS, "moodle-user", &claire_id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reverse.str("entra_object_id"), Some(CLAIRE));
    assert!(w.moodle_user("nathan.fournier@ecole.example").is_none());

    let before = w.graph.calls();
    let moodle_before = w.moodle.lock().total_calls();
    let r = w.run().await;
    assert!(r.complete && !r.full_round, "{}", r.render());
    assert_eq!(w.graph.calls() - before, 1, "no change: one Graph call");
    assert_eq!(r.graph_calls, 1);
    assert_eq!(
        w.moodle.lock().total_calls() - moodle_before,
        0,
        "no change: no Moodle call"
    );
    assert_eq!(r.moodle_writes, 0);
}

#[tokio::test]
async fn changes_update_suspend_and_reenable_only_what_changed() {
    let w = World::new(&[]).await;
    w.run().await;
    w.graph
        .lock()
        .users
        .patch(LOUIS, json!({"department": "1ere C"}));
    w.graph
        .lock()
        .users
        .patch(JADE, json!({"accountEnabled": false}));
    let r = w.run().await;
    assert!(r.complete, "{}", r.render());
    assert_eq!(
        (r.updated, r.suspended, r.created),
        (1, 1, 0),
        "{}",
        r.render()
    );
    assert_eq!(
        w.moodle_user("louis.bernard@ecole.example")
            .unwrap()
            .department,
        "1ere C"
    );
    assert!(w.moodle_user("jade.roux@ecole.example").unwrap().suspended);

    w.graph
        .lock()
        .users
        .patch(JADE, json!({"accountEnabled": true}));
    let r = w.run().await;
    assert_eq!(r.reenabled, 1, "{}", r.render());
    assert!(!w.moodle_user("jade.roux@ecole.example").unwrap().suspended);

    // Re-enabling only undoes this sync's suspensions: an account suspended in Moodle stays so.
    let claire = w.moodle_user("cmartin").unwrap().id;
    w.moodle.lock().users.get_mut(&claire).unwrap().suspended = true;
    w.graph
        .lock()
        .users
        .patch(CLAIRE, json!({"department": "Physique"}));
    let r = w.run().await;
    assert_eq!(r.reenabled, 0, "{}", r.render());
    assert!(w.moodle.lock().users[&claire].suspended);
}

#[tokio::test]
async fn each_switch_holds_its_operation_back() {
    let w = World::new(&[("ENTRA_SYNC_CREATE", "false")]).await;
    let r = w.run().await;
    assert_eq!((r.created, r.linked), (0, 1), "{}", r.render());
    let w = World::new(&[
        ("ENTRA_SYNC_UPDATE", "false"),
        ("ENTRA_SYNC_SUSPEND", "false"),
    ])
    .await;
    w.run().await;
    w.graph.lock().users.patch(
        LOUIS,
        json!({"department": "1ere C", "accountEnabled": false}),
    );
    let r = w.run().await;
    assert_eq!((r.updated, r.suspended), (0, 0), "{}", r.render());
    let louis = w.moodle_user("louis.bernard@ecole.example").unwrap();
    assert_eq!(louis.department, "2nde B");
    assert!(!louis.suspended);
}

#[tokio::test]
async fn removed_users_are_suspended_and_deleted_only_when_deletion_is_on() {
    let w = World::new(&[]).await;
    w.run().await;
    w.graph.lock().users.remove(LOUIS, true);
    w.graph.lock().users.remove(EMMA, false);
    let r = w.run().await;
    assert_eq!(
        (r.suspended, r.deleted),
        (2, 0),
        "delete is off by default: {}",
        r.render()
    );
    assert!(
        w.moodle_user("louis.bernard@ecole.example")
            .unwrap()
            .suspended
    );

    let w = World::new(&[("ENTRA_SYNC_DELETE", "true")]).await;
    w.run().await;
    w.graph.lock().users.remove(LOUIS, true);
    w.graph.lock().users.remove(EMMA, false);
    let r = w.run().await;
    assert_eq!((r.suspended, r.deleted), (1, 1), "{}", r.render());
    assert!(
        w.moodle_user("louis.bernard@ecole.example").is_none(),
        "permanently deleted in Entra"
    );
    assert!(
        w.moodle_user("emma.petit@ecole.example").unwrap().suspended,
        "soft delete: suspended"
    );
    assert_eq!(
        w.moodle_id_of(LOUIS).await,
        None,
        "link rows of a deleted account are gone"
    );
}

#[tokio::test]
async fn removals_above_the_share_are_refused_unless_forced_and_the_round_repeats() {
    let mut w = World::new(&[]).await;
    w.share = 0.05;
    w.run().await;
    w.graph
        .lock()
        .users
        .patch(LOUIS, json!({"accountEnabled": false}));
    let r = w.run().await;
    assert!(!r.complete, "{}", r.render());
    assert!(r
        .removals_refused
        .as_deref()
        .unwrap()
        .contains("SYNC_REMOVAL_MAX_SHARE"));
    assert!(
        !w.moodle_user("louis.bernard@ecole.example")
            .unwrap()
            .suspended
    );
    // Not advanced: the next run sees the same change (and refuses again) until forced.
    let r = w.run().await;
    assert!(r.removals_refused.is_some());
    let r = w
        .run_with(SyncOptions {
            force: true,
            ..Default::default()
        })
        .await;
    assert!(r.complete && r.suspended == 1, "{}", r.render());
    assert!(
        w.moodle_user("louis.bernard@ecole.example")
            .unwrap()
            .suspended
    );
}

#[tokio::test]
async fn a_failed_read_suspends_nothing_and_keeps_the_checkpoint() {
    let w = World::new(&[]).await;
    w.run().await;
    w.graph
        .lock()
        .users
        .patch(LOUIS, json!({"accountEnabled": false}));
    w.graph.lock().users.upsert(json!({"id": "11111111-1111-4111-8111-000000000009", "userPrincipalName": "x@ecole.example", "givenName": "X", "surname": "Y", "mail": "x@ecole.example"}));
    w.graph.lock().users.upsert(json!({"id": "11111111-1111-4111-8111-000000000010", "userPrincipalName": "z@ecole.example", "givenName": "Z", "surname": "Y", "mail": "z@ecole.example"}));
    // Page 1 (louis + x) reads, page 2 (a skip-token link) fails.
    let flaky = FlakyAfterFirst::install(&w.graph);
    let r = w.run().await;
    flaky.stop(&w.graph);
    assert!(!r.complete, "{}", r.render());
    assert_eq!(
        r.suspended,
        0,
        "never suspend after a partial read: {}",
        r.render()
    );
    assert!(
        !w.moodle_user("louis.bernard@ecole.example")
            .unwrap()
            .suspended
    );
    let r = w.run().await;
    assert!(r.complete, "{}", r.render());
    assert_eq!(
        r.suspended,
        1,
        "the same round, now complete: {}",
        r.render()
    );
}

/// Makes every delta page after the first of a round fail with 500.
struct FlakyAfterFirst;

impl FlakyAfterFirst {
    fn install(g: &GraphDouble) -> Self {
        let mut s = g.lock();
        s.faults.push(Fault {
            method: None,
            path_prefix: "/users/delta?$skiptoken".into(),
            status: 500,
            retry_after: None,
            times: 1000,
        });
        FlakyAfterFirst
    }

    fn stop(self, g: &GraphDouble) {
        g.lock().faults.clear();
    }
}

#[tokio::test]
async fn an_expired_delta_state_gives_a_full_round_that_suspends_who_is_gone() {
    for form in [
        DeltaExpiry::Gone,
        DeltaExpiry::ResyncRequired,
        DeltaExpiry::GonePascalCase,
    ] {
        let w = World::new(&[]).await;
        w.run().await;
        {
            let mut s = w.graph.lock();
            s.users.remove(EMMA, true);
            s.users.expire_delta_tokens(form);
        }
        let r = w.run().await;
        assert!(r.complete && r.full_round, "{form:?}: {}", r.render());
        assert_eq!(
            r.suspended,
            1,
            "{form:?}: emma not listed by the full round: {}",
            r.render()
        );
        assert_eq!((r.created, r.updated), (0, 0), "{form:?}: {}", r.render());
    }
}

#[tokio::test]
async fn simulation_writes_nothing_anywhere() {
    let w = World::new(&[]).await;
    let r = w
        .run_with(SyncOptions {
            simulate: true,
            verbose: true,
            ..Default::default()
        })
        .await;
    assert_eq!((r.created, r.linked), (3, 1), "{}", r.render());
    assert_eq!(w.moodle.lock().write_calls(), 0);
    assert_eq!(w.graph.lock().count("POST", "/"), 0);
    assert_eq!(w.moodle_id_of(CLAIRE).await, None, "no link row");
    assert!(!r.trace.is_empty());
    // Nothing remembered: the real run starts from the beginning.
    let r = w.run().await;
    assert!(r.full_round && r.created == 3, "{}", r.render());
}

#[tokio::test]
async fn creation_filters_by_attribute_or_group() {
    let w = World::new(&[("ENTRA_CREATE_FILTER", "department=2nde*")]).await;
    let r = w.run().await;
    assert_eq!(
        r.created,
        3,
        "louis, emma, jade are in 2nde: {}",
        r.render()
    );
    let w = World::new(&[("ENTRA_CREATE_FILTER", "group:g1")]).await;
    w.graph
        .lock()
        .users
        .groups
        .insert("g1".into(), vec![JADE.into()]);
    let r = w.run().await;
    assert_eq!(r.created, 1, "{}", r.render());
    assert!(w.moodle_user("jade.roux@ecole.example").is_some());
    assert!(r.skipped[LOUIS].contains("ENTRA_CREATE_FILTER"));
    assert_eq!(
        w.graph.lock().count("GET", "/groups/g1/members"),
        1,
        "members read once per run"
    );
}

#[tokio::test]
async fn matching_by_a_chosen_attribute_and_ent_link_mode() {
    let w = World::new(&[("ENTRA_MATCH", "username=onPremisesSamAccountName")]).await;
    let r = w.run().await;
    assert_eq!(
        r.linked,
        1,
        "cmartin = onPremisesSamAccountName: {}",
        r.render()
    );
    let w = World::new(&[("ENTRA_ENT_LINK", "mail=mail")]).await;
    let r = w.run().await;
    assert_eq!(
        (r.linked, r.created, r.updated),
        (1, 0, 0),
        "{}",
        r.render()
    );
    assert!(w.moodle_id_of(CLAIRE).await.is_some());
}

#[tokio::test]
async fn a_missing_permission_stops_the_run_and_names_it() {
    let w = World::new(&[]).await;
    w.graph.deny("User.Read.All");
    let r = w.report_with(SyncOptions::default()).await;
    assert!(!r.complete, "{}", r.render());
    let err = r.errors.join("; ");
    assert!(err.contains("User.Read.All"), "{err}");
    assert_eq!(w.moodle.lock().write_calls(), 0);
}

#[tokio::test]
async fn a_refused_create_waits_in_the_retry_set_and_goes_through_on_a_quiet_run() {
    let w = World::new(&[]).await;
    // Every create refused as bad data: each batch is bisected down to single users, all fail.
    w.moodle
        .fail_with_exception("core_user_create_users", "invalidparameter");
    let r = w.run().await;
    assert_eq!((r.created, r.linked), (0, 1), "{}", r.render());
    assert_eq!(r.failed.len(), 3, "louis, emma, jade: {}", r.render());
    assert!(r.failed[LOUIS].contains("create"), "{:?}", r.failed);
    assert_eq!(r.report.waiting.values().sum::<u64>(), 3, "{}", r.render());
    let creates = r.report.moodle_calls["core_user_create_users"];
    assert!(
        creates > 1,
        "the refused batch was bisected: {creates} calls"
    );

    // Entra does not change, so the delta round lists nobody: the retry set re-reads them by id.
    w.moodle.clear_failures();
    let before = w.graph.calls();
    let r = w.run().await;
    assert!(r.complete, "{}", r.render());
    assert_eq!(r.created, 3, "{}", r.render());
    assert_eq!(r.report.retry_examined, 3, "{}", r.render());
    assert_eq!(
        w.graph.calls() - before,
        2,
        "one delta call and one $batch of the three waiting users"
    );
    assert!(r.report.waiting.is_empty(), "{}", r.render());
    assert!(w.moodle_user("jade.roux@ecole.example").is_some());
    assert!(w.moodle_id_of(JADE).await.is_some(), "linked");

    let moodle_before = w.moodle.lock().total_calls();
    let r = w.run().await;
    assert_eq!(r.graph_calls, 1, "nothing waits any more: {}", r.render());
    assert_eq!(w.moodle.lock().total_calls() - moodle_before, 0);
}

#[tokio::test]
async fn the_timer_plans_an_entra_shard_only_when_entra_sync_is_on() {
    let off = World::new(&[]).await;
    let shards = plan_run(&off.env(), &SyncOptions::scheduled())
        .await
        .unwrap();
    assert!(
        !shards.iter().any(|s| s.population == "entra"),
        "ENTRA_SYNC is off by default: {:?}",
        shards.iter().map(|s| &s.population).collect::<Vec<_>>()
    );
    let on = World::new(&[("ENTRA_SYNC", "true")]).await;
    let shards = plan_run(&on.env(), &SyncOptions::scheduled())
        .await
        .unwrap();
    let names: Vec<&str> = shards.iter().map(|s| s.population.as_str()).collect();
    assert!(names.contains(&"entra"), "{names:?}");
    assert!(
        names.len() > 1,
        "beside the directory's populations: {names:?}"
    );
    // The message goes through the queue as JSON; a worker applies it.
    let msg = shards.iter().find(|s| s.population == "entra").unwrap();
    let shard = bridge::sync::shard::Shard::parse(&msg.to_json()).unwrap();
    let r = apply_shard(&on.env(), &shard).await.unwrap();
    assert_eq!(r.shard.as_deref(), Some("entra"));
    let r = Ran::of(r);
    assert_eq!((r.created, r.linked), (3, 1), "{}", r.render());
    assert!(on.moodle_user("louis.bernard@ecole.example").is_some());
}

#[tokio::test]
async fn a_worker_applies_the_entra_shard_and_ends_the_run_then_a_quiet_run_is_one_call() {
    let w = World::new(&[]).await;
    let env = w.env();
    let only_entra = SyncOptions {
        entra: true,
        ..Default::default()
    };
    let shards = plan_run(&env, &only_entra).await.unwrap();
    assert_eq!(shards.len(), 1, "{shards:?}");
    assert_eq!(shards[0].population, "entra");
    let r = Ran::of(apply_shard(&env, &shards[0]).await.unwrap());
    assert!(r.complete && r.full_round, "{}", r.render());
    assert_eq!((r.created, r.linked), (3, 1), "{}", r.render());
    assert!(r.skipped.contains_key(NATHAN), "disabled: no account");
    // The last (only) shard ends the run: summary with the Entra figures, lease released.
    let run = w
        .store
        .get(tables::RUNS, &shards[0].run_id, "run")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.str("status"), Some("done"));
    let summary: RunReport = run.json("report").unwrap().unwrap();
    assert_eq!(summary.entra.as_ref().map(|e| e.linked), Some(1));
    assert_eq!(summary.counts[&ENTITY].created, 3);

    let shards = plan_run(&env, &only_entra).await.expect("lease free again");
    let graph_before = w.graph.calls();
    let moodle_before = w.moodle.lock().total_calls();
    let r = Ran::of(apply_shard(&env, &shards[0]).await.unwrap());
    assert!(r.complete && !r.full_round, "{}", r.render());
    assert_eq!(
        w.graph.calls() - graph_before,
        1,
        "no change: one Graph call"
    );
    assert_eq!(
        w.moodle.lock().total_calls() - moodle_before,
        0,
        "and no Moodle call"
    );
}

#[tokio::test]
async fn a_worker_given_a_missing_permission_fails_the_shard_for_good_naming_it() {
    let w = World::new(&[]).await;
    let env = w.env();
    let shards = plan_run(
        &env,
        &SyncOptions {
            entra: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    w.graph.deny("User.Read.All");
    let err = apply_shard(&env, &shards[0]).await.expect_err("refused");
    assert!(!err.retryable(), "no retry grants a permission: {err}");
    assert!(err.to_string().contains("User.Read.All"), "{err}");
}

// ---------------------------------------------------------------- profile photos (ENTRA_SYNC_PHOTO)

/// The photo step's summary of a run.
fn photos(r: &Ran) -> bridge::sync::report::PhotoSummary {
    r.report
        .entra
        .as_ref()
        .and_then(|e| e.photos.clone())
        .unwrap_or_default()
}

/// Photo issues of a run: key → (outcome, reason).
fn photo_issues(r: &Ran) -> BTreeMap<String, (String, String)> {
    r.report
        .issues
        .iter()
        .filter(|i| i.entity == bridge::sync::entra::photo::ENTITY)
        .map(|i| (i.key.clone(), (i.outcome.clone(), i.reason.clone())))
        .collect()
}

impl World {
    /// Photo metadata reads and binary downloads Graph served so far (inside `$batch` too).
    fn photo_reads(&self) -> (usize, usize) {
        let s = self.graph.lock();
        let all: Vec<&(String, String)> = s.log.iter().chain(&s.batch_log).collect();
        let meta = all.iter().filter(|(_, p)| p.ends_with("/photo")).count();
        let bytes = all
            .iter()
            .filter(|(_, p)| p.ends_with("/photo/$value"))
            .count();
        (meta, bytes)
    }

    fn uploads(&self) -> u64 {
        self.moodle
            .calls()
            .get(bridge::moodle::client::UPLOAD_CALL)
            .copied()
            .unwrap_or(0)
    }

    fn picture_of(&self, username: &str) -> Option<Vec<u8>> {
        let m = self.moodle.lock();
        let id = m.user_by_username(username)?.id;
        m.pictures.get(&id).cloned()
    }

    fn set_photo(&self, id: &str, photo: Option<testkit::graph_double::Photo>) {
        let mut s = self.graph.lock();
        match photo {
            Some(p) => s.users.photos.insert(id.to_string(), p),
            None => s.users.photos.remove(id),
        };
    }
}

const LOUIS_LOGIN: &str = "louis.bernard@ecole.example";

#[tokio::test]
async fn photos_are_set_for_created_and_linked_users_and_a_quiet_run_reads_none() {
    use testkit::graph_double::Photo;
    let w = World::new(&[("ENTRA_SYNC_PHOTO", "true")]).await;
    w.set_photo(CLAIRE, Some(Photo::jpeg("claire")));
    w.set_photo(LOUIS, Some(Photo::jpeg("louis")));
    // Emma and Jade have no photo: Graph answers 404 ImageNotFound.
    let r = w.run().await;
    assert!(r.complete, "{}", r.render());
    assert_eq!((r.created, r.linked), (3, 1), "{}", r.render());
    let p = photos(&r);
    assert_eq!(
        (p.checked, p.updated, p.none, p.failed, p.refused),
        (4, 2, 2, 0, 0),
        "{}",
        r.render()
    );
    assert!(
        photo_issues(&r).is_empty(),
        "no photo is no issue: {:?}",
        photo_issues(&r)
    );
    assert_eq!(w.picture_of("cmartin"), Some(Photo::jpeg("claire").bytes));
    assert_eq!(w.picture_of(LOUIS_LOGIN), Some(Photo::jpeg("louis").bytes));
    assert_eq!(w.picture_of("emma.petit@ecole.example"), None);
    assert_eq!(
        w.photo_reads(),
        (4, 2),
        "metadata for 4, bytes for the 2 photos"
    );
    assert_eq!(w.uploads(), 2);
    // The link row keeps what was seen (the bot's fields stay as they were).
    let row = w
        .store
        .get(tables::MAPPINGS, "entra-user", LOUIS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.str("photo_etag"), Photo::jpeg("louis").etag.as_deref());
    assert!(row.int("photo_checked_at").is_some() && row.int("moodle_user_id").is_some());

    // Nothing changed and no re-check is due: still one Graph call and no Moodle call.
    let before = w.graph.calls();
    let moodle_before = w.moodle.lock().total_calls();
    let r = w.run().await;
    assert!(r.complete, "{}", r.render());
    assert_eq!(
        w.graph.calls() - before,
        1,
        "no change with photos on: one Graph call"
    );
    assert_eq!(r.graph_calls, 1, "{}", r.render());
    assert_eq!(w.moodle.lock().total_calls() - moodle_before, 0);
    assert_eq!(photos(&r).checked, 0, "{}", r.render());

    // A field change rewrites the link row: the photo's etag stays on it.
    w.graph
        .lock()
        .users
        .patch(LOUIS, json!({"department": "1ere C"}));
    let r = w.run().await;
    assert_eq!(r.updated, 1, "{}", r.render());
    let row = w
        .store
        .get(tables::MAPPINGS, "entra-user", LOUIS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.str("photo_etag"), Photo::jpeg("louis").etag.as_deref());
    assert_eq!(w.uploads(), 2, "a field change does not re-send the photo");
}

#[tokio::test]
async fn photos_are_rechecked_once_due_and_only_a_changed_one_is_downloaded_and_uploaded() {
    use testkit::graph_double::Photo;
    let w = World::new(&[("ENTRA_SYNC_PHOTO", "true")]).await;
    w.set_photo(CLAIRE, Some(Photo::jpeg("claire")));
    w.set_photo(LOUIS, Some(Photo::jpeg("louis")));
    w.run().await;
    assert_eq!(w.uploads(), 2);
    // Louis changes his photo: delta says nothing, and no re-check is due yet.
    w.set_photo(LOUIS, Some(Photo::jpeg("louis, new haircut")));
    let r = w.run().await;
    assert_eq!(
        (photos(&r).checked, r.graph_calls),
        (0, 1),
        "{}",
        r.render()
    );

    // A week later (the last checks made older than ENTRA_PHOTO_RECHECK_HOURS = 168).
    let week_ago = chrono::Utc::now().timestamp() - 169 * 3600;
    for id in [CLAIRE, LOUIS, EMMA, JADE] {
        let mut e = w
            .store
            .get(tables::MAPPINGS, "entra-user", id)
            .await
            .unwrap()
            .unwrap();
        e.set("photo_checked_at", week_ago);
        w.store.upsert(tables::MAPPINGS, &e).await.unwrap();
    }
    let mut due = w
        .store
        .get(tables::CHECKPOINTS, "entra", "photos-next-due")
        .await
        .unwrap()
        .expect("the next due time is kept");
    assert!(due.int("next_due").unwrap() > chrono::Utc::now().timestamp() + 160 * 3600);
    due.set("next_due", week_ago + 168 * 3600);
    w.store.upsert(tables::CHECKPOINTS, &due).await.unwrap();

    let (meta, bytes) = w.photo_reads();
    let before = w.graph.calls();
    let r = w.run().await;
    assert!(r.complete, "{}", r.render());
    let p = photos(&r);
    assert_eq!(
        (p.rechecked, p.updated, p.unchanged, p.none),
        (4, 1, 1, 2),
        "{}",
        r.render()
    );
    assert_eq!(
        w.photo_reads(),
        (meta + 4, bytes + 1),
        "metadata of the 4, only Louis's new photo downloaded"
    );
    assert_eq!(
        w.graph.calls() - before,
        3,
        "delta + one $batch of metadata + one download"
    );
    assert_eq!(w.uploads(), 3, "only the changed photo re-uploaded");
    assert_eq!(
        w.picture_of(LOUIS_LOGIN),
        Some(Photo::jpeg("louis, new haircut").bytes)
    );
    // Checked again now: the next run has nothing due.
    let r = w.run().await;
    assert_eq!(
        (photos(&r).checked, r.graph_calls),
        (0, 1),
        "{}",
        r.render()
    );
}

#[tokio::test]
async fn a_photo_without_etag_is_compared_by_its_hash() {
    use testkit::graph_double::Photo;
    let w = World::new(&[
        ("ENTRA_SYNC_PHOTO", "true"),
        ("ENTRA_PHOTO_RECHECK_HOURS", "0"),
    ])
    .await;
    let mut p = Photo::jpeg("louis");
    p.etag = None;
    w.set_photo(LOUIS, Some(p.clone()));
    w.run().await;
    assert_eq!(w.uploads(), 1);
    // Every run re-checks (0 hours); without an etag the bytes are fetched and hashed, not re-sent.
    let r = w.run().await;
    let s = photos(&r);
    assert_eq!(
        (s.rechecked, s.unchanged, s.updated),
        (4, 1, 0),
        "{}",
        r.render()
    );
    assert_eq!(w.uploads(), 1, "same bytes: not uploaded again");
    p.bytes.push(0);
    w.set_photo(LOUIS, Some(p));
    let r = w.run().await;
    assert_eq!(photos(&r).updated, 1, "{}", r.render());
    assert_eq!(w.uploads(), 2);
}

#[tokio::test]
async fn too_large_or_non_image_photos_are_refused_with_a_clear_issue_and_not_fetched_again() {
    use testkit::graph_double::Photo;
    let w = World::new(&[
        ("ENTRA_SYNC_PHOTO", "true"),
        ("ENTRA_PHOTO_RECHECK_HOURS", "0"),
    ])
    .await;
    let mut big = Photo::jpeg("louis");
    big.bytes
        .resize(bridge::sync::entra::photo::MAX_PHOTO_BYTES + 1, 0);
    big.etag = Some("W/\"big\"".into());
    w.set_photo(LOUIS, Some(big));
    let mut html = Photo::jpeg("jade");
    html.content_type = "text/html".into();
    w.set_photo(JADE, Some(html));
    // Says it is a JPEG, is not one.
    let mut fake = Photo::jpeg("claire");
    fake.bytes = b"<html>not a photo</html>".to_vec();
    w.set_photo(CLAIRE, Some(fake));
    let r = w.run().await;
    assert!(
        r.complete,
        "photo refusals never fail the run: {}",
        r.render()
    );
    assert_eq!(
        r.created,
        3,
        "the users themselves went through: {}",
        r.render()
    );
    let p = photos(&r);
    assert_eq!((p.refused, p.updated, p.none), (3, 0, 1), "{}", r.render());
    let issues = photo_issues(&r);
    assert_eq!(issues[LOUIS].0, "refused");
    assert!(issues[LOUIS].1.contains("4 MiB cap"), "{:?}", issues[LOUIS]);
    assert!(issues[JADE].1.contains("text/html"), "{:?}", issues[JADE]);
    assert!(
        issues[CLAIRE].1.contains("not a JPEG, PNG or GIF"),
        "{:?}",
        issues[CLAIRE]
    );
    assert_eq!(w.uploads(), 0);
    assert!(w.moodle.lock().pictures.is_empty());
    // Jade's type is refused from the metadata: never downloaded. The next look sees the same
    // etags and fetches nothing again.
    let (_, bytes) = w.photo_reads();
    assert_eq!(
        bytes, 2,
        "Louis (refused from its size) and Claire (from its bytes)"
    );
    let r = w.run().await;
    assert_eq!(w.photo_reads().1, 2, "{}", r.render());
    assert_eq!(photos(&r).unchanged, 3, "{}", r.render());
}

#[tokio::test]
async fn simulation_reads_no_photo_and_writes_nothing() {
    use testkit::graph_double::Photo;
    let w = World::new(&[("ENTRA_SYNC_PHOTO", "true")]).await;
    w.set_photo(CLAIRE, Some(Photo::jpeg("claire")));
    w.set_photo(LOUIS, Some(Photo::jpeg("louis")));
    let r = w
        .run_with(SyncOptions {
            simulate: true,
            ..Default::default()
        })
        .await;
    let p = photos(&r);
    assert_eq!(
        (p.checked, p.updated),
        (4, 4),
        "would look at 4: {}",
        r.render()
    );
    assert!(r.render().contains("would be checked"), "{}", r.render());
    assert_eq!(w.photo_reads(), (0, 0), "no photo read");
    assert_eq!(w.graph.lock().count("POST", "/"), 0);
    assert_eq!(w.uploads(), 0);
    assert_eq!(w.moodle.lock().write_calls(), 0);
    assert!(w.moodle.lock().drafts.is_empty() && w.moodle.lock().pictures.is_empty());
    assert!(w
        .store
        .get(tables::CHECKPOINTS, "entra", "photos-next-due")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_photo_failure_is_an_issue_that_fails_nothing_else_and_is_retried_next_run() {
    use testkit::graph_double::Photo;
    let w = World::new(&[("ENTRA_SYNC_PHOTO", "true")]).await;
    w.set_photo(CLAIRE, Some(Photo::jpeg("claire")));
    w.set_photo(LOUIS, Some(Photo::jpeg("louis")));
    w.moodle.lock().editprofile = false;
    let r = w.run().await;
    assert!(r.complete, "{}", r.render());
    assert_eq!((r.created, r.linked), (3, 1), "{}", r.render());
    assert!(r.failed.is_empty(), "no user failed: {:?}", r.failed);
    let issues = photo_issues(&r);
    let failed: Vec<&(String, String)> = issues.values().filter(|(o, _)| o == "failed").collect();
    assert_eq!(failed.len(), 2, "{issues:?}");
    assert!(
        failed
            .iter()
            .all(|(_, why)| why.contains("grant moodle/user:editprofile")),
        "{failed:?}"
    );
    assert!(
        r.report
            .warnings
            .iter()
            .any(|w| w.contains("photos: stopped")),
        "the missing capability stops the photo step, not the run: {:?}",
        r.report.warnings
    );
    assert_eq!(
        w.moodle.calls().get("core_user_update_picture").copied(),
        Some(1),
        "one refusal, then no more tries this run"
    );
    assert!(
        r.report.waiting.is_empty(),
        "users do not wait in the retry set for a photo"
    );

    // Granted: the next run (a quiet one for the users) retries the two photos.
    w.moodle.lock().editprofile = true;
    let r = w.run().await;
    assert!(r.complete, "{}", r.render());
    assert_eq!(photos(&r).updated, 2, "{}", r.render());
    assert!(photo_issues(&r).is_empty());
    assert_eq!(w.picture_of("cmartin"), Some(Photo::jpeg("claire").bytes));
    let r = w.run().await;
    assert_eq!(
        (photos(&r).checked, r.graph_calls),
        (0, 1),
        "{}",
        r.render()
    );

    // Uploads switched off on the service: the reason says which switch.
    let w = World::new(&[("ENTRA_SYNC_PHOTO", "true")]).await;
    w.set_photo(LOUIS, Some(Photo::jpeg("louis")));
    w.moodle.lock().uploadfiles = false;
    let r = w.run().await;
    let issues = photo_issues(&r);
    assert!(issues[LOUIS].1.contains("uploadfiles"), "{issues:?}");
}

#[tokio::test]
async fn check_config_names_what_photos_need_on_the_moodle_side() {
    let moodle = FakeMoodle::start().await;
    let needed = bridge::moodle::access::PHOTO_FUNCTIONS;
    let ok = bridge::moodle::access::check(&moodle.client(), needed).await;
    assert!(ok.is_ok(), "{ok:?}");
    moodle.lock().uploadfiles = false;
    let err = bridge::moodle::access::check(&moodle.client(), needed)
        .await
        .unwrap_err();
    assert!(err.contains("Can upload files"), "{err}");
}
