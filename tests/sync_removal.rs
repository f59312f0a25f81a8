//! Removals: people who left the directory are suspended or deleted in Moodle only when asked
//! (SYNC_REMOVAL), only after a complete forced read, never above SYNC_REMOVAL_MAX_SHARE unless
//! forced, and only for accounts the bridge manages (its `mappings`).

use bridge::sync::engine::{Progress, Step};
use bridge::sync::run::run_inline;
use bridge::sync::{RunReport, SyncOptions, SyncSettings};
use std::sync::{Arc, Mutex};
use testkit::ent_data::{self, Spec};
use testkit::fake_moodle::{FakeMoodle, FakeUser};
use testkit::slapd::{Slapd, READER_DN, READER_PW};
use testkit::sync_env::{sync_settings, world_with, World};

const PEOPLE: usize = 60;

fn settings(url: &str, extra: &[(&str, &str)]) -> SyncSettings {
    sync_settings(
        &[
            ("LDAP_URL", url),
            ("LDAP_BIND_DN", READER_DN),
            ("LDAP_BIND_PASSWORD", READER_PW),
            ("LDAP_PAGE_SIZE", "50"),
            ("SYNC_OVERLAP_SECS", "0"),
            ("SYNC_BATCH_SIZE", "40"),
            ("SYNC_ROLE_RULES", "-"),
        ],
        extra,
    )
}

/// A Moodle that also holds an account the bridge never created (a teacher made by hand).
async fn world(settings: SyncSettings) -> World {
    let fake = FakeMoodle::start().await;
    fake.lock().insert_user(FakeUser {
        username: "manual.teacher".into(),
        firstname: "Manual".into(),
        lastname: "Teacher".into(),
        email: "manual.teacher@school.example".into(),
        auth: "manual".into(),
        ..Default::default()
    });
    world_with(settings, fake).await
}

fn users() -> SyncOptions {
    SyncOptions {
        users: true,
        ..Default::default()
    }
}

fn forced() -> SyncOptions {
    SyncOptions {
        force: true,
        verbose: true,
        ..users()
    }
}

fn delete_people(slapd: &Slapd, which: &[usize]) {
    let ldif: String = which
        .iter()
        .map(|i| {
            format!(
                "dn: uid={},ou=people,dc=ent,dc=example\nchangetype: delete\n\n",
                ent_data::uid(*i)
            )
        })
        .collect();
    slapd.modify(&ldif);
}

fn suspended(fake: &FakeMoodle) -> Vec<String> {
    fake.lock()
        .users
        .values()
        .filter(|u| u.suspended)
        .map(|u| u.username.clone())
        .collect()
}

fn removed(r: &RunReport) -> u64 {
    r.counts.get("users").map(|c| c.removed).unwrap_or(0)
}

/// Accounts the bridge does not manage are never touched.
fn assert_unmanaged_untouched(fake: &FakeMoodle) {
    let st = fake.lock();
    for name in ["admin", "guest", "bridge_ws", "manual.teacher"] {
        let u = st
            .user_by_username(name)
            .unwrap_or_else(|| panic!("{name} was deleted"));
        assert!(!u.suspended, "{name} was suspended");
    }
}

#[tokio::test]
async fn removal_is_off_by_default() {
    let slapd = Slapd::with_people(&Spec::new(PEOPLE));
    let w = world(settings(&slapd.url, &[])).await;
    let first = run_inline(&w.env, &users(), None).await.unwrap();
    assert!(first.complete, "{}", first.render());
    delete_people(&slapd, &[10]);
    w.fake.reset_calls();
    let r = run_inline(&w.env, &forced(), None).await.unwrap();
    assert!(r.complete && r.errors.is_empty(), "{}", r.render());
    assert_eq!(removed(&r), 0);
    assert!(suspended(&w.fake).is_empty());
    assert!(w
        .fake
        .lock()
        .user_by_username(&ent_data::login(10))
        .is_some());
    assert_eq!(w.fake.calls().get("core_user_update_users"), None);
    assert_eq!(w.fake.calls().get("core_user_delete_users"), None);
    assert_unmanaged_untouched(&w.fake);
}

