//! The other ways people come in: CSV and LDIF exports through `handler sync`'s entry point,
//! cohorts from directory groups (slapd), and the sharded SyncTimer → SyncWorker path.

use bridge::app::AppState;
use bridge::host::functions::{InvocationContext, QUEUE_SYNC_WORK};
use bridge::host::{QueueMessage, TimerInfo};
use bridge::ids::InvocationId;
use bridge::store::tables;
use bridge::sync::run::{latest_reports, run_inline};
use bridge::sync::{functions, lease, SyncOptions};
use std::collections::BTreeSet;
use std::path::Path;
use testkit::ent_data::{self, Spec};
use testkit::fake_moodle::FakeMoodle;
use testkit::slapd::{Slapd, READER_DN, READER_PW};
use testkit::sync_env::{self, cli_sync, sync_settings, world_with};

/// Cohorts from directory groups with the `grp_` prefix, no role rules.
fn groups_settings(url: &str) -> bridge::sync::SyncSettings {
    sync_settings(
        &[
            ("LDAP_URL", url),
            ("LDAP_BIND_DN", READER_DN),
            ("LDAP_BIND_PASSWORD", READER_PW),
            ("SYNC_OVERLAP_SECS", "0"),
            ("SYNC_COHORT_SOURCE", "groups"),
            ("SYNC_COHORT_PREFIX", "grp_"),
            ("SYNC_ROLE_RULES", "-"),
            ("SYNC_TOKEN_RECHECK_SECS", "0"),
        ],
        &[],
    )
}

fn app(dir: &Path, fake: &FakeMoodle, extra: &[(&str, &str)]) -> AppState {
    sync_env::app_state(dir, fake, "TOKEN", extra)
}

fn usernames(fake: &FakeMoodle) -> Vec<String> {
    fake.lock()
        .users
        .values()
        .map(|u| u.username.clone())
        .collect()
}

fn assert_each_once(fake: &FakeMoodle) {
    let names = usernames(fake);
    let set: BTreeSet<&String> = names.iter().collect();
    assert_eq!(names.len(), set.len(), "a user landed twice: {names:?}");
}

