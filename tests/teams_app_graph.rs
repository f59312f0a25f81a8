//! Teams app publish and install (issue 18 item 4) against the Graph double's catalog and
//! installation routes and an Entra double for the admin's device-code sign-in.

use base64::Engine;
use bridge::app::AppState;
use bridge::bot::conversations::{self, ConversationKind, ConversationRef};
use bridge::config::Source;
use bridge::outbound::AccessToken;
use bridge::settings::Settings;
use bridge::teams_app::catalog::{self, Catalog, Published, SignIn};
use bridge::teams_app::install::{self, Outcome};
use bridge::teams_app::{manifest::Inputs, package};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::graph_double::{Fault, GraphDouble};
use testkit::teams_app_double::{self as apps, EntraDouble, Poll, DELEGATED_TOKEN, REFRESH_TOKEN};

const TEAM_A: &str = "22222222-2222-4222-8222-000000000001";
const TEAM_B: &str = "22222222-2222-4222-8222-000000000002";
const USER: &str = "11111111-1111-4111-8111-000000000002";

struct World {
    graph: GraphDouble,
    entra: EntraDouble,
    state: AppState,
    dir: tempfile::TempDir,
}

async fn world(polls: Vec<Poll>, extra: &[(&str, &str)]) -> World {
    bridge::install_crypto_provider();
    let graph = GraphDouble::start().await;
    apps::register(&graph);
    graph.accept_token(DELEGATED_TOKEN);
    let entra = EntraDouble::start(polls).await;
    let dir = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let mut map: std::collections::BTreeMap<String, String> = graph.env().into_iter().collect();
    for (k, v) in [
        ("BOT_APP_ID", "00000000-bbbb-4bbb-8bbb-000000000003"),
        ("BOT_TENANT_ID", "00000000-aaaa-4aaa-8aaa-000000000001"),
        ("BOT_APP_PASSWORD", "pw-123456"),
        ("PUBLIC_URL", "https://bridge.example.org"),
        ("MOODLE_URL", "https://moodle.example.org"),
        ("MOODLE_TOKEN", "tok-123456"),
        (
            "TEAMS_APP_PUBLISH_CLIENT_ID",
            "00000000-cccc-4ccc-8ccc-000000000004",
        ),
        ("TEAMS_APP_TOKEN_KEY", key.as_str()),
        ("TEAMS_APP_AUTHORITY", entra.authority().as_str()),
    ] {
        map.insert(k.into(), v.into());
    }
    map.insert(
        "SQLITE_PATH".into(),
        dir.path().join("b.sqlite").display().to_string(),
    );
    map.insert(
        "BLOB_DIR".into(),
        dir.path().join("blobs").display().to_string(),
    );
    map.insert(
        "TEAMS_APP_TOKEN_FILE".into(),
        dir.path().join("token.enc").display().to_string(),
    );
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    let settings = Settings::load(&mut Source::from_map(map)).expect("settings");
    let state = AppState::build(settings, false).await.expect("state");
    state.store.ensure_tables().await.unwrap();
    World {
        graph,
        entra,
        state,
        dir,
    }
}

async fn sign_in(w: &World) -> (Result<AccessToken, String>, Vec<String>) {
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let p = prompts.clone();
    let r = SignIn::from_settings(&w.state.settings, w.state.http.clone())
        .unwrap()
        .token(
            w.state.http.clone(),
            move |d| p.lock().unwrap().push(d.user_code.clone()),
            Some(Duration::from_millis(5)),
        )
        .await
        .map_err(|e| e.to_string());
    let prompts = prompts.lock().unwrap().clone();
    (r, prompts)
}

async fn build(w: &World) -> package::Built {
    package::build_and_store(&w.state.settings, w.state.blobs.as_ref())
        .await
        .unwrap()
}

fn app_id(w: &World) -> String {
    Inputs::from_settings(&w.state.settings).unwrap().app_id
}

fn catalog_for(w: &World, token: AccessToken) -> Catalog {
    Catalog::new(
        w.state.http.clone(),
        catalog::graph_base(&w.state.settings),
        token,
    )
}

