//! Leavers announced by the directory: a planned deletion date (`ENTPersonDateSuppression`)
//! suspends the account on that date, never creates one, and takes away only what the bridge
//! gave (SYNC_LEAVER_MEMBERSHIPS), never a cohort or role someone else gave.

use bridge::sync::run::run_inline;
use bridge::sync::{RunReport, SyncOptions};
use std::path::Path;
use testkit::fake_moodle::FakeMoodle;
use testkit::sync_env::{sync_settings, world_with, World};

const SCHOOL: &str = "ENTStructureSIREN=99900100000016,ou=structures,dc=ent,dc=example";

fn pupil(uid: &str, login: &str, class: &str, leaves: Option<&str>) -> String {
    let mut s = format!(
        "dn: uid={uid},ou=people,dc=ent,dc=example\nobjectClass: ENTPerson\nobjectClass: ENTEleve\n\
         uid: {uid}\nsn: Prévost\ngivenName: Clémence\nENTPersonLogin: {login}\n\
         ENTPersonJointure: AC-TEST${uid}\nENTEleveClasses: {SCHOOL}${class}\n"
    );
    if let Some(d) = leaves {
        s.push_str(&format!("ENTPersonDateSuppression: {d}\n"));
    }
    s.push('\n');
    s
}

fn teacher(leaves: Option<&str>) -> String {
    let mut s = format!(
        "dn: uid=T1,ou=people,dc=ent,dc=example\nobjectClass: ENTPerson\nobjectClass: ENTAuxEnseignant\n\
         uid: T1\nsn: Durand\ngivenName: Paul\nENTPersonLogin: paul.durand\nENTPersonJointure: AC-TEST$T1\n\
         ENTAuxEnsClasses: {SCHOOL}$6A\n"
    );
    if let Some(d) = leaves {
        s.push_str(&format!("ENTPersonDateSuppression: {d}\n"));
    }
    s.push('\n');
    s
}

fn write(path: &Path, parts: &[String]) {
    std::fs::write(path, parts.concat()).unwrap();
}

async fn world(file: &Path, extra: &[(&str, &str)]) -> World {
    let fake = FakeMoodle::start().await;
    let cat = fake.lock().categories[0].id;
    fake.lock()
        .insert_course("MATH6A", "99900100000016$6A", cat);
    let settings = sync_settings(
        &[
            ("SYNC_SOURCE", "ldif"),
            ("SYNC_SOURCE_FILE", file.to_str().unwrap()),
        ],
        extra,
    );
    world_with(settings, fake).await
}

async fn sync(w: &World) -> RunReport {
    let opts = SyncOptions {
        verbose: true,
        ..SyncOptions::scheduled()
    };
    let r = run_inline(&w.env, &opts, None).await.unwrap();
    assert!(r.complete && r.errors.is_empty(), "{}", r.render());
    r
}

const OURS: &str = "ent_99900100000016$6A";

/// Run 1: everyone present; a hand-made cohort holds the pupil too. Run 2: the dates arrive.
async fn leave(extra: &[(&str, &str)]) -> (World, RunReport, i64, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.ldif");
    write(
        &file,
        &[
            pupil("P1", "clemence.prevost", "6A", None),
            pupil("P2", "stay.here", "6A", None),
            teacher(None),
        ],
    );
    let w = world(&file, extra).await;
    let r = sync(&w).await;
    assert_eq!(r.counts["users"].created, 3, "{}", r.render());
    let manual = {
        let mut st = w.fake.lock();
        let c = st.insert_cohort("Chorale", "CHORALE");
        let id = st.user_by_username("clemence.prevost").unwrap().id;
        st.members.entry(c).or_default().insert(id);
        c
    };
    assert!(w.fake.lock().members_of(OURS).contains("clemence.prevost"));
    write(
        &file,
        &[
            pupil("P1", "clemence.prevost", "6A", Some("31/08/2025")),
            pupil("P2", "stay.here", "6A", Some("31/08/2099")),
            teacher(Some("2025-07-01")),
        ],
    );
    let r = sync(&w).await;
    (w, r, manual, dir)
}

