//! Issue 20: parents synced from a real slapd with the SDET schema (the LDIF cases are in
//! `sync_parents.rs`). Links one way, the other way, both, inconsistently; children in two
//! schools; parents without mail; a link added and one removed between runs; a child created
//! later; simulation; the removal safety threshold counting parents; `--user <parent login>`.

use bridge::sync::run::run_inline;
use bridge::sync::{RunReport, SyncOptions, SyncSettings};
use std::collections::BTreeSet;
use testkit::ent_data::{self, Spec};
use testkit::fake_moodle::FakeMoodle;
use testkit::slapd::{Slapd, READER_DN, READER_PW};
use testkit::sync_env::{sync_settings, world_with, World};

const PARENT_ROLE_ID: i64 = 9;
const PEOPLE: &str = "ou=people,dc=ent,dc=example";

fn dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}")
}

/// A pupil of `school` (class 6A there) with back-links `(attribute, parent uid)`.
fn pupil(uid: &str, school: usize, back_links: &[(&str, &str)]) -> String {
    let login = uid.to_lowercase();
    let mut s = format!(
        "dn: {}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: inetOrgPerson\nobjectClass: ENTPerson\nobjectClass: ENTEleve\nuid: {uid}\n\
         cn: Eleve {uid}\nsn: Eleve\ngivenName: {uid}\nENTPersonLogin: {login}\n\
         ENTPersonJointure: AC-TEST${uid}\nmail: {login}@ent.example\nENTPersonProfils: National_ELV\n\
         ENTEleveClasses: {}$6A\n",
        dn(uid),
        ent_data::structure_dn(school)
    );
    for (attr, parent) in back_links {
        s.push_str(&format!("{attr}: {}\n", dn(parent)));
    }
    s + "\n"
}

/// A parent (`National_TUT`) listing `children`; no `mail` unless `mail` is set.
fn parent(uid: &str, children: &[&str], mail: bool) -> String {
    let login = uid.to_lowercase();
    let mut s = format!(
        "dn: {}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: inetOrgPerson\nobjectClass: ENTPerson\nobjectClass: ENTAuxPersRelEleve\n\
         uid: {uid}\ncn: Parent {uid}\nsn: Parent\ngivenName: {uid}\nENTPersonLogin: {login}\n\
         ENTPersonJointure: AC-TEST${uid}\nENTPersonProfils: National_TUT\n",
        dn(uid)
    );
    if mail {
        s.push_str(&format!("mail: {login}@famille.example\n"));
    }
    for c in children {
        s.push_str(&format!("ENTAuxPersRelEleveEleve: {}\n", dn(c)));
    }
    s + "\n"
}

/// PA lists C1 (school 0) and C2 (school 1), whose entries say nothing; PB is only named by C3's
/// back-link; PD and C4 name each other; PE lists C5, whose back-link names PX instead
/// (PE ↔ C5 inconsistent, PX ↔ C5 stands: PX's own list is empty); PG lists C7, not in the directory yet; PH has mail and lists C6.
fn directory() -> Vec<u8> {
    let spec = Spec {
        schools: 2,
        ..Spec::new(0)
    };
    let mut out = Vec::new();
    ent_data::write_base(&mut out, &spec).unwrap();
    let mut t = String::from_utf8(out).unwrap();
    t += &pupil("C1", 0, &[]);
    t += &pupil("C2", 1, &[]);
    t += &pupil("C3", 0, &[("ENTEleveParents", "PB")]);
    t += &pupil("C4", 1, &[("ENTEleveAutoriteParentale", "PD")]);
    t += &pupil("C5", 0, &[("ENTEleveParents", "PX")]);
    t += &pupil("C6", 1, &[]);
    t += &pupil("C8", 0, &[]);
    t += &parent("PA", &["C1", "C2"], false);
    t += &parent("PB", &[], false);
    t += &parent("PD", &["C4"], false);
    t += &parent("PE", &["C5"], false);
    t += &parent("PX", &[], false);
    t += &parent("PG", &["C7"], false);
    t += &parent("PH", &["C6"], true);
    t.into_bytes()
}