#[tokio::test]
async fn device_code_sign_in_then_first_publish_update_and_a_kept_refresh_token() {
    let w = world(vec![Poll::Pending, Poll::SlowDown, Poll::Success], &[]).await;
    let (token, prompts) = sign_in(&w).await;
    let token = token.unwrap();
    assert_eq!(prompts, [apps::USER_CODE]);
    {
        let e = w.entra.state.lock().unwrap();
        assert_eq!(e.poll_count, 3, "pending, slow_down, then success");
        assert!(e
            .forms
            .iter()
            .all(|f| f["client_id"] == "00000000-cccc-4ccc-8ccc-000000000004"));
    }
    // The refresh token is kept, encrypted, owner-only.
    let file = w.dir.path().join("token.enc");
    let raw = std::fs::read(&file).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains(REFRESH_TOKEN));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let first = build(&w).await;
    let cat = catalog_for(&w, token);
    let r = cat
        .publish(&first.zip, &app_id(&w), "1.0.0", false)
        .await
        .unwrap();
    assert!(matches!(r.outcome, Published::Created { .. }), "{r:?}");
    assert!(!r.requires_review && !r.conflict_resolved);
    assert_eq!(w.graph.lock().count("POST", "/appCatalogs/teamsApps"), 1);
    // Publishing the same version again sends nothing.
    let again = cat
        .publish(&first.zip, &app_id(&w), "1.0.0", false)
        .await
        .unwrap();
    assert!(
        matches!(again.outcome, Published::AlreadyCurrent { .. }),
        "{again:?}"
    );
    assert_eq!(w.graph.lock().count("POST", "/appCatalogs/teamsApps"), 1);

    // A changed package is a new definition of the same catalog app.
    let mut settings = w.state.settings.clone();
    settings.teams_app.name_short = "Moodle lycée".into();
    let second = package::build_and_store(&settings, w.state.blobs.as_ref())
        .await
        .unwrap();
    assert_eq!(second.latest.version, "1.0.1");
    let r2 = cat
        .publish(&second.zip, &app_id(&w), "1.0.1", false)
        .await
        .unwrap();
    assert_eq!(
        r2.outcome,
        Published::Updated {
            catalog_id: r.catalog_id().to_string()
        }
    );
    let defs = apps::with_apps(&w.graph, |a| a.catalog[0].definitions.clone());
    assert_eq!(
        defs,
        [
            ("1.0.0".into(), "published".into()),
            ("1.0.1".into(), "published".into())
        ]
    );

    // Submitted for review: reported as such, the definition waits.
    settings.teams_app.name_short = "Moodle collège".into();
    let third = package::build_and_store(&settings, w.state.blobs.as_ref())
        .await
        .unwrap();
    let r3 = cat
        .publish(&third.zip, &app_id(&w), "1.0.2", true)
        .await
        .unwrap();
    assert!(r3.requires_review, "{r3:?}");
    assert!(w
        .graph
        .lock()
        .log
        .iter()
        .any(|(_, p)| p.ends_with("/appDefinitions?requiresReview=true")));

    // Next sign-in: the kept refresh token, no new device code.
    let (token, prompts) = sign_in(&w).await;
    assert!(token.is_ok() && prompts.is_empty());
    let e = w.entra.state.lock().unwrap();
    assert_eq!((e.device_requests, e.refresh_requests), (1, 1));
}

#[tokio::test]
async fn a_409_on_first_publish_becomes_an_update_and_app_only_tokens_are_refused() {
    let w = world(vec![Poll::Success], &[]).await;
    let (token, _) = sign_in(&w).await;
    let zip = build(&w).await.zip;
    apps::with_apps(&w.graph, |a| a.conflict_next_publish = true);
    let r = catalog_for(&w, token.unwrap())
        .publish(&zip, &app_id(&w), "1.0.0", false)
        .await
        .unwrap();
    assert!(r.conflict_resolved, "{r:?}");
    assert!(matches!(r.outcome, Published::Updated { .. }), "{r:?}");
    assert_eq!(
        w.graph.lock().count("POST", "/appCatalogs/teamsApps/"),
        1,
        "then appDefinitions"
    );

    // An app-only token: Graph refuses, the error names the delegated permission.
    w.graph.accept_token("app-only-token");
    let app_only = AccessToken::expiring_in(
        bridge::config::Secret::new("app-only-token"),
        Duration::from_secs(600),
    );
    let mut settings = w.state.settings.clone();
    settings.teams_app.version = Some("2.0.0".into());
    let zip2 = package::build_and_store(&settings, w.state.blobs.as_ref())
        .await
        .unwrap()
        .zip;
    let err = catalog_for(&w, app_only)
        .publish(&zip2, &app_id(&w), "2.0.0", false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AppCatalog.ReadWrite.All (delegated only)"),
        "{err}"
    );
}