#[tokio::test]
async fn csv_export_with_bom_crlf_quotes_accents_and_traps() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    let rows = [
        "\u{feff}uid,ENTPersonLogin,givenName,sn,mail,ENTPersonJointure,objectClass",
        "C001,Lea.Martin,Léa,\"Martin, dite \"\"Lou\"\"\",lea.martin@ent.example,AC-TEST$5000001,ENTPerson|ENTEleve",
        "C002,hugo.lefevre,Hugo,Lefèvre,,AC-TEST$5000002,ENTPerson|ENTEleve",
        "C003,lea.martin,Léa,Martin,other.lea@ent.example,AC-TEST$5000003,ENTPerson|ENTEleve",
        "C004,noe.test,Noé,Test*)(uid=*,noe.test@ent.example,AC-TEST$5000004,ENTPerson|ENTEleve",
        "C005,*)(uid=*,Evil,Login,evil@ent.example,AC-TEST$5000005,ENTPerson|ENTEleve",
        "C006,maelys.oeillet,Maëlys,Œillet,\"maelys.oeillet@ent.example\",AC-TEST$5000006,ENTPerson|ENTAuxEnseignant",
    ];
    std::fs::write(&csv, rows.join("\r\n") + "\r\n").unwrap();
    let state = app(
        dir.path(),
        &fake,
        &[
            ("SYNC_SOURCE", "csv"),
            ("SYNC_SOURCE_FILE", csv.to_str().unwrap()),
            // Every idle run proves the token here; the default's remembered proof is tested in
            // `sync_token_check`.
            ("SYNC_TOKEN_RECHECK_SECS", "0"),
        ],
    );
    let (code, r) = cli_sync(&state, &["--verbose"]).await;
    assert_eq!(code, 0, "{}", r.render());
    assert!(r.complete, "{}", r.render());
    let u = &r.counts["users"];
    assert_eq!(u.created, 4, "{}", r.render());
    assert_eq!(
        u.skipped,
        2,
        "duplicate login + unusable login: {}",
        r.render()
    );
    assert!(r
        .issues
        .iter()
        .any(|i| i.key == "C003" && i.reason.contains("duplicate login")));
    assert!(r
        .issues
        .iter()
        .any(|i| i.key == "C005" && i.reason.contains("characters Moodle refuses")));
    assert_each_once(&fake);
    {
        let st = fake.lock();
        assert_eq!(st.users.len(), 3 + 4);
        let lea = st.user_by_username("lea.martin").expect("lowercased login");
        assert_eq!(lea.lastname, "Martin, dite \"Lou\"");
        assert_eq!(lea.firstname, "Léa");
        assert_eq!(lea.idnumber, "5000001");
        let hugo = st.user_by_username("hugo.lefevre").unwrap();
        assert_eq!(hugo.email, "hugo.lefevre@no-mail.invalid");
        assert_eq!(hugo.lastname, "Lefèvre");
        let noe = st.user_by_username("noe.test").unwrap();
        assert_eq!(noe.lastname, "Test*)(uid=*");
        let m = st.user_by_username("maelys.oeillet").unwrap();
        assert_eq!(
            (m.firstname.as_str(), m.lastname.as_str()),
            ("Maëlys", "Œillet")
        );
    }

    // Same file again: not even a Moodle lookup, only the run's one token check (issue 14.14).
    fake.reset_calls();
    let (code, again) = cli_sync(&state, &[]).await;
    assert_eq!(code, 0);
    assert_ne!(again.run_id, r.run_id);
    assert_eq!(fake.lock().total_calls(), 1, "{:?}", fake.calls());
    assert_eq!(fake.calls().get("core_webservice_get_site_info"), Some(&1));
    assert_eq!(
        again.moodle_calls.keys().collect::<Vec<_>>(),
        ["core_webservice_get_site_info"]
    );
    assert_eq!(again.entries_read, 0);

    // The same idle run with a wrong token: failed, not "complete".
    fake.lock().token = "ROTATED".into();
    let (code, refused) = cli_sync(&state, &[]).await;
    assert_eq!(code, 1, "{}", refused.render());
    assert!(!refused.complete);
    assert!(
        refused
            .errors
            .iter()
            .any(|e| e.contains("token check") && e.contains("MOODLE_TOKEN")),
        "{:?}",
        refused.errors
    );
    fake.lock().token = "TOKEN".into();

    // A changed file is read again; only the changed person is written.
    let mut changed = rows.to_vec();
    changed[2] = "C002,hugo.lefevre,Hugo,Lefèvre-Dupont,,AC-TEST$5000002,ENTPerson|ENTEleve";
    std::fs::write(&csv, changed.join("\r\n") + "\r\n").unwrap();
    let (_, third) = cli_sync(&state, &[]).await;
    assert_eq!(third.counts["users"].updated, 1, "{}", third.render());
    assert_eq!(third.counts["users"].created, 0);
    assert_eq!(
        fake.lock()
            .user_by_username("hugo.lefevre")
            .unwrap()
            .lastname,
        "Lefèvre-Dupont"
    );
    assert_each_once(&fake);
}

