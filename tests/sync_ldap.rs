//! ENT/LDAP → Moodle sync against a real throwaway slapd and the stateful Moodle double.

use bridge::sync::run::{run_inline, RunError};
use bridge::sync::{lease, SyncOptions, SyncSettings};
use std::collections::BTreeSet;
use std::sync::OnceLock;
use testkit::ent_data::{self, Spec};
use testkit::fake_moodle::FakeMoodle;
use testkit::slapd::{Slapd, READER_DN, READER_PW, SIZE_LIMIT};
use testkit::sync_env::{self, sync_settings, World};

const PEOPLE: usize = 2100;

fn spec() -> Spec {
    Spec::new(PEOPLE)
}

/// One directory for the read-only tests (tests that change entries start their own).
fn shared_slapd() -> &'static Slapd {
    static SLAPD: OnceLock<Slapd> = OnceLock::new();
    SLAPD.get_or_init(|| Slapd::with_people(&spec()))
}

fn settings(url: &str, extra: &[(&str, &str)]) -> SyncSettings {
    sync_settings(
        &[
            ("LDAP_URL", url),
            ("LDAP_BIND_DN", READER_DN),
            ("LDAP_BIND_PASSWORD", READER_PW),
            ("LDAP_PAGE_SIZE", "200"),
            ("SYNC_OVERLAP_SECS", "0"),
            ("SYNC_BATCH_SIZE", "150"),
        ],
        extra,
    )
}

async fn world(settings: SyncSettings) -> World {
    world_with(settings, FakeMoodle::start().await).await
}

async fn world_with(settings: SyncSettings, fake: FakeMoodle) -> World {
    {
        // Courses for the role rule `{school}${class}`: only school 0 has them.
        let mut st = fake.lock();
        for class in ["6A", "6B", "6C", "5A", "5B", "5C", "4A", "4B", "3A", "3B"] {
            st.insert_course(
                &format!("C-{class}"),
                &format!("{}${class}", ent_data::siren(0)),
                1,
            );
        }
    }
    sync_env::world_with(settings, fake).await
}

fn all() -> SyncOptions {
    SyncOptions::scheduled()
}

fn assert_no_duplicate_usernames(fake: &FakeMoodle) {
    let st = fake.lock();
    let names: Vec<&String> = st.users.values().map(|u| &u.username).collect();
    let set: BTreeSet<&&String> = names.iter().collect();
    assert_eq!(names.len(), set.len(), "duplicate usernames in Moodle");
}