fn settings(url: &str, extra: &[(&str, &str)]) -> SyncSettings {
    sync_settings(
        &[
            ("LDAP_URL", url),
            ("LDAP_BIND_DN", READER_DN),
            ("LDAP_BIND_PASSWORD", READER_PW),
            ("LDAP_PAGE_SIZE", "50"),
            ("SYNC_OVERLAP_SECS", "0"),
            ("SYNC_TOKEN_RECHECK_SECS", "0"),
            ("SYNC_ROLE_RULES", "-"),
            ("SYNC_PARENTS", "on"),
            ("SYNC_PARENT_ROLE", "parent"),
            (
                "SYNC_ROLE_IDS",
                "manager=1,coursecreator=2,editingteacher=3,teacher=4,student=5,parent=9",
            ),
        ],
        extra,
    )
}

async fn world(slapd: &Slapd, extra: &[(&str, &str)]) -> World {
    let fake = FakeMoodle::start().await;
    fake.lock().assignable_roles.insert(PARENT_ROLE_ID);
    world_with(settings(&slapd.url, extra), fake).await
}

async fn run(w: &World, opts: SyncOptions) -> RunReport {
    let r = run_inline(&w.env, &opts, None).await.unwrap();
    assert!(r.errors.is_empty(), "{}", r.render());
    r
}

/// (parent login, child login) of every parent-role assignment, each checked to be in a user context.
fn links(fake: &FakeMoodle) -> BTreeSet<(String, String)> {
    fake.lock().links_of_role(PARENT_ROLE_ID)
}

fn set(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn wait_for_a_new_timestamp() {
    // modifyTimestamp has one-second resolution; the next incremental run must see the change.
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

#[tokio::test]
async fn parents_from_slapd_linked_either_way_then_changed_between_runs() {
    let slapd = Slapd::start(&directory());
    let w = world(&slapd, &[]).await;

    // Simulation: everything planned, nothing written.
    let sim = run(
        &w,
        SyncOptions {
            simulate: true,
            ..SyncOptions::scheduled()
        },
    )
    .await;
    assert!(sim.complete, "{}", sim.render());
    assert_eq!(w.fake.lock().write_calls(), 0, "{:?}", w.fake.calls());
    assert!(sim.counts["users"].created >= 14, "{}", sim.render());
    assert!(w.fake.lock().role_assignments.is_empty());

    let r = run(&w, SyncOptions::scheduled()).await;
    assert!(r.complete, "{}", r.render());
    assert_eq!(
        links(&w.fake),
        set(&[
            ("pa", "c1"), // parent's list; pupils in two schools
            ("pa", "c2"),
            ("pb", "c3"), // pupil's back-link only
            ("pd", "c4"), // both sides agree
            ("ph", "c6"),
            ("px", "c5"), // C5's back-link, PX's own list empty
        ]),
        "{}",
        r.render()
    );
    {
        let st = w.fake.lock();
        let pa = st.user_by_username("pa").expect("parent account");
        assert_eq!(pa.email, "pa@no-mail.invalid", "no mail: the placeholder");
        assert_eq!(
            st.user_by_username("ph").unwrap().email,
            "ph@famille.example"
        );
        // The child's own user context: instance = the child's Moodle id.
        let c2 = st.user_by_username("c2").unwrap().id;
        assert!(st
            .role_assignments
            .contains(&(PARENT_ROLE_ID, pa.id, "user".into(), c2)));
    }
    // PE ↔ C5: the two sides disagree, reported and neither given nor taken.
    assert!(
        r.issues
            .iter()
            .any(|i| i.key == "PE" && i.outcome == "inconsistent" && i.reason.contains("C5")),
        "{}",
        r.render()
    );
    assert!(!links(&w.fake).contains(&("pe".into(), "c5".into())));
    // PG's child is not in the directory (nor Moodle) yet: waiting in the retry set.
    assert!(r.waiting.contains_key("role context missing"), "{r:?}");

    // Between runs: PA drops C2 and gains C8 (PA's entry changes), C7 arrives.
    wait_for_a_new_timestamp();
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\ndelete: ENTAuxPersRelEleveEleve\nENTAuxPersRelEleveEleve: {}\n-\n\
         add: ENTAuxPersRelEleveEleve\nENTAuxPersRelEleveEleve: {}\n\n",
        dn("PA"),
        dn("C2"),
        dn("C8")
    ));
    let c7 = pupil("C7", 1, &[]).replacen('\n', "\nchangetype: add\n", 1);
    slapd.modify(&c7);
    wait_for_a_new_timestamp();
    let r2 = run(&w, SyncOptions::scheduled()).await;
    let now = links(&w.fake);
    assert!(now.contains(&("pa".into(), "c8".into())), "{}", r2.render());
    assert!(
        !now.contains(&("pa".into(), "c2".into())),
        "{}",
        r2.render()
    );
    assert!(
        now.contains(&("pg".into(), "c7".into())),
        "child created later: {}",
        r2.render()
    );
    assert!(r2.counts["roles"].removed >= 1, "{}", r2.render());
    assert!(!r2.waiting.contains_key("role context missing"), "{r2:?}");
    // Untouched links stay, with no write for them.
    assert!(now.contains(&("pb".into(), "c3".into())) && now.contains(&("pd".into(), "c4".into())));

    // A no-change run writes nothing.
    w.fake.reset_calls();
    let r3 = run(&w, SyncOptions::scheduled()).await;
    assert_eq!(w.fake.lock().write_calls(), 0, "{}", r3.render());
}