#[tokio::test]
async fn a_passed_deletion_date_suspends_and_keeps_memberships_by_default() {
    let (w, r, manual, _dir) = leave(&[]).await;
    assert_eq!(r.counts["users"].removed, 2, "{}", r.render());
    {
        let st = w.fake.lock();
        assert!(st.user_by_username("clemence.prevost").unwrap().suspended);
        assert!(st.user_by_username("paul.durand").unwrap().suspended);
        assert!(
            !st.user_by_username("stay.here").unwrap().suspended,
            "a future date changes nothing yet"
        );
        assert!(st.members_of(OURS).contains("clemence.prevost"));
        assert!(st.members[&manual].contains(&st.user_by_username("clemence.prevost").unwrap().id));
        assert_eq!(
            st.role_assignments.len(),
            1,
            "the teacher keeps the course role"
        );
    }
    // Once suspended, a later full read leaves the account alone.
    w.fake.reset_calls();
    let again = run_inline(
        &w.env,
        &SyncOptions {
            force: true,
            ..SyncOptions::scheduled()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(again.counts["users"].removed, 0, "{}", again.render());
    assert!(
        w.fake
            .lock()
            .user_by_username("clemence.prevost")
            .unwrap()
            .suspended
    );
}

#[tokio::test]
async fn with_remove_a_leaver_loses_only_what_the_bridge_gave() {
    let (w, r, manual, _dir) = leave(&[("SYNC_LEAVER_MEMBERSHIPS", "remove")]).await;
    assert_eq!(r.counts["users"].removed, 2, "{}", r.render());
    let st = w.fake.lock();
    let p1 = st.user_by_username("clemence.prevost").unwrap().id;
    assert!(st.user_by_username("clemence.prevost").unwrap().suspended);
    assert!(
        !st.members_of(OURS).contains("clemence.prevost"),
        "out of the class cohort"
    );
    assert!(st.members_of(OURS).contains("stay.here"), "classmates stay");
    assert!(
        st.members[&manual].contains(&p1),
        "a cohort the bridge did not give is kept"
    );
    assert!(
        st.role_assignments.is_empty(),
        "the teacher's course role is taken away"
    );
}

#[tokio::test]
async fn a_person_whose_date_has_passed_is_never_created_unless_the_setting_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.ldif");
    write(
        &file,
        &[pupil("P1", "clemence.prevost", "6A", Some("31/08/2025"))],
    );
    let w = world(&file, &[]).await;
    let r = sync(&w).await;
    assert_eq!(r.counts["users"].created, 0, "{}", r.render());
    assert!(r
        .issues
        .iter()
        .any(|i| i.key == "P1" && i.reason.contains("planned deletion date 31/08/2025")));
    assert!(w.fake.lock().user_by_username("clemence.prevost").is_none());

    let w = world(&file, &[("SYNC_SUSPEND_ON_DELETION_DATE", "false")]).await;
    let r = sync(&w).await;
    assert_eq!(r.counts["users"].created, 1, "{}", r.render());
}

#[tokio::test]
async fn someone_gone_from_the_directory_is_suspended_with_the_same_choice() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.ldif");
    let everyone = [
        pupil("P1", "clemence.prevost", "6A", None),
        pupil("P2", "stay.here", "6A", None),
        teacher(None),
    ];
    write(&file, &everyone);
    let w = world(
        &file,
        &[
            ("SYNC_REMOVAL", "suspend"),
            ("SYNC_REMOVAL_MAX_SHARE", "1"),
            ("SYNC_LEAVER_MEMBERSHIPS", "remove"),
        ],
    )
    .await;
    sync(&w).await;
    let manual = {
        let mut st = w.fake.lock();
        let c = st.insert_cohort("Chorale", "CHORALE");
        let id = st.user_by_username("clemence.prevost").unwrap().id;
        st.members.entry(c).or_default().insert(id);
        c
    };
    write(&file, &everyone[1..]);
    let opts = SyncOptions {
        force: true,
        verbose: true,
        ..SyncOptions::scheduled()
    };
    let r = run_inline(&w.env, &opts, None).await.unwrap();
    assert_eq!(r.counts["users"].removed, 1, "{}", r.render());
    let st = w.fake.lock();
    let p1 = st.user_by_username("clemence.prevost").unwrap();
    assert!(p1.suspended);
    assert!(!st.members_of(OURS).contains("clemence.prevost"));
    assert!(st.members_of(OURS).contains("stay.here"));
    assert!(st.members[&manual].contains(&p1.id));
}

