//! Issue 20: parents and legal guardians. Each parent ↔ child link becomes the parent role in the
//! child's user context, read from whichever side the directory fills (LDIF export source).

use bridge::app::AppState;
use std::collections::BTreeSet;
use std::path::Path;
use testkit::fake_moodle::FakeMoodle;
use testkit::sync_env::{self, cli_sync};

const PARENT_ROLE_ID: i64 = 9;

fn app(dir: &Path, fake: &FakeMoodle, ldif: &Path) -> AppState {
    sync_env::app_state(
        dir,
        fake,
        "TOKEN",
        &[
            ("SYNC_TOKEN_RECHECK_SECS", "0"),
            ("SYNC_SOURCE", "ldif"),
            ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
            ("SYNC_PARENTS", "on"),
            ("SYNC_PARENT_ROLE", "parent"),
            (
                "SYNC_ROLE_IDS",
                "manager=1,coursecreator=2,editingteacher=3,teacher=4,student=5,parent=9",
            ),
        ],
    )
}

const PEOPLE: &str = "ou=people,dc=ent,dc=example";

fn dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}")
}

fn pupil(uid: &str, login: &str, back_links: &[(&str, &str)]) -> String {
    let mut s = format!(
        "dn: {}\nobjectClass: top\nobjectClass: inetOrgPerson\nobjectClass: ENTPerson\n\
         objectClass: ENTEleve\nuid: {uid}\nsn: Eleve\ngivenName: {login}\nENTPersonLogin: {login}\n\
         ENTPersonJointure: AC-TEST${uid}\nENTPersonProfils: National_ELV\n",
        dn(uid)
    );
    for (attr, parent) in back_links {
        s.push_str(&format!("{attr}: {}\n", dn(parent)));
    }
    s + "\n"
}

fn parent(uid: &str, login: &str, children: &[&str]) -> String {
    let mut s = format!(
        "dn: {}\nobjectClass: top\nobjectClass: inetOrgPerson\nobjectClass: ENTPerson\n\
         objectClass: ENTAuxPersRelEleve\nuid: {uid}\nsn: Parent\ngivenName: {login}\n\
         ENTPersonLogin: {login}\nENTPersonJointure: AC-TEST${uid}\nENTPersonProfils: National_TUT\n",
        dn(uid)
    );
    for c in children {
        s.push_str(&format!("ENTAuxPersRelEleveEleve: {}\n", dn(c)));
    }
    s + "\n"
}

/// Parents one way (A: own list only), the other way (B: pupils' back-links only), both (D),
/// inconsistently (E, F), and G naming a child not in the directory yet.
fn directory(a_children: &[&str], with_c7: bool) -> String {
    let mut t = String::new();
    t += &pupil("C1", "c1", &[]);
    t += &pupil("C2", "c2", &[]);
    t += &pupil("C3", "c3", &[("ENTEleveParents", "PB")]);
    t += &pupil("C4", "c4", &[("ENTEleveAutoriteParentale", "PD")]);
    t += &pupil("C5", "c5", &[("ENTEleveParents", "PX")]);
    t += &pupil("C6", "c6", &[("ENTEleveParents", "PF")]);
    t += &pupil("C8", "c8", &[]);
    if with_c7 {
        t += &pupil("C7", "c7", &[]);
    }
    t += &parent("PA", "pa", a_children);
    t += &parent("PB", "pb", &[]);
    t += &parent("PD", "pd", &["C4"]);
    t += &parent("PE", "pe", &["C5"]);
    t += &parent("PF", "pf", &["C1"]);
    t += &parent("PG", "pg", &["C7"]);
    t
}

/// (parent login, child login) of every parent-role assignment in a user context.
fn links(fake: &FakeMoodle) -> BTreeSet<(String, String)> {
    fake.lock().links_of_role(PARENT_ROLE_ID)
}