#[tokio::test]
async fn user_run_for_a_parent_syncs_the_parent_and_their_links() {
    let slapd = Slapd::start(&directory());
    let w = world(&slapd, &[]).await;
    run(&w, SyncOptions::scheduled()).await;
    let before = links(&w.fake);

    // A back-link on a pupil (PB's entry does not change): `--user pb` reads PB's links from both sides.
    wait_for_a_new_timestamp();
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: ENTEleveParents\nENTEleveParents: {}\n\n",
        dn("C6"),
        dn("PB")
    ));
    w.fake.reset_calls();
    let one = run(
        &w,
        SyncOptions {
            user: Some("pb".into()),
            ..SyncOptions::scheduled()
        },
    )
    .await;
    assert!(one.complete, "{}", one.render());
    let after = links(&w.fake);
    let added: Vec<_> = after.difference(&before).collect();
    assert_eq!(
        added,
        vec![&("pb".to_string(), "c6".to_string())],
        "{}",
        one.render()
    );
    assert!(
        before.difference(&after).next().is_none(),
        "nothing else removed"
    );
    assert_eq!(w.fake.calls().get("core_role_assign_roles"), Some(&1));
    assert_eq!(w.fake.calls().get("core_user_create_users"), None);
}

#[tokio::test]
async fn the_removal_threshold_counts_parents() {
    let slapd = Slapd::start(&directory());
    let w = world(&slapd, &[("SYNC_REMOVAL", "suspend")]).await;
    run(&w, SyncOptions::scheduled()).await;
    let managed = w.fake.lock().users.len() - 3; // guest, admin, the service account
    assert_eq!(managed, 14, "7 pupils and 7 parents");
    // Three parents leave the directory: 3 of 14 is far above the default 5%.
    let gone = ["PA", "PB", "PH"];
    let ldif: String = gone
        .iter()
        .map(|u| format!("dn: {}\nchangetype: delete\n\n", dn(u)))
        .collect();
    slapd.modify(&ldif);
    w.fake.reset_calls();
    let forced = SyncOptions {
        force: true,
        ..SyncOptions::scheduled()
    };
    let r = run_inline(&w.env, &forced, None).await.unwrap();
    let why = r
        .errors
        .iter()
        .find(|e| e.contains("removals refused"))
        .unwrap_or_else(|| panic!("{}", r.render()));
    assert!(why.contains("3 of"), "{why}");
    assert_eq!(
        w.fake.calls().get("core_user_update_users"),
        None,
        "{}",
        r.render()
    );
    assert!(w.fake.lock().users.values().all(|u| !u.suspended));

    let r = run(
        &w,
        SyncOptions {
            allow_mass_removal: true,
            ..forced
        },
    )
    .await;
    let st = w.fake.lock();
    let suspended: BTreeSet<&str> = st
        .users
        .values()
        .filter(|u| u.suspended)
        .map(|u| u.username.as_str())
        .collect();
    assert_eq!(
        suspended,
        BTreeSet::from(["pa", "pb", "ph"]),
        "{}",
        r.render()
    );
}