#[tokio::test]
async fn one_person_gone_is_suspended_then_revived_when_back() {
    let spec = Spec::new(PEOPLE);
    let slapd = Slapd::with_people(&spec);
    let w = world(settings(&slapd.url, &[("SYNC_REMOVAL", "suspend")])).await;
    run_inline(&w.env, &users(), None).await.unwrap();
    // An incremental run cannot see who left: nothing happens without --force.
    delete_people(&slapd, &[10]);
    let r = run_inline(&w.env, &users(), None).await.unwrap();
    assert_eq!(removed(&r), 0);
    assert!(suspended(&w.fake).is_empty());

    let r = run_inline(&w.env, &forced(), None).await.unwrap();
    assert!(r.complete && r.errors.is_empty(), "{}", r.render());
    assert_eq!(removed(&r), 1, "{}", r.render());
    assert_eq!(suspended(&w.fake), vec![ent_data::login(10)]);
    assert!(
        r.trace
            .iter()
            .any(|l| l.contains(&ent_data::uid(10)) && l.contains("left the directory")),
        "the report says who and why"
    );
    assert!(r.render().contains("removed"));
    assert_unmanaged_untouched(&w.fake);

    // A second forced run does not suspend them again.
    w.fake.reset_calls();
    let r = run_inline(&w.env, &forced(), None).await.unwrap();
    assert_eq!(removed(&r), 0, "{}", r.render());
    assert_eq!(w.fake.calls().get("core_user_update_users"), None);

    // Back in the directory: the account is re-enabled.
    let mut entry = Vec::new();
    ent_data::write_person(&mut entry, &spec, 10).unwrap();
    let text = String::from_utf8(entry).unwrap();
    let add = text.replacen('\n', "\nchangetype: add\n", 1);
    slapd.modify(&add);
    let r = run_inline(&w.env, &forced(), None).await.unwrap();
    assert!(r.complete, "{}", r.render());
    assert!(suspended(&w.fake).is_empty(), "{}", r.render());
}

#[tokio::test]
async fn delete_mode_deletes_only_managed_accounts() {
    let slapd = Slapd::with_people(&Spec::new(PEOPLE));
    let w = world(settings(&slapd.url, &[("SYNC_REMOVAL", "delete")])).await;
    run_inline(&w.env, &users(), None).await.unwrap();
    let before = w.fake.lock().users.len();
    delete_people(&slapd, &[12]);
    let r = run_inline(&w.env, &forced(), None).await.unwrap();
    assert!(r.errors.is_empty(), "{}", r.render());
    assert_eq!(removed(&r), 1);
    assert_eq!(w.fake.lock().users.len(), before - 1);
    assert!(w
        .fake
        .lock()
        .user_by_username(&ent_data::login(12))
        .is_none());
    assert_eq!(w.fake.calls().get("core_user_delete_users"), Some(&1));
    assert_unmanaged_untouched(&w.fake);
}

#[tokio::test]
async fn more_than_the_share_is_refused_unless_allowed() {
    let slapd = Slapd::with_people(&Spec::new(PEOPLE));
    let w = world(settings(&slapd.url, &[("SYNC_REMOVAL", "suspend")])).await;
    run_inline(&w.env, &users(), None).await.unwrap();
    // 5 of 60 = 8.3% > the default 5%.
    let gone = [20, 21, 22, 23, 24];
    delete_people(&slapd, &gone);
    w.fake.reset_calls();
    let r = run_inline(&w.env, &forced(), None).await.unwrap();
    assert_eq!(removed(&r), 0);
    assert!(suspended(&w.fake).is_empty());
    assert_eq!(w.fake.calls().get("core_user_update_users"), None);
    let why = r
        .errors
        .iter()
        .find(|e| e.contains("removals refused"))
        .unwrap_or_else(|| panic!("{}", r.render()));
    assert!(why.contains("5 of 60"), "{why}");
    assert!(why.contains("SYNC_REMOVAL_MAX_SHARE"), "{why}");
    assert!(why.contains("--allow-mass-removal"), "{why}");

    // The CLI flag parses into the option that lifts the limit.
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: bridge::sync::cli::SyncArgs,
    }
    let opts = Cli::parse_from(["sync", "--users", "--force", "--allow-mass-removal"])
        .args
        .options();
    assert!(opts.allow_mass_removal && opts.force);
    let r = run_inline(&w.env, &opts, None).await.unwrap();
    assert!(r.errors.is_empty(), "{}", r.render());
    assert_eq!(removed(&r), 5);
    let mut want: Vec<String> = gone.iter().map(|i| ent_data::login(*i)).collect();
    want.sort();
    let mut got = suspended(&w.fake);
    got.sort();
    assert_eq!(got, want);
    assert_unmanaged_untouched(&w.fake);
}