// ---------------------------------------------------------------- the full-pass schedule

/// Three people synced, then P1 leaves the export; suspensions are on.
async fn gone_from_the_export() -> (World, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.ldif");
    let everyone = [
        pupil("P1", "clemence.prevost", "6A", None),
        pupil("P2", "stay.here", "6A", None),
        teacher(None),
    ];
    write(&file, &everyone);
    let w = world(
        &file,
        &[
            ("SYNC_REMOVAL", "suspend"),
            ("SYNC_REMOVAL_MAX_SHARE", "1"),
            ("SYNC_FULL_SCHEDULE", "0 0 2 * * *"),
        ],
    )
    .await;
    let r = sync(&w).await;
    assert_eq!(r.counts["users"].created, 3, "{}", r.render());
    write(&file, &everyone[1..]);
    (w, dir)
}

fn suspended(w: &World, login: &str) -> bool {
    w.fake.lock().user_by_username(login).unwrap().suspended
}

#[tokio::test]
async fn an_incremental_run_cannot_see_leavers_the_nightly_full_pass_does() {
    let (w, _dir) = gone_from_the_export().await;
    let r = sync(&w).await;
    assert!(!r.options.full, "02:00 has not come since the first run");
    assert_eq!(r.counts["users"].removed, 0, "{}", r.render());
    assert!(!suspended(&w, "clemence.prevost"));

    // The last full pass was two days ago: 02:00 has passed since, so this run reads everything.
    let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
    bridge::sync::full_pass::record(&w.env.store, two_days_ago)
        .await
        .unwrap();
    w.fake.reset_calls();
    let r = sync(&w).await;
    assert!(r.options.full && !r.options.force, "{:?}", r.options);
    assert!(r.render().contains("scheduled full pass"));
    assert_eq!(r.counts["users"].removed, 1, "{}", r.render());
    assert!(suspended(&w, "clemence.prevost"));
    // Unchanged people cost no Moodle write on a full pass (unlike --force).
    assert_eq!(r.moodle_writes(), 1, "{:?}", r.moodle_calls);

    // Done for today.
    let r = sync(&w).await;
    assert!(!r.options.full);
}

#[tokio::test]
async fn the_timer_plans_a_due_full_pass_as_one_shard_that_also_removes() {
    use bridge::sync::run::{apply_shard, plan_run, FULL_PASS};
    let (w, _dir) = gone_from_the_export().await;
    let shards = plan_run(&w.env, &SyncOptions::scheduled()).await.unwrap();
    assert!(shards.len() > 1 && shards.iter().all(|s| s.population != FULL_PASS));
    for sh in &shards {
        apply_shard(&w.env, sh).await.unwrap();
    }
    assert!(!suspended(&w, "clemence.prevost"));

    let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
    bridge::sync::full_pass::record(&w.env.store, two_days_ago)
        .await
        .unwrap();
    let shards = plan_run(&w.env, &SyncOptions::scheduled()).await.unwrap();
    assert_eq!(shards.len(), 1);
    assert_eq!(shards[0].population, FULL_PASS);
    let r = apply_shard(&w.env, &shards[0]).await.unwrap();
    assert_eq!(r.counts["users"].removed, 1, "{}", r.render());
    assert!(suspended(&w, "clemence.prevost"));
    let next = plan_run(&w.env, &SyncOptions::scheduled()).await.unwrap();
    assert!(next.iter().all(|s| s.population != FULL_PASS), "recorded");
}
