//! Issue 20 against the real Moodle of `../shared/moodle-lab`: the sample school's parent
//! (Sandrine Hervé, F0100026, children F0100011 and F0100017) synced into the lab, the role
//! assignments read back from Moodle's tables (context level user, instance = each child), and
//! then through the bot's own reader (the report-builder custom report), as a parent's question
//! reads them. `tests/moodle-lab/parent_links.php` prepares the lab (parent role, report,
//! report-builder functions in the service); it is idempotent.

use bridge::bot::answers::{Action, Turn};
use bridge::bot::cards::Reply;
use bridge::bot::children::ParentLinks;
use bridge::bot::i18n::Lang;
use bridge::bot::parents::{self, Subject};
use bridge::config::Source;
use bridge::ids::MoodleUserId;
use bridge::moodle::reports::ReportId;
use bridge::moodle::users;
use bridge::store::sqlite::SqliteStore;
use bridge::store::SharedStore;
use bridge::sync::run::{run_inline, SyncEnv};
use bridge::sync::{SyncOptions, SyncSettings};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use testkit::moodle_lab::{lab, unique_prefix};

struct LabParents {
    role_id: i64,
    report: ReportId,
}

fn prepare_lab() -> LabParents {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moodle-lab/parent_links.php");
    let root = lab().dir.join("www/moodle");
    let out = std::process::Command::new("php")
        .arg(script)
        .arg(format!("--root={}", root.display()))
        .output()
        .expect("php (installed with the lab)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    LabParents {
        role_id: v["roleid"].as_i64().unwrap(),
        report: ReportId::new(v["reportid"].as_i64().unwrap()).unwrap(),
    }
}