#[tokio::test]
async fn simulation_counts_removals_and_does_none() {
    let slapd = Slapd::with_people(&Spec::new(PEOPLE));
    let w = world(settings(&slapd.url, &[("SYNC_REMOVAL", "delete")])).await;
    run_inline(&w.env, &users(), None).await.unwrap();
    delete_people(&slapd, &[30]);
    w.fake.reset_calls();
    let r = run_inline(
        &w.env,
        &SyncOptions {
            simulate: true,
            ..forced()
        },
        None,
    )
    .await
    .unwrap();
    assert!(r.errors.is_empty(), "{}", r.render());
    assert_eq!(removed(&r), 1);
    assert_eq!(w.fake.lock().write_calls(), 0, "{:?}", w.fake.calls());
    assert!(w
        .fake
        .lock()
        .user_by_username(&ent_data::login(30))
        .is_some());
    // Still there for a real run.
    let r = run_inline(&w.env, &forced(), None).await.unwrap();
    assert_eq!(removed(&r), 1);
}

/// The directory goes away in the middle of the forced read: nothing is removed, even with no
/// share limit, although most people were not seen.
#[tokio::test]
async fn a_read_that_fails_midway_removes_nobody() {
    let spec = Spec::new(2400);
    let slapd = Slapd::with_people(&spec);
    let s = settings(
        &slapd.url,
        &[
            ("SYNC_REMOVAL", "suspend"),
            ("SYNC_REMOVAL_MAX_SHARE", "1"),
            ("LDAP_PAGE_SIZE", "100"),
            ("SYNC_BATCH_SIZE", "100"),
            ("LDAP_TEACHERS_FILTER", "-"),
            ("LDAP_STAFF_FILTER", "-"),
            ("SYNC_COHORT_SOURCE", "attribute"),
        ],
    );
    let w = world(s).await;
    let first = run_inline(&w.env, &users(), None).await.unwrap();
    assert!(first.complete, "{}", first.render());
    let synced = first.counts["users"].created;
    assert!(synced > 1500);
    // The reader is at most one page ahead of the 1024-entry channel: stopping slapd after the
    // first applied batch leaves most of the directory unread.
    let slapd = Arc::new(Mutex::new(Some(slapd)));
    let s2 = slapd.clone();
    let progress: Progress = Arc::new(move |step| {
        if matches!(step, Step::Written(_)) {
            if let Some(d) = s2.lock().unwrap().take() {
                drop(d);
            }
        }
    });
    let r = run_inline(&w.env, &forced(), Some(progress)).await.unwrap();
    assert!(slapd.lock().unwrap().is_none(), "slapd was stopped");
    assert!(!r.complete, "{}", r.render());
    assert!(
        r.errors.iter().any(|e| e.contains("read failed")),
        "{}",
        r.render()
    );
    assert!(
        (r.entries_read as u64) < synced,
        "read stopped part-way: {} of {synced}",
        r.entries_read
    );
    assert_eq!(removed(&r), 0);
    assert!(suspended(&w.fake).is_empty());
    assert!(r.errors.iter().any(|e| e.contains("removals not done")));
}