#[tokio::test]
async fn ldif_export_of_the_sample_school() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("export.ldif");
    let mut text = testkit::fixture("ent/sample-school.ldif");
    // One more person reusing a login already taken (a merged/duplicate account), CRLF-ended.
    text.push_str(
        "\r\ndn: uid=F0100099,ou=people,dc=ent,dc=example\r\nobjectClass: top\r\nobjectClass: person\r\n\
         objectClass: organizationalPerson\r\nobjectClass: inetOrgPerson\r\nobjectClass: ENTPerson\r\n\
         objectClass: ENTEleve\r\nuid: F0100099\r\ncn: Martin Lea\r\nsn: Martin\r\ngivenName: Lea\r\n\
         ENTPersonLogin: lea.martin\r\nENTPersonJointure: AC-TEST$9999999\r\n\r\n",
    );
    std::fs::write(&ldif, &text).unwrap();
    let state = app(
        dir.path(),
        &fake,
        &[
            ("SYNC_TOKEN_RECHECK_SECS", "0"),
            ("SYNC_SOURCE", "ldif"),
            ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
            (
                "LDAP_STAFF_FILTER",
                "(|(objectClass=ENTAuxNonEnsEtab)(objectClass=ENTAuxNonEnsCollLoc))",
            ),
        ],
    );
    let (code, r) = cli_sync(&state, &["--users", "--verbose"]).await;
    assert!(r.complete, "{}", r.render());
    assert_eq!(code, 0, "{}", r.render());
    assert!(r
        .issues
        .iter()
        .any(|i| i.key == "F0100099" && i.reason.contains("duplicate login")));
    assert_each_once(&fake);
    {
        let st = fake.lock();
        // Everyone but the parent (no parent population), the duplicate, and F0100014 whose
        // planned deletion date (31/08/2025) has passed (SYNC_SUSPEND_ON_DELETION_DATE): 28 people.
        assert_eq!(r.counts["users"].created, 28, "{}", r.render());
        assert_eq!(st.users.len(), 3 + 28);
        assert!(r
            .issues
            .iter()
            .any(|i| i.key == "F0100014" && i.reason.contains("planned deletion date 31/08/2025")));
        let lea = st.user_by_username("lea.martin").unwrap();
        let lea1 = st.user_by_username("lea.martin1").unwrap();
        assert_eq!(
            (lea.firstname.as_str(), lea1.firstname.as_str()),
            ("Léa", "Léa")
        );
        assert_ne!(lea.idnumber, lea1.idnumber, "homonyms stay two accounts");
        assert!(
            st.users.values().any(|u| u.lastname == "Test*)(uid=*"),
            "hostile value synced as plain data"
        );
        let no_mail = st
            .users
            .values()
            .find(|u| u.lastname == "Lefèvre")
            .expect("F0100002");
        assert!(
            no_mail.email.ends_with("@no-mail.invalid"),
            "{}",
            no_mail.email
        );
        for odd in ["Œillet", "N'Diaye", "Le Goff"] {
            assert!(
                st.users.values().any(|u| u.lastname == odd),
                "{odd} missing"
            );
        }
    }
    fake.reset_calls();
    let (_, again) = cli_sync(&state, &["--users"]).await;
    // Nothing read: the one call is the run's token check (issue 14.14).
    assert_eq!(fake.lock().total_calls(), 1, "{:?}", fake.calls());
    assert_eq!(fake.calls().get("core_webservice_get_site_info"), Some(&1));
    assert_eq!(again.moodle_writes(), 0);
}

// ---------------------------------------------------------------- groups

fn group(cn: &str, members: &[String]) -> String {
    let mut s =
        format!("dn: cn={cn},ou=groups,dc=ent,dc=example\nobjectClass: groupOfNames\ncn: {cn}\n");
    for m in members {
        s.push_str(&format!("member: {m}\n"));
    }
    s.push('\n');
    s
}

fn person_dn(i: usize) -> String {
    format!("uid={},ou=people,dc=ent,dc=example", ent_data::uid(i))
}