fn settings(prefix: &str, file: &str, parent_role_id: i64) -> SyncSettings {
    let ids = format!(
        "manager=1,coursecreator=2,editingteacher=3,teacher=4,student=5,parent={parent_role_id}"
    );
    let cohort_prefix = format!("{prefix}_");
    let map: BTreeMap<String, String> = [
        ("SYNC_COHORT_PREFIX", cohort_prefix.as_str()),
        ("SYNC_OVERLAP_SECS", "0"),
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", file),
        ("SYNC_PARENTS", "on"),
        ("SYNC_PARENT_ROLE", "parent"),
        ("SYNC_ROLE_IDS", ids.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut src = Source::from_map(map);
    let s = SyncSettings::load(&mut src);
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    s
}

/// (parent username, child username) of every `parent` role assignment in a user context held
/// by users of this test.
fn user_context_links(prefix: &str) -> BTreeSet<(String, String)> {
    assert!(prefix.chars().all(|c| c.is_ascii_alphanumeric()));
    lab()
        .sql(&format!(
            "select u.username, c.username from mdl_role_assignments ra \
             join mdl_role r on r.id = ra.roleid and r.shortname = 'parent' \
             join mdl_context x on x.id = ra.contextid and x.contextlevel = 30 \
             join mdl_user u on u.id = ra.userid join mdl_user c on c.id = x.instanceid \
             where u.deleted = 0 and u.username like '{prefix}%'"
        ))
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

async fn cleanup(prefix: &str) {
    let ids: Vec<MoodleUserId> = lab()
        .sql(&format!(
            "select id from mdl_user where deleted = 0 and username like '{prefix}%'"
        ))
        .into_iter()
        .filter_map(|r| r[0].parse::<MoodleUserId>().ok())
        .collect();
    for chunk in ids.chunks(200) {
        let _ = users::delete(&lab().client(), chunk).await;
    }
}

async fn moodle_id(username: &str) -> MoodleUserId {
    users::get_by_field(
        &lab().client(),
        users::UserField::Username,
        &[username.to_string()],
    )
    .await
    .unwrap()
    .first()
    .unwrap_or_else(|| panic!("{username} not in Moodle"))
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_schools_parent_is_linked_in_each_childs_user_context_and_read_back() {
    let lab_parents = prepare_lab();
    let p = unique_prefix("par");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.ldif");
    std::fs::write(&file, testkit::ent_data::prefixed_sample(&p)).unwrap();
    let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
    store.ensure_tables().await.unwrap();
    let env = SyncEnv {
        settings: Arc::new(settings(&p, file.to_str().unwrap(), lab_parents.role_id)),
        store,
        blobs: None,
        moodle: lab().client(),
        teams: None,
        entra: None,
    };
    let r = run_inline(&env, &SyncOptions::scheduled(), None)
        .await
        .expect("run");
    assert!(r.complete && r.errors.is_empty(), "{}", r.render());

    let (parent, lucie, timothee) = (
        format!("{p}sandrine.herve"),
        format!("{p}lucie.herve"),
        format!("{p}timothee.herve"),
    );
    // In Moodle's own tables: the parent role, in each child's user context.
    assert_eq!(
        user_context_links(&p),
        BTreeSet::from([
            (parent.clone(), lucie.clone()),
            (parent.clone(), timothee.clone())
        ]),
        "{}",
        r.render()
    );

    // Through the bot's reader, over the web service, as a parent's question reads them.
    let client = lab().client();
    let links = ParentLinks::new(lab_parents.report, "parent");
    let parent_id = moodle_id(&parent).await;
    let children = links
        .children_of(&client, parent_id)
        .await
        .expect("report read");
    let got: Vec<(MoodleUserId, String)> =
        children.iter().map(|c| (c.id, c.name.clone())).collect();
    assert_eq!(
        got,
        vec![
            (moodle_id(&lucie).await, "Lucie Hervé".to_string()),
            (moodle_id(&timothee).await, "Timothée Hervé".to_string()),
        ]
    );
    // A pupil holds no parent link; the bot's answer to the parent is the picker of both.
    assert!(links
        .children_of(&client, moodle_id(&lucie).await)
        .await
        .unwrap()
        .is_empty());
    let turn = Turn {
        lang: Lang::Fr,
        utc_offset_minutes: 0,
        now: chrono::Utc::now().timestamp(),
        moodle_url: lab()
            .settings()
            .url
            .as_str()
            .trim_end_matches('/')
            .to_string(),
        due_soon_days: 7,
    };
    let reply = parents::answer(
        &client,
        &links,
        &turn,
        parent_id,
        &Subject::MyChildren,
        &Action::Grades,
    )
    .await
    .unwrap()
    .expect("a parent answer");
    let Reply::Card { card, .. } = reply else {
        panic!("a picker card: {reply:?}")
    };
    assert_eq!(card["body"][0]["text"], "Pour lequel de vos enfants ?");
    let titles: Vec<&str> = card["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Lucie Hervé", "Timothée Hervé"]);

    // The link disappears from the directory: unassigned in Moodle, and the reader sees it at once.
    let text: Vec<String> = testkit::ent_data::prefixed_sample(&p)
        .split("\n\n")
        .map(|rec| {
            let is_timothee = rec.contains("dn: uid=F0100017,");
            rec.lines()
                .filter(|l| {
                    *l != "ENTAuxPersRelEleveEleve: uid=F0100017,ou=people,dc=ent,dc=example"
                })
                .filter(|l| {
                    !(is_timothee && l.ends_with(": uid=F0100026,ou=people,dc=ent,dc=example"))
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let text = text.join("\n\n") + "\n";
    std::fs::write(&file, text).unwrap();
    let r = run_inline(
        &env,
        &SyncOptions {
            force: true,
            ..SyncOptions::scheduled()
        },
        None,
    )
    .await
    .expect("run");
    assert!(r.errors.is_empty(), "{}", r.render());
    let after = user_context_links(&p);
    let children = links.children_of(&client, parent_id).await.unwrap();
    cleanup(&p).await;
    assert_eq!(after, BTreeSet::from([(parent, lucie)]), "{}", r.render());
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!(children[0].name, "Lucie Hervé");
}