/// Export files: a truncated or vanished file never leads to removals.
#[tokio::test]
async fn a_truncated_or_missing_export_file_removes_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.ldif");
    let spec = Spec::new(PEOPLE);
    let mut full = Vec::new();
    ent_data::write_ldif(&mut full, &spec).unwrap();
    std::fs::write(&path, &full).unwrap();
    let p = path.to_str().unwrap();
    let w = world(settings(
        "ldap://127.0.0.1:9/",
        &[
            ("SYNC_SOURCE", "ldif"),
            ("SYNC_SOURCE_FILE", p),
            ("SYNC_REMOVAL", "suspend"),
            ("SYNC_REMOVAL_MAX_SHARE", "1"),
        ],
    ))
    .await;
    let first = run_inline(&w.env, &users(), None).await.unwrap();
    assert!(first.complete, "{}", first.render());

    // Cut in the middle of a line, about two thirds in: the copy stopped part-way.
    let text = String::from_utf8(full.clone()).unwrap();
    let cut = text[..text.len() * 2 / 3].rfind("mail: ").unwrap() + 9;
    std::fs::write(&path, &full[..cut]).unwrap();
    let r = run_inline(&w.env, &forced(), None).await.unwrap();
    assert!(
        !r.complete,
        "a truncated export is a failed read: {}",
        r.render()
    );
    assert_eq!(removed(&r), 0, "{}", r.render());
    assert!(suspended(&w.fake).is_empty());

    // Gone altogether.
    std::fs::remove_file(&path).unwrap();
    let r = run_inline(&w.env, &forced(), None).await.unwrap();
    assert!(!r.errors.is_empty(), "{}", r.render());
    assert_eq!(removed(&r), 0);
    assert!(suspended(&w.fake).is_empty());

    // The complete file again, minus one person: now the removal happens.
    let minus: String = text
        .split("\n\n")
        .filter(|rec| !rec.contains(&format!("uid={},", ent_data::uid(9))))
        .map(|rec| format!("{rec}\n\n"))
        .collect();
    std::fs::write(&path, minus).unwrap();
    let r = run_inline(&w.env, &forced(), None).await.unwrap();
    assert!(r.complete && r.errors.is_empty(), "{}", r.render());
    assert_eq!(removed(&r), 1);
    assert_eq!(suspended(&w.fake), vec![ent_data::login(9)]);
}

// ---------------------------------------------------------------- Moodle's own accounts

const CSV_HEADER: &str =
    "uid,ENTPersonLogin,givenName,sn,mail,ENTPersonJointure,ENTEleveClasses,objectClass";

fn csv_row(uid: &str, login: &str, last: &str) -> String {
    format!("{uid},{login},Test,{last},{login}@ent.example,AC-TEST${uid},0750001A$6A,ENTPerson|ENTEleve")
}

fn csv_settings(file: &std::path::Path, extra: &[(&str, &str)]) -> SyncSettings {
    let mut all = vec![
        ("SYNC_SOURCE", "csv"),
        ("SYNC_SOURCE_FILE", file.to_str().unwrap()),
    ];
    all.extend_from_slice(extra);
    settings("ldap://127.0.0.1:1", &all)
}

fn protected_snapshot(fake: &FakeMoodle) -> Vec<FakeUser> {
    let st = fake.lock();
    [1, 2, 3].iter().map(|id| st.users[id].clone()).collect()
}

/// Every `users[i][id]` sent to core_user_update_users.
fn updated_ids(fake: &FakeMoodle) -> Vec<String> {
    fake.lock()
        .recorded
        .iter()
        .flatten()
        .filter(|(f, _)| f == "core_user_update_users")
        .flat_map(|(_, form)| form.iter())
        .filter(|(k, _)| k.ends_with("][id]"))
        .map(|(_, v)| v.clone())
        .collect()
}