#[tokio::test]
async fn cohorts_from_ldap_groups_follow_membership_changes() {
    let spec = Spec::new(40);
    let mut data = Vec::new();
    ent_data::write_ldif(&mut data, &spec).unwrap();
    data.extend(
        group(
            "club-echecs",
            &[
                person_dn(4),
                person_dn(5),
                "uid=NOBODY,ou=people,dc=ent,dc=example".into(),
            ],
        )
        .as_bytes(),
    );
    data.extend(group("chorale", &[person_dn(6), person_dn(7)]).as_bytes());
    let slapd = Slapd::start(&data);
    let fake = FakeMoodle::start().await;
    let w = world_with(groups_settings(&slapd.url), fake).await;
    let (env, fake) = (&w.env, &w.fake);
    let r = run_inline(env, &SyncOptions::scheduled(), None)
        .await
        .unwrap();
    assert!(r.complete, "{}", r.render());
    assert_eq!(r.counts["cohorts"].created, 2, "{}", r.render());
    let set = |v: &[usize]| -> BTreeSet<String> { v.iter().map(|i| ent_data::login(*i)).collect() };
    {
        let st = fake.lock();
        let c = st
            .cohort_by_idnumber("grp_club-echecs")
            .expect("prefixed idnumber");
        assert_eq!(c.name, "club-echecs");
        assert_eq!(st.members_of("grp_club-echecs"), set(&[4, 5]));
        assert_eq!(st.members_of("grp_chorale"), set(&[6, 7]));
        // Class values on people are not used in groups mode.
        assert!(st.cohorts.values().all(|c| c.idnumber.starts_with("grp_")));
    }
    assert!(r
        .issues
        .iter()
        .any(|i| i.key == "NOBODY" && i.reason.contains("not synced")));

    // 5 leaves the club, 8 joins; the choir does not change.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    slapd.modify(&format!(
        "dn: cn=club-echecs,ou=groups,dc=ent,dc=example\nchangetype: modify\ndelete: member\nmember: {}\n-\nadd: member\nmember: {}\n",
        person_dn(5),
        person_dn(8)
    ));
    fake.reset_calls();
    let r = run_inline(env, &SyncOptions::scheduled(), None)
        .await
        .unwrap();
    assert!(r.complete, "{}", r.render());
    assert_eq!(
        r.entries_read,
        1,
        "only the changed group is read: {}",
        r.render()
    );
    assert_eq!(r.counts["memberships"].created, 1, "{}", r.render());
    assert_eq!(r.counts["memberships"].removed, 1, "{}", r.render());
    assert_eq!(fake.calls().get("core_cohort_create_cohorts"), None);
    {
        let st = fake.lock();
        assert_eq!(st.members_of("grp_club-echecs"), set(&[4, 8]));
        assert_eq!(st.members_of("grp_chorale"), set(&[6, 7]));
    }

    // Someone else added the members between our read and our write: Moodle answers
    // "already a member" (warning 3), which is not a new membership.
    fake.lock().stale_member_reads = true;
    let r = run_inline(
        env,
        &SyncOptions {
            force: true,
            ..SyncOptions::scheduled()
        },
        None,
    )
    .await
    .unwrap();
    assert!(r.complete, "{}", r.render());
    let m = &r.counts["memberships"];
    assert_eq!(
        (m.created, m.unchanged, m.failed),
        (0, 4, 0),
        "{}",
        r.render()
    );
    let st = fake.lock();
    assert_eq!(st.members_of("grp_club-echecs"), set(&[4, 8]));
    assert_eq!(st.members_of("grp_chorale"), set(&[6, 7]));
}