#[tokio::test]
async fn initial_sync_then_a_no_change_run_writes_nothing() {
    let slapd = shared_slapd();
    let w = world(settings(&slapd.url, &[])).await;
    let r = run_inline(&w.env, &all(), None).await.unwrap();
    assert!(r.complete, "{:?}", r.errors);
    let users = &r.counts["users"];
    assert_eq!(
        users.created as usize,
        ent_data::expected_users(&spec()),
        "{}",
        r.render()
    );
    assert_eq!(users.skipped, 4, "the four duplicate logins");
    assert!(r
        .issues
        .iter()
        .any(|i| i.reason.contains("duplicate login")));
    // More entries than the server's size limit came back: paging was used.
    assert!(
        r.entries_read as usize > SIZE_LIMIT && r.source_requests > 3,
        "{}",
        r.render()
    );
    {
        let st = w.fake.lock();
        let hostile = st
            .users
            .values()
            .find(|u| u.lastname == "Test*)(uid=*")
            .expect("hostile entry synced as data");
        assert_eq!(hostile.firstname, "Noé");
        let no_mail = st.user_by_username(&ent_data::login(7)).unwrap();
        assert_eq!(
            no_mail.email,
            format!("{}@no-mail.invalid", ent_data::login(7))
        );
        let accented = st.user_by_username(&ent_data::login(0)).unwrap();
        assert_eq!(accented.firstname, "Léa");
        assert_eq!(accented.idnumber, "4000000");
    }
    assert_no_duplicate_usernames(&w.fake);
    // Cohorts: one per school and class, prefixed, with the pupils as members.
    let (school, class) = ent_data::class_of(4);
    let idn = format!("ent_{}${class}", ent_data::siren(school));
    assert!(
        w.fake.lock().members_of(&idn).contains(&ent_data::login(4)),
        "{idn}"
    );
    assert!(r.counts["cohorts"].created >= 30, "{}", r.render());
    // Roles: teachers of school 0 get editingteacher in the class courses; others are skipped with a reason.
    assert!(r.counts["roles"].created > 0);
    assert!(r
        .issues
        .iter()
        .any(|i| i.entity == "roles" && i.reason.contains("no course with idnumber")));
    assert!(w
        .fake
        .lock()
        .role_assignments
        .iter()
        .all(|(role, _, level, _)| *role == 3 && level == "course"));
    let calls = r.moodle_calls.values().sum::<u64>();
    assert!(
        calls < 120,
        "{calls} calls for {PEOPLE} people: {:?}",
        r.moodle_calls
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.fake.reset_calls();
    let again = run_inline(&w.env, &all(), None).await.unwrap();
    assert!(again.complete);
    assert_eq!(w.fake.lock().write_calls(), 0, "{:?}", w.fake.calls());
    assert_eq!(again.moodle_writes(), 0);
    assert_eq!(
        again.entries_read, 0,
        "incremental: nothing changed since the checkpoint"
    );
    assert!(again.source_requests <= 3, "one request per population");
}

#[tokio::test]
async fn simulation_computes_everything_and_writes_nothing() {
    let slapd = shared_slapd();
    let w = world(settings(&slapd.url, &[])).await;
    let opts = SyncOptions {
        simulate: true,
        verbose: true,
        ..all()
    };
    let r = run_inline(&w.env, &opts, None).await.unwrap();
    assert_eq!(w.fake.lock().write_calls(), 0, "{:?}", w.fake.calls());
    assert_eq!(r.moodle_writes(), 0);
    assert_eq!(
        r.counts["users"].created as usize,
        ent_data::expected_users(&spec())
    );
    assert!(r.counts["memberships"].created > 1000);
    assert!(r.counts["cohorts"].created >= 30, "{}", r.render());
    assert!(
        r.trace.iter().any(|l| l.contains("create")),
        "verbose trace"
    );
    // Nothing remembered either: a real run afterwards still creates everyone.
    let real = run_inline(
        &w.env,
        &SyncOptions {
            users: true,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        real.counts["users"].created as usize,
        ent_data::expected_users(&spec())
    );
}

#[tokio::test]
async fn one_user_by_login_or_uid_and_hostile_values_match_nothing() {
    let slapd = shared_slapd();
    let w = world(settings(&slapd.url, &[])).await;
    let one = SyncOptions {
        users: true,
        user: Some(ent_data::login(10)),
        ..Default::default()
    };
    let r = run_inline(&w.env, &one, None).await.unwrap();
    assert_eq!(r.counts["users"].created, 1, "{}", r.render());
    assert_eq!(r.entries_read, 1);
    let by_uid = SyncOptions {
        users: true,
        user: Some(ent_data::uid(11)),
        ..Default::default()
    };
    let r = run_inline(&w.env, &by_uid, None).await.unwrap();
    assert_eq!(r.counts["users"].created, 1);
    let hostile = SyncOptions {
        users: true,
        user: Some("*)(uid=*".into()),
        ..Default::default()
    };
    let r = run_inline(&w.env, &hostile, None).await.unwrap();
    assert_eq!(r.entries_read, 0, "an escaped value matches nothing");
    assert_eq!(w.fake.lock().users.len(), 3 + 2);
}

#[tokio::test]
async fn update_only_refreshes_existing_accounts_and_creates_nothing() {
    let slapd = shared_slapd();
    let fake = FakeMoodle::start().await;
    {
        let mut st = fake.lock();
        for i in [12usize, 13] {
            st.insert_user(testkit::fake_moodle::FakeUser {
                username: ent_data::login(i),
                firstname: "Old".into(),
                lastname: "Name".into(),
                email: format!("old{i}@x.example"),
                auth: "manual".into(),
                ..Default::default()
            });
        }
    }
    let w = world_with(settings(&slapd.url, &[]), fake).await;
    let r = run_inline(
        &w.env,
        &SyncOptions {
            users: true,
            update_only: true,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.counts["users"].created, 0);
    assert_eq!(r.counts["users"].updated, 2, "{}", r.render());
    assert_eq!(w.fake.calls().get("core_user_create_users"), None);
    assert_eq!(
        w.fake
            .lock()
            .user_by_username(&ent_data::login(12))
            .unwrap()
            .firstname,
        ent_data::first_name(12)
    );
    assert!(r.issues.iter().any(|i| i.reason.contains("update only")));
}

#[tokio::test]
async fn force_re_examines_entries_the_checkpoint_would_skip() {
    let slapd = shared_slapd();
    let w = world(settings(
        &slapd.url,
        &[("LDAP_TEACHERS_FILTER", "-"), ("LDAP_STAFF_FILTER", "-")],
    ))
    .await;
    let users = SyncOptions {
        users: true,
        ..Default::default()
    };
    run_inline(&w.env, &users, None).await.unwrap();
    {
        let mut st = w.fake.lock();
        let id = st.user_by_username(&ent_data::login(5)).unwrap().id;
        st.users.get_mut(&id).unwrap().firstname = "Edited in Moodle".into();
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = run_inline(&w.env, &users, None).await.unwrap();
    assert_eq!(r.entries_read, 0);
    let r = run_inline(
        &w.env,
        &SyncOptions {
            force: true,
            verbose: true,
            ..users.clone()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.counts["users"].updated, 1, "{}", r.render());
    assert!(
        r.trace.iter().any(|l| l.contains("update firstname")),
        "{:?}",
        &r.trace[..5.min(r.trace.len())]
    );
    assert_eq!(
        w.fake
            .lock()
            .user_by_username(&ent_data::login(5))
            .unwrap()
            .firstname,
        ent_data::first_name(5)
    );
}

#[tokio::test]
async fn a_bad_item_is_isolated_while_the_rest_of_its_batch_lands() {
    let slapd = shared_slapd();
    let fake = FakeMoodle::start().await;
    // Another account already uses person 23's address: Moodle rejects (and rolls back) the batch.
    fake.lock().insert_user(testkit::fake_moodle::FakeUser {
        username: "someone.else".into(),
        firstname: "S".into(),
        lastname: "E".into(),
        email: format!("{}@ent.example", ent_data::login(23)),
        auth: "manual".into(),
        ..Default::default()
    });
    let w = world_with(
        settings(
            &slapd.url,
            &[("LDAP_TEACHERS_FILTER", "-"), ("LDAP_STAFF_FILTER", "-")],
        ),
        fake,
    )
    .await;
    let r = run_inline(
        &w.env,
        &SyncOptions {
            users: true,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.counts["users"].failed, 1, "{}", r.render());
    let issue = r.issues.iter().find(|i| i.outcome == "failed").unwrap();
    assert_eq!(issue.key, ent_data::uid(23));
    assert!(
        issue.reason.contains("invalidparameter"),
        "{}",
        issue.reason
    );
    assert!(
        w.fake
            .lock()
            .user_by_username(&ent_data::login(24))
            .is_some(),
        "the good items of the batch landed"
    );
}

#[tokio::test]
async fn batches_shrink_when_the_site_truncates_large_forms() {
    let slapd = shared_slapd();
    let fake = FakeMoodle::start().await;
    fake.lock().max_input_vars = 300;
    // The client believes the site accepts 1000 fields: the truncated calls fail and are split.
    let mut w = world_with(
        settings(
            &slapd.url,
            &[("LDAP_TEACHERS_FILTER", "-"), ("LDAP_STAFF_FILTER", "-")],
        ),
        fake,
    )
    .await;
    let mut ms = w.fake.settings();
    ms.max_form_fields = 1000;
    w.env.moodle = bridge::moodle::MoodleClient::new(&ms).unwrap();
    let r = run_inline(
        &w.env,
        &SyncOptions {
            users: true,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.counts["users"].failed, 0, "{}", r.render());
    assert!(r.counts["users"].created > 1500);
}

#[tokio::test]
async fn a_crashed_run_resumes_without_duplicates() {
    let small = Spec {
        people: 400,
        ..Spec::new(400)
    };
    let slapd = Slapd::with_people(&small);
    let w = world(settings(&slapd.url, &[("SYNC_BATCH_SIZE", "50")])).await;
    // Moodle goes away after 3 create calls (503 on every retry): the run stops part-way.
    w.fake.fail_after("core_user_create_users", 3, 503, None);
    let first = run_inline(&w.env, &all(), None).await.unwrap();
    assert!(!first.complete, "{}", first.render());
    let created_before = w.fake.lock().users.len();
    assert!(created_before > 3 && created_before < 400);
    w.fake.clear_failures();
    let second = run_inline(&w.env, &all(), None).await.unwrap();
    assert!(second.complete, "{}", second.render());
    assert_no_duplicate_usernames(&w.fake);
    let st = w.fake.lock();
    for i in 0..small.people {
        if i % 500 == 0 && i > 0 {
            continue;
        }
        assert!(
            st.user_by_username(&ent_data::login(i)).is_some(),
            "person {i} missing"
        );
    }
    assert_eq!(st.users.len(), 3 + ent_data::expected_users(&small));
}

#[tokio::test]
async fn incremental_run_reads_only_changed_entries_and_moves_the_cohort() {
    let small = Spec::new(60);
    let slapd = Slapd::with_people(&small);
    let w = world(settings(&slapd.url, &[])).await;
    run_inline(&w.env, &all(), None).await.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let s0 = ent_data::structure_dn(0);
    slapd.modify(&format!(
        "dn: uid={},ou=people,dc=ent,dc=example\nchangetype: modify\nreplace: ENTEleveClasses\nENTEleveClasses: {s0}$3B\n-\nreplace: givenName\ngivenName: Renamed\n",
        ent_data::uid(4)
    ));
    w.fake.reset_calls();
    let r = run_inline(
        &w.env,
        &SyncOptions {
            verbose: true,
            ..all()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.entries_read, 1, "{}", r.render());
    assert_eq!(r.counts["users"].updated, 1);
    assert_eq!(r.counts["memberships"].created, 1);
    assert_eq!(r.counts["memberships"].removed, 1);
    let st = w.fake.lock();
    let (_, old_class) = ent_data::class_of(4);
    assert!(!st
        .members_of(&format!("ent_{}${old_class}", ent_data::siren(0)))
        .contains(&ent_data::login(4)));
    assert!(st
        .members_of(&format!("ent_{}$3B", ent_data::siren(0)))
        .contains(&ent_data::login(4)));
}

#[tokio::test]
async fn the_cohort_lock_protects_manual_cohorts_unless_disabled() {
    let small = Spec::new(40);
    let slapd = Slapd::with_people(&small);
    let key = format!("{}$6B", ent_data::siren(0));
    let fake = FakeMoodle::start().await;
    let manual = fake.lock().insert_cohort("6B (manual)", &key);
    let w = world_with(settings(&slapd.url, &[]), fake).await;
    run_inline(
        &w.env,
        &SyncOptions {
            users: true,
            cohorts: true,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert!(
        w.fake
            .lock()
            .members
            .get(&manual)
            .is_none_or(|m| m.is_empty()),
        "locked: manual cohort untouched"
    );
    assert!(!w.fake.lock().members_of(&format!("ent_{key}")).is_empty());
    let r = run_inline(
        &w.env,
        &SyncOptions {
            cohorts: true,
            force: true,
            no_cohort_lock: true,
            verbose: true,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert!(
        r.trace.iter().any(|l| l.contains("adopting")),
        "{}",
        r.render()
    );
    assert!(
        !w.fake.lock().members_of(&key).is_empty(),
        "unlocked: the manual cohort is managed"
    );
}

#[tokio::test]
async fn the_lease_allows_one_run_at_a_time() {
    let slapd = shared_slapd();
    let w = world(settings(&slapd.url, &[])).await;
    lease::acquire(&w.env.store, "someone-else", 600)
        .await
        .unwrap();
    let err = run_inline(&w.env, &all(), None).await.unwrap_err();
    assert!(matches!(err, RunError::Busy(_)), "{err}");
    assert_eq!(w.fake.lock().total_calls(), 0);
    lease::release(&w.env.store, "someone-else").await.unwrap();
    // Two runs started together: exactly one gets the lease.
    let opts = all();
    let (a, b) = tokio::join!(
        run_inline(&w.env, &opts, None),
        run_inline(&w.env, &opts, None)
    );
    assert!(a.is_ok() ^ b.is_ok(), "exactly one run");
}