#[tokio::test]
async fn an_expired_device_code_fails_the_sign_in_and_nothing_is_kept() {
    let w = world(vec![Poll::Pending, Poll::Expired], &[]).await;
    let (token, prompts) = sign_in(&w).await;
    let err = token.unwrap_err();
    assert!(err.contains("expired"), "{err}");
    assert_eq!(prompts.len(), 1);
    assert!(!w.dir.path().join("token.enc").exists());
}

/// Publishes 1.0.0 and marks two synced teams.
async fn published_world() -> World {
    let w = world(vec![Poll::Success], &[]).await;
    let (token, _) = sign_in(&w).await;
    let zip = build(&w).await.zip;
    catalog_for(&w, token.unwrap())
        .publish(&zip, &app_id(&w), "1.0.0", false)
        .await
        .unwrap();
    apps::with_apps(&w.graph, |a| a.teams = vec![TEAM_A.into(), TEAM_B.into()]);
    // Written by the course sync's own link writer, so the reader follows its format.
    use bridge::teams_sync::link::{self, CourseTeam, Stage};
    for (course, team, stage) in [
        (7, TEAM_A, Stage::Active),
        (8, TEAM_B, Stage::Active),
        (
            9,
            "33333333-0000-4000-8000-000000000009",
            Stage::Provisioning,
        ),
    ] {
        let mut l = CourseTeam::new(
            course,
            format!("c{course}"),
            format!("Course {course}"),
            stage,
        );
        l.team_id = Some(team.to_string());
        link::save(&w.state.store, &l).await.unwrap();
    }
    w
}

fn outcomes(r: &install::InstallReport) -> Vec<(String, Outcome)> {
    r.targets
        .iter()
        .map(|t| (t.id.clone(), t.outcome.clone()))
        .collect()
}