#[tokio::test]
async fn directory_logins_of_moodle_own_accounts_are_never_managed() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    let rows = [
        CSV_HEADER.to_string(),
        csv_row("C001", "lea.martin", "Martin"),
        csv_row("C002", "Admin", "Intrus"),
        csv_row("C003", "guest", "Intrus"),
        csv_row("C004", "bridge_ws", "Intrus"),
        csv_row("C005", "hugo.petit", "Petit"),
    ];
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    let w = world(csv_settings(&csv, &[("SYNC_REMOVAL", "suspend")])).await;
    let before = protected_snapshot(&w.fake);
    w.fake.lock().recorded = Some(Vec::new());
    let all = SyncOptions {
        users: true,
        cohorts: true,
        roles: true,
        verbose: true,
        ..Default::default()
    };
    let r = run_inline(&w.env, &all, None).await.unwrap();
    assert!(r.complete, "{}", r.render());
    assert_eq!(r.counts["users"].created, 2, "{}", r.render());
    assert_eq!(r.counts["users"].skipped, 3, "{}", r.render());
    let reason = |key: &str| {
        r.issues
            .iter()
            .find(|i| i.key == key)
            .map(|i| i.reason.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        reason("C002"),
        "matches a protected Moodle account (admin): not managed"
    );
    assert_eq!(
        reason("C003"),
        "matches a protected Moodle account (guest): not managed"
    );
    assert!(
        reason("C004").starts_with("matches a protected Moodle account (bridge_ws"),
        "{}",
        reason("C004")
    );
    assert_eq!(
        r.moodle_calls.get("core_webservice_get_site_info"),
        Some(&1),
        "site info is read once per run: {:?}",
        r.moodle_calls
    );
    assert_eq!(protected_snapshot(&w.fake), before, "fields unchanged");
    assert!(updated_ids(&w.fake).is_empty());
    {
        let st = w.fake.lock();
        assert!(
            st.members
                .values()
                .all(|m| !m.contains(&1) && !m.contains(&2) && !m.contains(&3)),
            "no protected account in a cohort: {:?}",
            st.members
        );
        assert_eq!(st.members.values().map(|m| m.len()).sum::<usize>(), 2);
    }
    for key in ["C002", "C003", "C004"] {
        assert!(
            bridge::sync::state::load(&w.env.store, key)
                .await
                .unwrap()
                .is_none(),
            "{key} recorded in mappings"
        );
    }

    // A forced run with removals on, once the intruders left: nobody protected is touched.
    let rows = [
        CSV_HEADER.to_string(),
        csv_row("C001", "lea.martin", "Martin"),
        csv_row("C005", "hugo.petit", "Petit"),
    ];
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    let r = run_inline(
        &w.env,
        &SyncOptions {
            force: true,
            allow_mass_removal: true,
            ..all.clone()
        },
        None,
    )
    .await
    .unwrap();
    assert!(r.complete && r.errors.is_empty(), "{}", r.render());
    assert_eq!(removed(&r), 0, "{}", r.render());
    assert_eq!(protected_snapshot(&w.fake), before);
    assert!(updated_ids(&w.fake).is_empty());
    assert_unmanaged_untouched(&w.fake);
}

#[tokio::test]
async fn a_stale_mapping_to_a_protected_account_is_never_updated_suspended_or_deleted() {
    use bridge::moodle::users::UserFields;
    use bridge::sync::state::{self, MappingRow};
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    let rows = [
        CSV_HEADER.to_string(),
        csv_row("C001", "lea.martin", "Martin"),
        csv_row("C005", "hugo.petit", "Petit"),
        csv_row("C007", "old.admin", "Old"),
    ];
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    for mode in ["suspend", "delete"] {
        let w = world(csv_settings(&csv, &[("SYNC_REMOVAL", mode)])).await;
        let before = protected_snapshot(&w.fake);
        w.fake.lock().recorded = Some(Vec::new());
        // Rows an older version (or a hand edit) left behind, pointing at admin (2) and the
        // service account (3): one person still in the directory, one gone.
        let stale = |key: &str, id: i64, login: &str| MappingRow {
            key: key.into(),
            moodle_id: Some(bridge::ids::MoodleUserId::new(id).unwrap()),
            username: login.into(),
            fields: Some(UserFields {
                username: login.into(),
                firstname: "Stale".into(),
                ..Default::default()
            }),
            fingerprint: "stale".into(),
            ..Default::default()
        };
        state::save_all(
            &w.env.store,
            &[
                stale("C007", 2, "old.admin"),
                stale("C099", 3, "gone.person"),
            ],
        )
        .await
        .unwrap();
        let r = run_inline(
            &w.env,
            &SyncOptions {
                allow_mass_removal: true,
                ..forced()
            },
            None,
        )
        .await
        .unwrap();
        assert!(r.complete && r.errors.is_empty(), "{mode}: {}", r.render());
        assert_eq!(removed(&r), 0, "{mode}: {}", r.render());
        assert_eq!(r.counts["users"].created, 2, "{mode}: {}", r.render());
        for key in ["C007", "C099"] {
            assert!(
                r.issues.iter().any(
                    |i| i.key == key && i.reason.contains("matches a protected Moodle account")
                ),
                "{mode} {key}: {}",
                r.render()
            );
            assert!(
                state::load(&w.env.store, key).await.unwrap().is_none(),
                "{mode} {key}: the stale row is forgotten"
            );
        }
        assert_eq!(protected_snapshot(&w.fake), before, "{mode}");
        assert!(updated_ids(&w.fake).is_empty(), "{mode}");
        assert_eq!(w.fake.calls().get("core_user_delete_users"), None, "{mode}");
        assert_unmanaged_untouched(&w.fake);
    }
}