#[tokio::test]
async fn a_groups_shard_applied_before_the_user_shards_adds_the_members_on_the_next_run() {
    use bridge::sync::run::{apply_shard, plan_run};
    let spec = Spec::new(20);
    let mut data = Vec::new();
    ent_data::write_ldif(&mut data, &spec).unwrap();
    data.extend(group("club", &[person_dn(4), person_dn(5)]).as_bytes());
    data.extend(group("chorale", &[person_dn(6), person_dn(7)]).as_bytes());
    let slapd = Slapd::start(&data);
    let fake = FakeMoodle::start().await;
    let w = world_with(groups_settings(&slapd.url), fake).await;
    let (env, fake) = (&w.env, &w.fake);
    let set = |v: &[usize]| -> BTreeSet<String> { v.iter().map(|i| ent_data::login(*i)).collect() };
    // The groups shard first, then the user shards (queues do not keep order).
    let run = |first_groups: bool| {
        let env = env.clone();
        async move {
            let mut shards = plan_run(&env, &SyncOptions::scheduled()).await.unwrap();
            assert_eq!(shards.last().unwrap().population, "groups");
            if first_groups {
                shards.rotate_right(1);
            }
            let mut groups_report = None;
            for sh in &shards {
                let r = apply_shard(&env, sh).await.unwrap();
                if sh.population == "groups" {
                    groups_report = Some(r);
                }
            }
            groups_report.unwrap()
        }
    };
    let g = run(true).await;
    assert!(g.complete, "{}", g.render());
    {
        let st = fake.lock();
        assert_eq!(st.users.len(), 3 + ent_data::expected_users(&spec));
        assert!(st.members_of("grp_club").is_empty());
        assert!(st.members_of("grp_chorale").is_empty());
    }
    assert!(
        g.issues
            .iter()
            .any(|i| i.key == "club" && i.outcome == "pending" && i.reason.contains("re-examined")),
        "{}",
        g.render()
    );

    // Next run: the directory did not change; the pending groups are re-read and completed.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let g = run(true).await;
    assert!(g.complete, "{}", g.render());
    assert_eq!(g.entries_read, 2, "the two pending groups: {}", g.render());
    assert_eq!(g.counts["memberships"].created, 4, "{}", g.render());
    assert!(
        !g.issues.iter().any(|i| i.outcome == "pending"),
        "{}",
        g.render()
    );
    {
        let st = fake.lock();
        assert_eq!(st.members_of("grp_club"), set(&[4, 5]));
        assert_eq!(st.members_of("grp_chorale"), set(&[6, 7]));
    }

    // And then nothing is pending any more: no read, and no Moodle call for the groups but the
    // run's one token check, made by its last shard (this one) before the run is done (issue 14.14).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fake.reset_calls();
    let g = run(false).await;
    assert_eq!(g.entries_read, 0, "{}", g.render());
    assert_eq!(
        g.moodle_calls.keys().collect::<Vec<_>>(),
        ["core_webservice_get_site_info"],
        "{:?}",
        g.moodle_calls
    );
    assert_eq!(fake.lock().total_calls(), 1, "{:?}", fake.calls());
}

// ---------------------------------------------------------------- sharded path

fn ctx(function: &'static str) -> InvocationContext {
    InvocationContext {
        invocation_id: InvocationId::new(format!("test-{function}")).unwrap(),
        function,
    }
}

fn timer() -> TimerInfo {
    TimerInfo {
        is_past_due: false,
        last: None,
        next: None,
    }
}