#[tokio::test]
async fn installs_in_synced_teams_and_for_a_user_then_skips_then_upgrades_after_an_update() {
    let w = published_world().await;
    let users = vec![USER.to_string()];
    let r = install::install_from_settings(&w.state, true, &users)
        .await
        .unwrap();
    assert_eq!(r.version, "1.0.0");
    assert_eq!(
        outcomes(&r),
        [
            (TEAM_A.into(), Outcome::Installed),
            (TEAM_B.into(), Outcome::Installed),
            (USER.into(), Outcome::Installed),
        ],
        "only active course teams; {r:?}"
    );
    assert_eq!(
        r.targets[2].chat_id.as_deref(),
        Some(apps::chat_id(USER).as_str())
    );
    let conv = conversations::load(&w.state.store, ConversationKind::User, USER)
        .await
        .unwrap()
        .expect("stored conversation");
    assert_eq!(conv.conversation_id, apps::chat_id(USER));
    assert_eq!(conv.service_url, "https://smba.trafficmanager.net/teams/");
    assert_eq!(
        conv.bot_id.as_deref(),
        Some("28:00000000-bbbb-4bbb-8bbb-000000000003")
    );

    // Nothing to do the second time: no install call goes out.
    let posts = w.graph.lock().count("POST", "/teams/");
    let r = install::install_from_settings(&w.state, true, &users)
        .await
        .unwrap();
    assert!(
        r.targets.iter().all(|t| t.outcome == Outcome::Current),
        "{r:?}"
    );
    assert_eq!(w.graph.lock().count("POST", "/teams/"), posts);

    // A catalog update: teams and the user's personal install are upgraded.
    apps::with_apps(&w.graph, |a| {
        a.catalog[0]
            .definitions
            .push(("1.0.1".into(), "published".into()))
    });
    let r = install::install_from_settings(&w.state, true, &users)
        .await
        .unwrap();
    assert_eq!(r.version, "1.0.1");
    assert_eq!(
        outcomes(&r),
        [
            (
                TEAM_A.into(),
                Outcome::Upgraded {
                    from: "1.0.0".into()
                }
            ),
            (
                TEAM_B.into(),
                Outcome::Upgraded {
                    from: "1.0.0".into()
                }
            ),
            (
                USER.into(),
                Outcome::Upgraded {
                    from: "1.0.0".into()
                }
            ),
        ]
    );
    let versions = apps::with_apps(&w.graph, |a| {
        a.team_installs
            .values()
            .chain(a.user_installs.values())
            .map(|i| i.version.clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(versions, ["1.0.1", "1.0.1", "1.0.1"]);
    assert_eq!(
        w.graph
            .lock()
            .count("POST", &format!("/users/{USER}/teamwork/installedApps/")),
        1,
        "one upgrade call for the user"
    );
    // Upgraded targets are current now: the next run sends nothing.
    let posts = w.graph.lock().count("POST", "/");
    let r = install::install_from_settings(&w.state, true, &users)
        .await
        .unwrap();
    assert!(
        r.targets.iter().all(|t| t.outcome == Outcome::Current),
        "{r:?}"
    );
    assert_eq!(w.graph.lock().count("POST", "/"), posts);
}

#[tokio::test]
async fn a_409_is_already_installed_and_a_known_conversation_is_kept() {
    let w = published_world().await;
    // Installed by someone else under an id the lookup does not match: the POST answers 409.
    apps::with_apps(&w.graph, |a| {
        a.team_installs.insert(
            TEAM_A.into(),
            apps::Installation {
                id: "other".into(),
                app_id: "someone-else".into(),
                version: "1.0.0".into(),
            },
        );
    });
    let known = ConversationRef {
        kind: ConversationKind::User,
        key: USER.into(),
        conversation_id: "a:real-conversation".into(),
        service_url: "https://smba.trafficmanager.net/emea/".into(),
        tenant_id: None,
        user_id: Some("29:real".into()),
        team_id: None,
        team_name: None,
        bot_id: None,
        locale: Some("fr-FR".into()),
    };
    conversations::save(&w.state.store, &known).await.unwrap();
    let r = install::install_from_settings(&w.state, true, &[USER.to_string()])
        .await
        .unwrap();
    assert_eq!(r.targets[0].outcome, Outcome::AlreadyInstalled, "{r:?}");
    assert_eq!(r.targets[2].outcome, Outcome::Installed);
    let conv = conversations::load(&w.state.store, ConversationKind::User, USER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        conv.conversation_id, "a:real-conversation",
        "learned from the bot's traffic: kept"
    );
}

#[tokio::test]
async fn a_403_names_the_missing_permission_and_stops_and_a_429_is_waited_out() {
    let w = published_world().await;
    // 429 with a fractional Retry-After on the first install: waited out, then installed.
    w.graph.inject(Fault {
        method: Some("POST".into()),
        path_prefix: format!("/teams/{TEAM_A}/installedApps"),
        status: 429,
        retry_after: Some("0.4".into()),
        times: 1,
    });
    let started = Instant::now();
    let r = install::install_from_settings(&w.state, true, &[])
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.targets[0].outcome, Outcome::Installed, "{r:?}");
    assert_eq!(
        w.graph
            .lock()
            .count("POST", &format!("/teams/{TEAM_A}/installedApps")),
        2
    );

    // Without the install permission: the report names it and stops at the first team.
    apps::with_apps(&w.graph, |a| a.team_installs.clear());
    w.graph.deny("TeamsAppInstallation.ReadWriteForTeam.All");
    let r = install::install_from_settings(&w.state, true, &[USER.to_string()])
        .await
        .unwrap();
    let stopped = r.stopped.clone().expect("stopped");
    assert!(
        stopped.contains("TeamsAppInstallation.ReadWriteForTeam.All"),
        "{stopped}"
    );
    assert_eq!(r.targets.len(), 1, "stopped after the first refusal: {r:?}");
    assert!(r.targets[0].to_string().contains("FAILED"));
}

#[tokio::test]
async fn users_named_by_upn_or_moodle_username_are_resolved_and_each_reported() {
    use bridge::teams_app::install::{Installer, UserRef};
    const ALICE: &str = "11111111-1111-4111-8111-000000000011";
    const BOB: &str = "11111111-1111-4111-8111-000000000012";
    const CAROL: &str = "11111111-1111-4111-8111-000000000013";
    let w = published_world().await;
    {
        let mut g = w.graph.lock();
        for (id, upn) in [
            (ALICE, "Alice.Martin@school.example"),
            (BOB, "bob.durand@school.example"),
            (CAROL, "carol.petit@school.example"),
        ] {
            g.users.upsert(
                serde_json::json!({"id": id, "userPrincipalName": upn, "accountEnabled": true}),
            );
        }
    }
    let fake = testkit::fake_moodle::FakeMoodle::start().await;
    let (bob_moodle, _carol_moodle) = {
        let mut m = fake.lock();
        let user = |username: &str, email: &str| testkit::fake_moodle::FakeUser {
            username: username.into(),
            firstname: username.into(),
            lastname: "Test".into(),
            email: email.into(),
            auth: "oauth2".into(),
            ..Default::default()
        };
        (
            // Bob's account is linked (the sync's / the bot's link); his e-mail is not his UPN.
            m.insert_user(user("bdurand", "b.durand@home.example")),
            // Carol's is not linked; her e-mail is her UPN.
            m.insert_user(user("cpetit", "Carol.Petit@school.example")),
        )
    };
    bridge::bot::mapping::remember_pair(
        &w.state.store,
        BOB,
        bridge::ids::MoodleUserId::new(bob_moodle).unwrap(),
    )
    .await
    .unwrap();
    let graph = bridge::graph::GraphClient::from_settings(
        w.state.http.clone(),
        w.state.settings.graph.as_ref().unwrap(),
    )
    .unwrap();
    let app = install::catalog_app(&graph, &app_id(&w))
        .await
        .unwrap()
        .unwrap();
    let moodle = fake.client();
    let installer = Installer {
        graph: &graph,
        store: &w.state.store,
        moodle: Some(&moodle),
        app,
        version: "1.0.0".into(),
        bot_id: Some("28:00000000-bbbb-4bbb-8bbb-000000000003".into()),
        tenant_id: None,
        service_url: "https://smba.trafficmanager.net/teams/".into(),
    };
    let names = [
        "alice.martin@SCHOOL.example",
        "bdurand",
        "cpetit",
        "nobody",
        "ghost@school.example",
        ALICE,
    ];
    let users: Vec<UserRef> = names.iter().map(|n| UserRef::parse(n).unwrap()).collect();
    let r = installer.run(&[], &users).await;
    assert!(r.stopped.is_none(), "{r:?}");
    let got: Vec<(String, Option<String>, bool)> = r
        .targets
        .iter()
        .map(|t| {
            (
                t.id.clone(),
                t.object_id.clone(),
                matches!(t.outcome, Outcome::Failed(_)),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "alice.martin@school.example".into(),
                Some(ALICE.into()),
                false
            ),
            ("bdurand".into(), Some(BOB.into()), false),
            ("cpetit".into(), Some(CAROL.into()), false),
            ("nobody".into(), None, true),
            ("ghost@school.example".into(), None, true),
            (ALICE.into(), Some(ALICE.into()), false),
        ],
        "{r:?}"
    );
    assert_eq!(r.targets[0].outcome, Outcome::Installed);
    assert_eq!(
        r.targets[5].outcome,
        Outcome::Current,
        "Alice named twice: installed once, then skipped"
    );
    assert!(
        r.targets[0].to_string().starts_with(&format!(
            "user alice.martin@school.example ({ALICE}): installed"
        )),
        "{}",
        r.targets[0]
    );
    let nobody = r.targets[3].to_string();
    assert!(
        nobody.contains("FAILED") && nobody.contains("no Moodle user nobody"),
        "{nobody}"
    );
    let ghost = r.targets[4].to_string();
    assert!(
        ghost.contains("no Entra user has the UPN ghost@school.example"),
        "{ghost}"
    );
    // Each resolved user's personal chat is stored under the object id.
    for oid in [ALICE, BOB, CAROL] {
        let conv = conversations::load(&w.state.store, ConversationKind::User, oid)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("conversation of {oid}"));
        assert_eq!(conv.conversation_id, apps::chat_id(oid));
    }
    assert_eq!(apps::with_apps(&w.graph, |a| a.user_installs.len()), 3);
}

#[test]
fn user_names_are_parsed_at_the_boundary() {
    use bridge::teams_app::install::UserRef;
    assert_eq!(
        UserRef::parse(" 11111111-1111-4111-8111-0000000000AB ").unwrap(),
        UserRef::ObjectId("11111111-1111-4111-8111-0000000000ab".into())
    );
    assert_eq!(
        UserRef::parse("Jean.O'Neil+x@School.example").unwrap(),
        UserRef::Upn("jean.o'neil+x@school.example".into())
    );
    assert_eq!(
        UserRef::parse("JDupont").unwrap(),
        UserRef::MoodleUsername("jdupont".into())
    );
    for bad in ["", "  ", "two words", "@school.example", "a/b@c.d", "é"] {
        assert!(UserRef::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[tokio::test]
async fn install_before_publish_says_so() {
    let w = world(vec![Poll::Success], &[]).await;
    let err = install::install_from_settings(&w.state, true, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not in the organisation's catalog"), "{err}");
    let err = install::install_from_settings(
        &w.state,
        false,
        &["alice@school".to_string(), "not a name!".to_string()],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--users") && err.contains("not a name!") && !err.contains("alice@school"),
        "only the malformed name is refused, before any call: {err}"
    );
}

#[test]
fn publish_without_a_sign_in_prints_the_manual_upload_path() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("BOT_APP_ID", "00000000-bbbb-4bbb-8bbb-000000000003"),
        ("BOT_TENANT_ID", "00000000-aaaa-4aaa-8aaa-000000000001"),
        ("BOT_APP_PASSWORD", "pw-123456"),
        ("PUBLIC_URL", "https://bridge.example.org"),
        ("MOODLE_URL", "https://moodle.example.org"),
        ("MOODLE_TOKEN", "tok-123456"),
    ];
    let out = dir.path().join("pkg.zip");
    let (code, text) = testkit::app::run_cli(
        dir.path(),
        &env,
        &["teams-app", "publish", "--out", out.to_str().unwrap()],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("TEAMS_APP_PUBLISH_CLIENT_ID"), "{text}");
    assert!(
        text.contains(&format!("upload {} by hand", out.display())),
        "{text}"
    );
    assert!(out.exists());
}

#[tokio::test]
async fn the_install_timer_keeps_synced_teams_in_step_and_idles_without_a_published_app() {
    let ctx = bridge::host::functions::InvocationContext {
        invocation_id: bridge::ids::InvocationId::new("timer-1").unwrap(),
        function: "TeamsAppInstall",
    };
    let timer = || bridge::host::TimerInfo {
        is_past_due: false,
        last: None,
        next: None,
    };
    let idle = world(vec![Poll::Success], &[]).await;
    let out = bridge::teams_app::functions::on_timer(&idle.state, &ctx, timer())
        .await
        .unwrap();
    assert!(
        out.logs.iter().any(|l| l.contains("not run")),
        "{:?}",
        out.logs
    );

    let w = published_world().await;
    let out = bridge::teams_app::functions::on_timer(&w.state, &ctx, timer())
        .await
        .unwrap();
    assert!(
        out.logs
            .iter()
            .any(|l| l.contains(&format!("team {TEAM_A}: installed"))),
        "{:?}",
        out.logs
    );
    assert_eq!(apps::with_apps(&w.graph, |a| a.team_installs.len()), 2);
    // A missing permission is a permanent failure of the run, naming it.
    apps::with_apps(&w.graph, |a| a.team_installs.clear());
    w.graph.deny("TeamsAppInstallation.ReadWriteForTeam.All");
    let err = bridge::teams_app::functions::on_timer(&w.state, &ctx, timer())
        .await
        .unwrap_err();
    assert!(
        !err.retryable()
            && err
                .to_string()
                .contains("TeamsAppInstallation.ReadWriteForTeam.All"),
        "{err}"
    );
}

/// Issue 19: a notification for a user who never talked to the bot installs the app for them
/// (this install), stores the chat it gets back, and the card goes to that chat.
#[tokio::test]
async fn a_notification_for_a_user_without_a_conversation_installs_the_app_then_sends() {
    let connector = testkit::notify_doubles::LimitedConnector::start().await;
    let token = format!("{}/oauth2/v2.0/token", connector.uri());
    let service = connector.service_url();
    let w = world(
        vec![Poll::Success],
        &[
            ("TEAMS_APP_SERVICE_URL", service.as_str()),
            ("BOT_TRUSTED_SERVICE_URLS", connector.uri().as_str()),
            ("BOT_TOKEN_ENDPOINT", token.as_str()),
        ],
    )
    .await;
    let (t, _) = sign_in(&w).await;
    let zip = build(&w).await.zip;
    catalog_for(&w, t.unwrap())
        .publish(&zip, &app_id(&w), "1.0.0", false)
        .await
        .unwrap();
    bridge::bot::mapping::remember_pair(
        &w.state.store,
        USER,
        bridge::ids::MoodleUserId::new(7).unwrap(),
    )
    .await
    .unwrap();
    let n = testkit::notify_app::notification(
        "n-install",
        bridge::notify::schema::Kind::Custom,
        None,
        bridge::notify::schema::Recipients::Users(vec![7]),
    );
    let drained = testkit::notify_app::drain_on(
        &w.state,
        vec![bridge::notify::queue::NotifyMessage::Fanout { notification: n }],
        2,
    )
    .await;
    assert!(drained.poisoned.is_empty(), "{:?}", drained.poisoned);
    let sent = connector.sends_to(&apps::chat_id(USER));
    assert_eq!(
        sent.len(),
        1,
        "the card went to the chat the install returned"
    );
    assert_eq!(
        bridge::notify::deliveries::state(&w.state.store, "n-install", "user:7")
            .await
            .unwrap()
            .unwrap()
            .0,
        "sent"
    );
}

/// Issue 18: a course sync pass that makes a team ready installs the published app in it at
/// once, without waiting for the `TeamsAppInstall` timer, which is left as the catch-up.
#[tokio::test]
async fn a_teams_sync_that_creates_a_team_installs_the_app_in_it_without_the_timer() {
    use bridge::teams_sync::link::{self, Stage};
    use testkit::graph_double::teams;
    let fake = testkit::fake_moodle::FakeMoodle::start().await;
    let w = world(
        vec![Poll::Success],
        &[
            ("TEAMS_COURSES", "all"),
            ("TEAMS_FRESH_GROUP_WAIT_SECS", "0"),
        ],
    )
    .await;
    let (token, _) = sign_in(&w).await;
    let zip = build(&w).await.zip;
    catalog_for(&w, token.unwrap())
        .publish(&zip, &app_id(&w), "1.0.0", false)
        .await
        .unwrap();
    teams::with(&w.graph, |t| t.polls_to_finish = 1);
    let course = fake.lock().insert_course("HIST-1", "ID-HIST-1", 1);
    let teacher = fake.lock().insert_user(testkit::fake_moodle::FakeUser {
        username: "teacher1".into(),
        firstname: "T".into(),
        lastname: "One".into(),
        email: "teacher1@lab.example.test".into(),
        auth: "manual".into(),
        ..Default::default()
    });
    fake.lock().enrolments.insert((3, teacher, course));
    w.state
        .store
        .upsert(
            bridge::store::tables::MAPPINGS,
            &bridge::teams_sync::users::link_row(USER, teacher),
        )
        .await
        .unwrap();

    // The app's own wiring (`SyncEnv::from_app`), with the Moodle double in place of the https
    // MOODLE_URL the manifest needs.
    let moodle = fake.client();
    let env = bridge::sync::run::SyncEnv {
        settings: Arc::new(w.state.settings.sync.clone()),
        store: w.state.store.clone(),
        blobs: None,
        teams: bridge::teams_sync::env_from_app(&w.state, &moodle),
        entra: None,
        moodle,
    };
    assert!(env.teams.as_ref().unwrap().after_ready.is_some());
    let opts = bridge::sync::SyncOptions {
        teams: true,
        verbose: true,
        ..Default::default()
    };
    let team_installs = || apps::with_apps(&w.graph, |a| a.team_installs.clone());
    let mut team = None;
    let mut reports = Vec::new();
    for _ in 0..6 {
        // Polls stay TEAMS_POLL_SECS apart across runs: make the pending one due.
        if let Some(mut l) = link::load(&w.state.store, course).await.unwrap() {
            l.polled_at -= 3600;
            link::save(&w.state.store, &l).await.unwrap();
        }
        let r = bridge::sync::run::run_inline(&env, &opts, None)
            .await
            .unwrap();
        let l = link::load(&w.state.store, course).await.unwrap().unwrap();
        let installed = team_installs();
        if l.stage != Stage::Active {
            assert!(installed.is_empty(), "not before the team is ready");
            reports.push(r.render());
            continue;
        }
        let id = l.team_id.clone().unwrap();
        // The pass that made the team ready installed the app in it.
        assert_eq!(
            installed.keys().cloned().collect::<Vec<_>>(),
            vec![id.clone()],
            "{}",
            r.render()
        );
        assert_eq!(installed[&id].version, "1.0.0");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert!(
            r.trace
                .iter()
                .any(|t| t.contains(&format!("team {id}: installed"))),
            "{:?}",
            r.trace
        );
        team = Some(id);
        break;
    }
    let team = team.unwrap_or_else(|| panic!("no team made ready: {reports:#?}"));
    // A later pass with nothing new made ready installs nothing more.
    let installs_posted = || {
        w.graph
            .lock()
            .log
            .iter()
            .filter(|(m, p)| m == "POST" && p.ends_with("/installedApps"))
            .count()
    };
    // (More than one POST when the double's per-team limit answered 429 and the client waited.)
    let posted = installs_posted();
    assert!(posted >= 1, "{:#?}", w.graph.lock().log);
    bridge::sync::run::run_inline(&env, &opts, None)
        .await
        .unwrap();
    assert_eq!(installs_posted(), posted);
    // The timer, still there as the catch-up, finds the team at the current version.
    let ctx = bridge::host::functions::InvocationContext {
        invocation_id: bridge::ids::InvocationId::new("timer-2").unwrap(),
        function: "TeamsAppInstall",
    };
    let out = bridge::teams_app::functions::on_timer(
        &w.state,
        &ctx,
        bridge::host::TimerInfo {
            is_past_due: false,
            last: None,
            next: None,
        },
    )
    .await
    .unwrap();
    assert!(
        out.logs
            .iter()
            .any(|l| l.contains(&format!("team {team}: already at the current version"))),
        "{:?}",
        out.logs
    );
    assert_eq!(installs_posted(), posted);
    assert_eq!(team_installs().len(), 1);
}

/// Everything the `tracing` macros emit, at every level and from every crate, with span fields.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Issue 18: "never log it". Across a device-code sign-in, a publish with the kept sign-in
/// (through the CLI's path), an install with app-only tokens and a refresh Entra refuses, no
/// refresh token, device code or access token appears in the logs or in the errors the caller
/// gets. A current-thread runtime, so the subscriber set for this thread sees every task.
#[tokio::test(flavor = "current_thread")]
async fn refresh_and_access_tokens_reach_neither_the_logs_nor_the_errors() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let w = world(vec![Poll::Pending, Poll::SlowDown, Poll::Success], &[]).await;
    let (token, prompts) = sign_in(&w).await;
    token.unwrap();
    assert_eq!(prompts, [apps::USER_CODE]);
    // `handler teams-app publish`: built, then published with the refresh token kept above.
    let code = bridge::teams_app::cli::run(
        w.state.clone(),
        bridge::teams_app::cli::TeamsAppArgs {
            command: bridge::teams_app::cli::TeamsAppCommand::Publish {
                out: Some(w.dir.path().join("app.zip")),
                review: false,
            },
        },
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "published");
    assert_eq!(w.entra.state.lock().unwrap().refresh_requests, 1);
    assert_eq!(apps::with_apps(&w.graph, |a| a.catalog.len()), 1);
    // App-only tokens too: an install for a user.
    let report = install::install_from_settings(&w.state, false, &[USER.to_string()])
        .await
        .unwrap();
    assert_eq!(report.failed(), 0, "{:?}", report.targets);

    // The kept refresh token is refused (revoked, or rotated elsewhere), and the device code
    // that follows expires: the caller gets an error, which must not carry a token either.
    {
        let mut e = w.entra.state.lock().unwrap();
        e.refresh_token = "0.AAAA-a-newer-refresh-token-PLACEHOLDER".into();
        e.polls = vec![Poll::Expired];
        e.poll_count = 0;
    }
    let (failed, _) = sign_in(&w).await;
    let err = failed.expect_err("the refused refresh and the expired code fail the sign-in");
    let publish_err = SignIn::from_settings(&w.state.settings, w.state.http.clone())
        .unwrap()
        .token(w.state.http.clone(), |_| {}, Some(Duration::from_millis(5)))
        .await
        .expect_err("fails the same way");
    let errors = format!("{err}\n{publish_err}\n{publish_err:?}");
    assert!(w.entra.state.lock().unwrap().refresh_requests >= 2);

    drop(_guard);
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The capture works: the HTTP client's events and the bridge's own are in it.
    assert!(
        logs.lines().count() > 20 && logs.contains("hyper_util::client"),
        "{logs}"
    );
    assert!(
        logs.contains("refresh token not accepted"),
        "the refused refresh is logged (without the token): {logs}"
    );
    let mut secrets = vec![
        REFRESH_TOKEN.to_string(),
        "0.AAAA-a-newer-refresh-token-PLACEHOLDER".to_string(),
        DELEGATED_TOKEN.to_string(),
        "DAQABAAEAAAD-device-code".to_string(),
    ];
    secrets.extend(w.graph.issued_tokens());
    assert!(
        secrets.len() > 4,
        "app-only tokens were issued: {secrets:?}"
    );
    for s in &secrets {
        // The distinctive middle of each, so a cut or quoted copy is found too.
        let probe = &s[s.len() / 4..s.len() * 3 / 4];
        assert!(!logs.contains(probe), "{s} is in the logs:\n{logs}");
        assert!(!errors.contains(probe), "{s} is in an error: {errors}");
    }
}