fn set(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn fake() -> FakeMoodle {
    let fake = FakeMoodle::start().await;
    fake.lock().assignable_roles.insert(PARENT_ROLE_ID);
    fake
}

#[tokio::test]
async fn parent_links_from_either_side_become_the_parent_role_in_the_childs_user_context() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("export.ldif");
    std::fs::write(&ldif, directory(&["C1", "C2"], false)).unwrap();
    let state = app(dir.path(), &fake, &ldif);

    // Simulation first: every change computed, nothing written.
    let (_, sim) = cli_sync(&state, &["--simulate"]).await;
    assert!(sim.complete, "{}", sim.render());
    assert_eq!(fake.lock().write_calls(), 0, "{:?}", fake.calls());
    assert!(fake.lock().role_assignments.is_empty());
    assert!(sim.counts["users"].created >= 13, "{}", sim.render());

    let (_, r) = cli_sync(&state, &[]).await;
    assert!(r.complete, "{}", r.render());
    {
        let st = fake.lock();
        // Parents are accounts like the others; none has a mail: the missing-mail rule applies.
        let pa = st.user_by_username("pa").expect("parent account created");
        assert!(pa.email.ends_with("@no-mail.invalid"), "{}", pa.email);
        // The context is the child's own user context, instance = the child's Moodle id.
        let c1 = st.user_by_username("c1").unwrap().id;
        assert!(st
            .role_assignments
            .contains(&(PARENT_ROLE_ID, pa.id, "user".to_string(), c1)));
    }
    assert_eq!(
        links(&fake),
        set(&[
            ("pa", "c1"), // parent's list, pupil side empty
            ("pa", "c2"),
            ("pb", "c3"), // pupil's back-link, parent side empty
            ("pd", "c4"), // both sides
            ("pf", "c1"), // PF's own list, C1 names nobody
        ]),
        "{}",
        r.render()
    );
    // PE lists C5, whose back-links name someone else; C6 names PF, whose list lacks C6:
    // reported, not guessed. PF's own listed child C1 (no back-links) stands.
    for (key, child) in [("PE", "C5"), ("PF", "C6")] {
        assert!(
            r.issues
                .iter()
                .any(|i| i.key == key && i.outcome == "inconsistent" && i.reason.contains(child)),
            "{key}: {}",
            r.render()
        );
    }
    // PG's child is not in Moodle yet: pending, in the retry set.
    assert!(
        r.issues
            .iter()
            .any(|i| i.key == "PG" && i.reason.contains("child C7 is not in Moodle yet")),
        "{}",
        r.render()
    );
    assert!(r.waiting.contains_key("role context missing"), "{r:?}");

    // Next run: A's link to C2 disappears, C8 is added, and C7 now exists.
    std::fs::write(&ldif, directory(&["C1", "C8"], true)).unwrap();
    let (_, r2) = cli_sync(&state, &[]).await;
    assert!(r2.complete, "{}", r2.render());
    let now = links(&fake);
    assert!(now.contains(&("pa".into(), "c8".into())), "{}", r2.render());
    assert!(
        !now.contains(&("pa".into(), "c2".into())),
        "{}",
        r2.render()
    );
    assert!(now.contains(&("pg".into(), "c7".into())), "{}", r2.render());
    assert!(r2.counts["roles"].removed >= 1, "{}", r2.render());
    assert!(!r2.waiting.contains_key("role context missing"), "{r2:?}");
}

#[tokio::test]
async fn a_single_parent_run_syncs_the_parent_and_their_links_only() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("export.ldif");
    std::fs::write(&ldif, directory(&["C1"], true)).unwrap();
    let state = app(dir.path(), &fake, &ldif);
    let (_, r) = cli_sync(&state, &[]).await;
    assert!(r.complete, "{}", r.render());
    let before = links(&fake);

    std::fs::write(&ldif, directory(&["C1", "C2"], true)).unwrap();
    fake.reset_calls();
    let (_, one) = cli_sync(&state, &["--user", "pa"]).await;
    assert!(one.complete, "{}", one.render());
    let after = links(&fake);
    let added: Vec<_> = after.difference(&before).collect();
    assert_eq!(added, vec![&("pa".to_string(), "c2".to_string())]);
    assert_eq!(fake.calls().get("core_role_assign_roles"), Some(&1));
    assert_eq!(fake.calls().get("core_user_create_users"), None);
}