#[tokio::test]
async fn timer_plans_shards_workers_apply_them_and_the_run_is_reported_once() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("export.ldif");
    let spec = Spec::new(60);
    let mut data = Vec::new();
    ent_data::write_ldif(&mut data, &spec).unwrap();
    std::fs::write(&ldif, &data).unwrap();
    let state = app(
        dir.path(),
        &fake,
        &[
            ("SYNC_ENABLED", "true"),
            ("SYNC_SOURCE", "ldif"),
            ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
            ("SYNC_ROLE_RULES", "-"),
        ],
    );
    state.store.ensure_tables().await.unwrap();

    let out = functions::on_timer(&state, &ctx("SyncTimer"), timer())
        .await
        .unwrap();
    assert_eq!(
        out.queue.len(),
        3,
        "one shard per population: {:?}",
        out.logs
    );
    assert!(out.queue.iter().all(|(q, _)| q == QUEUE_SYNC_WORK));
    let held = lease::current(&state.store)
        .await
        .unwrap()
        .expect("lease held");

    // A second timer while the run is going: refused politely, no shards.
    let busy = functions::on_timer(&state, &ctx("SyncTimer"), timer())
        .await
        .unwrap();
    assert!(busy.queue.is_empty());
    assert!(
        busy.logs.iter().any(|l| l.contains("sync not started")),
        "{:?}",
        busy.logs
    );
    assert_eq!(fake.lock().total_calls(), 0, "planning calls no Moodle");

    let msgs: Vec<String> = out.queue.iter().map(|(_, m)| m.clone()).collect();
    let deliver = |text: String, n: u32| QueueMessage {
        // Hosts may encode the text once more as a JSON string.
        text: if n > 1 {
            serde_json::to_string(&text).unwrap()
        } else {
            text
        },
        dequeue_count: n,
        id: None,
    };
    functions::on_shard(&state, &ctx("SyncWorker"), deliver(msgs[0].clone(), 1))
        .await
        .unwrap();
    // Redelivery of the same shard (the host retried it).
    functions::on_shard(&state, &ctx("SyncWorker"), deliver(msgs[0].clone(), 2))
        .await
        .unwrap();
    assert!(
        lease::current(&state.store).await.unwrap().is_some(),
        "run not finished: lease still held"
    );
    for m in &msgs[1..] {
        functions::on_shard(&state, &ctx("SyncWorker"), deliver(m.clone(), 1))
            .await
            .unwrap();
    }
    // Late redelivery after the run finished: still counted once.
    functions::on_shard(&state, &ctx("SyncWorker"), deliver(msgs[2].clone(), 3))
        .await
        .unwrap();

    assert!(
        lease::current(&state.store).await.unwrap().is_none(),
        "lease released"
    );
    let index = state
        .store
        .query(tables::RUNS, "index", None, 10)
        .await
        .unwrap();
    assert_eq!(index.entities.len(), 1, "the run is reported once");
    let reports = latest_reports(&state.store, 5).await.unwrap();
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r.run_id, held.owner);
    assert!(r.complete, "{}", r.render());
    assert_eq!(
        r.counts["users"].created as usize,
        ent_data::expected_users(&spec),
        "{}",
        r.render()
    );
    assert_eq!(r.entries_read, 60, "{}", r.render());
    assert_eq!(fake.lock().users.len(), 3 + ent_data::expected_users(&spec));
    let run = state
        .store
        .get(tables::RUNS, &r.run_id, "run")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.int("done"), Some(3));
    assert_eq!(run.str("status"), Some("done"));

    // The next timer starts a new run.
    let next = functions::on_timer(&state, &ctx("SyncTimer"), timer())
        .await
        .unwrap();
    assert_eq!(next.queue.len(), 3);
}

#[tokio::test]
async fn class_cohorts_are_named_after_the_school_not_its_siren() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("export.ldif");
    std::fs::write(&ldif, testkit::fixture("ent/sample-school.ldif")).unwrap();
    let state = app(
        dir.path(),
        &fake,
        &[
            ("SYNC_SOURCE", "ldif"),
            ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
            ("SYNC_ROLE_RULES", "-"),
        ],
    );
    let (code, r) = cli_sync(&state, &[]).await;
    assert_eq!(code, 0, "{}", r.render());
    let st = fake.lock();
    let c = st
        .cohort_by_idnumber("ent_99900100000016$6A")
        .expect("class cohort");
    assert_eq!(c.name, "6A (COLLÈGE SIMONE VEIL - SAINT-AUBIN-DES-PRÉS)");
    // Noé Dubois's second school has no structure entry in the file: its id stays.
    let other = st
        .cohort_by_idnumber("ent_99900200000025$ULIS-A")
        .expect("other school's cohort");
    assert_eq!(other.name, "ULIS-A (99900200000025)");
}

#[tokio::test]
async fn check_config_tells_the_admin_about_moodles_email_check_and_both_remedies() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("export.ldif");
    std::fs::write(&ldif, testkit::fixture("ent/sample-school.ldif")).unwrap();
    let state = app(
        dir.path(),
        &fake,
        &[
            ("SYNC_SOURCE", "ldif"),
            ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
        ],
    );
    let checks = bridge::sync::reachability(&state).await;
    let note = checks
        .iter()
        .find(|c| c.service == "moodle user creation")
        .expect("the e-mail check note");
    let text = note.outcome.as_ref().expect("advice, not a failure");
    assert!(text.contains("allowaccountssameemail=1"), "{text}");
    assert!(text.contains("lower(email)"), "{text}");
}

/// Checkpoints are keyed by source; an install upgraded from the single `ldap` partition still
/// finds the checkpoints its export-file passes left there, so it does not start over.
#[tokio::test]
async fn an_upgraded_install_keeps_the_checkpoints_of_the_legacy_ldap_partition() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("export.ldif");
    std::fs::write(&ldif, testkit::fixture("ent/sample-school.ldif")).unwrap();
    let state = app(
        dir.path(),
        &fake,
        &[
            ("SYNC_SOURCE", "ldif"),
            ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
            ("SYNC_ROLE_RULES", "-"),
        ],
    );
    let (code, r) = cli_sync(&state, &[]).await;
    assert_eq!(code, 0, "{}", r.render());
    assert!(r.entries_read > 0, "{}", r.render());
    let rows = state
        .store
        .query(tables::CHECKPOINTS, "ldif", None, 1000)
        .await
        .unwrap()
        .entities;
    assert!(!rows.is_empty(), "an export file's checkpoints are its own");
    // What an install before the upgrade holds: the same rows, under `ldap`.
    for mut e in rows {
        state
            .store
            .delete(tables::CHECKPOINTS, "ldif", &e.row_key, None)
            .await
            .unwrap();
        e.partition_key = "ldap".into();
        e.etag = None;
        state.store.upsert(tables::CHECKPOINTS, &e).await.unwrap();
    }
    fake.reset_calls();
    let (code, r) = cli_sync(&state, &[]).await;
    assert_eq!(code, 0, "{}", r.render());
    assert_eq!(
        r.entries_read,
        0,
        "the unchanged export is not read again: {}",
        r.render()
    );
    assert!(
        r.counts.get("users").is_none_or(|c| c.created == 0),
        "{}",
        r.render()
    );
    assert_eq!(fake.calls().get("core_user_create_users"), None);
}

/// Class cohorts and directory groups share one cohort-member writer. A removal Moodle refuses
/// fails the memberships of that call in the report and the pass goes on; the group writer of
/// before stopped the whole groups pass on it.
#[tokio::test]
async fn a_refused_member_removal_of_a_group_is_reported_and_the_pass_goes_on() {
    let spec = Spec::new(20);
    let mut data = Vec::new();
    ent_data::write_ldif(&mut data, &spec).unwrap();
    data.extend(group("club", &[person_dn(4)]).as_bytes());
    data.extend(group("chorale", &[person_dn(6)]).as_bytes());
    let slapd = Slapd::start(&data);
    let fake = FakeMoodle::start().await;
    {
        // Someone in the bridge's cohort who is not in the group: to be removed.
        let mut st = fake.lock();
        let cid = st.insert_cohort("club", "grp_club");
        let uid = st.insert_user(testkit::fake_moodle::FakeUser {
            username: "someone.else".into(),
            firstname: "Some".into(),
            lastname: "One".into(),
            email: "someone.else@example.org".into(),
            ..Default::default()
        });
        st.members.entry(cid).or_default().insert(uid);
    }
    fake.fail_with_exception("core_cohort_delete_cohort_members", "invalidparameter");
    let w = world_with(groups_settings(&slapd.url), fake).await;
    let r = run_inline(&w.env, &SyncOptions::scheduled(), None)
        .await
        .unwrap();
    assert!(
        r.issues.iter().any(|i| i.entity == "memberships"
            && i.key == "club"
            && i.outcome == "failed"
            && i.reason.contains("remove from club")),
        "{}",
        r.render()
    );
    assert!(r.errors.is_empty(), "{}", r.render());
    let st = w.fake.lock();
    assert!(st.members_of("grp_club").contains("someone.else"));
    assert!(st.members_of("grp_club").contains(&ent_data::login(4)));
    assert!(st.members_of("grp_chorale").contains(&ent_data::login(6)));
}
