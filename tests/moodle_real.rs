//! The sync against the real Moodle of `../shared/moodle-lab` (started by the test script): what
//! the directory says must be what Moodle holds afterwards, read back through its web service.
//! Each test works under its own username and cohort prefix (see `common::moodle_lab`).

mod common;

use base64::Engine;
use bridge::config::Source;
use bridge::ids::{MoodleCohortId, MoodleUserId};
use bridge::moodle::users::{self, MoodleUser, UserField};
use bridge::moodle::{cohorts, Form};
use bridge::store::sqlite::SqliteStore;
use bridge::store::SharedStore;
use bridge::sync::run::{run_inline, SyncEnv};
use bridge::sync::source::Entry;
use bridge::sync::{RunReport, SyncOptions, SyncSettings};
use common::moodle_lab::{lab, mails_to, smtp_sink, unique_prefix};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SAMPLE_SIREN: &str = "99900100000016";

/// Settings of one test: its own cohort prefix, the default populations spelled out (so the
/// expected set below does not move with the defaults), everything else as shipped.
fn settings(prefix: &str, extra: &[(&str, &str)]) -> SyncSettings {
    let cohort_prefix = format!("{prefix}_");
    let mut map: BTreeMap<String, String> = [
        ("SYNC_COHORT_PREFIX", cohort_prefix.as_str()),
        ("LDAP_STUDENTS_FILTER", "(objectClass=ENTEleve)"),
        ("LDAP_TEACHERS_FILTER", "(objectClass=ENTAuxEnseignant)"),
        ("LDAP_STAFF_FILTER", "(objectClass=ENTAuxNonEnsEtab)"),
        ("SYNC_OVERLAP_SECS", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    let mut src = Source::from_map(map);
    let s = SyncSettings::load(&mut src);
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    s
}

struct World {
    env: SyncEnv,
    dir: tempfile::TempDir,
}

/// A fresh store and the lab's Moodle; `ldif` (when given) is the export file the sync reads.
async fn world(prefix: &str, ldif: Option<&str>, extra: &[(&str, &str)]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.ldif");
    let mut extra = extra.to_vec();
    let file_s = file.display().to_string();
    if let Some(text) = ldif {
        std::fs::write(&file, text).unwrap();
        extra.push(("SYNC_SOURCE", "ldif"));
        extra.push(("SYNC_SOURCE_FILE", file_s.as_str()));
    }
    let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
    store.ensure_tables().await.unwrap();
    World {
        env: SyncEnv {
            settings: Arc::new(settings(prefix, &extra)),
            store,
            blobs: None,
            moodle: lab().client(),
        },
        dir,
    }
}

impl World {
    async fn run(&self, opts: SyncOptions) -> RunReport {
        let r = run_inline(&self.env, &opts, None).await.expect("run");
        assert!(r.complete && r.errors.is_empty(), "{}", r.render());
        r
    }

    fn ldif_path(&self) -> PathBuf {
        self.dir.path().join("people.ldif")
    }
}

/// Remove what a test created (best effort: prefixes keep leftovers from mattering).
async fn cleanup(prefix: &str) {
    let client = lab().client();
    let ids: Vec<MoodleUserId> = lab()
        .sql(&format!(
            "select id from mdl_user where deleted = 0 and username like '{prefix}%'"
        ))
        .into_iter()
        .filter_map(|r| r[0].parse().ok().map(MoodleUserId))
        .collect();
    for chunk in ids.chunks(200) {
        let _ = users::delete(&client, chunk).await;
    }
    let mine: Vec<MoodleCohortId> = cohorts::get_all(&client)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.idnumber.starts_with(prefix))
        .map(|c| c.id)
        .collect();
    if !mine.is_empty() {
        let mut form = Form::new();
        for (i, id) in mine.iter().enumerate() {
            form.push(format!("cohortids[{i}]"), id);
        }
        let _ = client.call_value("core_cohort_delete_cohorts", &form).await;
    }
}

// ---------------------------------------------------------------- directory data

/// Minimal LDIF reader of the test's own (independent of the bridge's parser): records separated
/// by blank lines, `attr: value` / `attr:: base64`, comments skipped.
fn parse_ldif(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for rec in text.split("\n\n") {
        let mut e: Option<Entry> = None;
        for line in rec.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (attr, value) = if let Some((a, v)) = line.split_once(":: ") {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .unwrap();
                (a, String::from_utf8(raw).unwrap())
            } else {
                let (a, v) = line.split_once(": ").unwrap_or((line, ""));
                (a, v.to_string())
            };
            if attr == "dn" {
                e = Some(Entry::new(value));
            } else if let Some(e) = e.as_mut() {
                e.push(attr, value);
            }
        }
        out.extend(e);
    }
    out
}

/// The sample school with every login, mail and join key prefixed, so it is new to the lab.
fn prefixed_sample(prefix: &str) -> String {
    let text = common::fixture("ent/sample-school.ldif");
    text.lines()
        .map(|l| {
            if let Some(v) = l.strip_prefix("ENTPersonLogin: ") {
                format!("ENTPersonLogin: {prefix}{v}")
            } else if let Some(v) = l.strip_prefix("mail: ") {
                format!("mail: {prefix}{v}")
            } else if let Some(v) = l.strip_prefix("ENTPersonJointure: ") {
                let (src, id) = v.split_once('$').unwrap();
                format!("ENTPersonJointure: {src}${prefix}{id}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn has_class(e: &Entry, class: &str) -> bool {
    e.all("objectClass").iter().any(|c| c == class)
}

/// What Moodle should hold for one in-scope person, worked out from the entry directly.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    username: String,
    firstname: String,
    lastname: String,
    email: String,
    idnumber: String,
    cohorts: BTreeSet<String>,
    /// course idnumbers where the person is editing teacher
    courses: BTreeSet<String>,
}

fn structure_of(v: &str) -> String {
    let s = v.split('$').next().unwrap();
    s.split(',')
        .next()
        .unwrap()
        .split_once('=')
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| s.to_string())
}

fn expected(entries: &[Entry], courses_of: &dyn Fn(&str) -> bool) -> Vec<Expected> {
    entries
        .iter()
        .filter(|e| {
            ["ENTEleve", "ENTAuxEnseignant", "ENTAuxNonEnsEtab"]
                .iter()
                .any(|c| has_class(e, c))
        })
        .map(|e| {
            let login = e.first("ENTPersonLogin").unwrap().to_lowercase();
            let pair = |v: &String| {
                let class = v.rsplit('$').next().unwrap();
                format!("{}${class}", structure_of(v))
            };
            Expected {
                email: e
                    .first("mail")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{login}@no-mail.invalid")),
                username: login,
                firstname: e.first("givenName").unwrap().to_string(),
                lastname: e.first("sn").unwrap().to_string(),
                idnumber: e
                    .first("ENTPersonJointure")
                    .unwrap()
                    .split_once('$')
                    .unwrap()
                    .1
                    .to_string(),
                cohorts: e.all("ENTEleveClasses").iter().map(pair).collect(),
                courses: e
                    .all("ENTAuxEnsClasses")
                    .iter()
                    .map(pair)
                    .filter(|c| courses_of(c))
                    .collect(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------- reading Moodle back

/// Everything of the prefix that Moodle holds: users (with fields), cohort memberships, roles.
#[derive(Debug, PartialEq)]
struct Snapshot {
    users: BTreeMap<String, MoodleUser>,
    /// cohort idnumber → (name, member usernames)
    cohorts: BTreeMap<String, (String, BTreeSet<String>)>,
    roles: BTreeSet<(String, String, String)>,
}

async fn snapshot(prefix: &str) -> Snapshot {
    let client = lab().client();
    let names: Vec<String> = lab()
        .sql(&format!(
            "select username from mdl_user where deleted = 0 and username like '{prefix}%'"
        ))
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let mut found = Vec::new();
    for chunk in names.chunks(200) {
        found.extend(
            users::get_by_field(&client, UserField::Username, chunk)
                .await
                .unwrap(),
        );
    }
    let by_id: BTreeMap<MoodleUserId, String> =
        found.iter().map(|u| (u.id, u.username.clone())).collect();
    let users: BTreeMap<String, MoodleUser> =
        found.into_iter().map(|u| (u.username.clone(), u)).collect();
    let mine: Vec<cohorts::Cohort> = cohorts::get_all(&client)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.idnumber.starts_with(prefix))
        .collect();
    let ids: Vec<MoodleCohortId> = mine.iter().map(|c| c.id).collect();
    let members = if ids.is_empty() {
        Vec::new()
    } else {
        cohorts::get_members(&client, &ids).await.unwrap()
    };
    let cohorts = mine
        .iter()
        .map(|c| {
            let m = members
                .iter()
                .find(|m| m.cohortid == c.id)
                .map(|m| {
                    m.userids
                        .iter()
                        .map(|id| by_id.get(id).cloned().unwrap_or_else(|| format!("#{id}")))
                        .collect()
                })
                .unwrap_or_default();
            (c.idnumber.clone(), (c.name.clone(), m))
        })
        .collect();
    Snapshot {
        users,
        cohorts,
        roles: lab().course_roles(prefix),
    }
}

/// Compare Moodle with the expected people: fields, cohort memberships and teacher roles.
fn assert_matches(snap: &Snapshot, want: &[Expected], cohort_prefix: &str, auth: &str) {
    let got: BTreeSet<&String> = snap.users.keys().collect();
    let exp: BTreeSet<&String> = want.iter().map(|w| &w.username).collect();
    assert_eq!(got, exp, "users in Moodle");
    let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut roles = BTreeSet::new();
    for w in want {
        let u = &snap.users[&w.username];
        assert_eq!(
            (&u.firstname, &u.lastname, &u.email, &u.idnumber, &u.auth),
            (
                &w.firstname,
                &w.lastname,
                &w.email,
                &w.idnumber,
                &auth.to_string()
            ),
            "fields of {}",
            w.username
        );
        assert!(!u.suspended, "{} suspended", w.username);
        for c in &w.cohorts {
            members
                .entry(format!("{cohort_prefix}{c}"))
                .or_default()
                .insert(w.username.clone());
        }
        for c in &w.courses {
            roles.insert((w.username.clone(), "editingteacher".to_string(), c.clone()));
        }
    }
    let got_members: BTreeMap<String, BTreeSet<String>> = snap
        .cohorts
        .iter()
        .map(|(k, (_, m))| (k.clone(), m.clone()))
        .collect();
    assert_eq!(got_members, members, "cohort memberships");
    assert_eq!(snap.roles, roles, "course role assignments");
}

fn opts() -> SyncOptions {
    SyncOptions::scheduled()
}

// ---------------------------------------------------------------- tests

/// The sample school through its LDIF export: Moodle matches the directory (users, fields,
/// cohorts, memberships, roles); no password mail; a simulation changes nothing; a no-change run
/// writes nothing; a changed person is updated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_school_from_ldif_lands_in_moodle_as_the_directory_says() {
    smtp_sink();
    let p = unique_prefix("ldif");
    let ldif = prefixed_sample(&p);
    let w = world(&p, Some(&ldif), &[]).await;
    let r = w.run(opts()).await;
    assert_eq!(r.total().failed, 0, "{}", r.render());
    let want = expected(&parse_ldif(&ldif), &|c| c.starts_with(SAMPLE_SIREN));
    assert_eq!(want.len(), 28, "20 pupils, 5 teachers, 3 school staff");
    assert_eq!(r.counts["users"].created, 28, "{}", r.render());
    let snap = snapshot(&p).await;
    assert_matches(&snap, &want, &format!("{p}_"), "cas");
    // Cohort names come from the class and school; every class of the sample has one.
    assert_eq!(
        snap.cohorts.len(),
        4,
        "6A, 6B, 5A and the other school's ULIS-A"
    );
    assert!(!snap.roles.is_empty());
    // CAS accounts get no password, so Moodle sends no "New user account" mail.
    assert_eq!(
        mails_to(&p).len(),
        0,
        "password mails to {:?}",
        recipients(&p)
    );

    // A forced simulation plans everything and writes nothing.
    let sim = w
        .run(SyncOptions {
            simulate: true,
            force: true,
            ..opts()
        })
        .await;
    assert_eq!(sim.moodle_writes(), 0, "{:?}", sim.moodle_calls);
    assert_eq!(snapshot(&p).await, snap, "simulation changed Moodle");

    // Nothing changed: no write (the file is not even read again).
    let again = w.run(opts()).await;
    assert_eq!(again.moodle_writes(), 0, "{}", again.render());

    // One pupil renamed in the export: exactly that user is updated.
    let renamed = ldif.replacen("sn: Martin\n", "sn: Martin-Durand\n", 1);
    assert_ne!(renamed, ldif);
    write(&w.ldif_path(), &renamed);
    let upd = w.run(opts()).await;
    assert_eq!(upd.counts["users"].updated, 1, "{}", upd.render());
    assert_eq!(upd.counts["users"].created, 0, "{}", upd.render());
    let after = snapshot(&p).await;
    assert_eq!(
        after.users[&format!("{p}lea.martin")].lastname,
        "Martin-Durand"
    );
    assert_matches(
        &after,
        &expected(&parse_ldif(&renamed), &|c| c.starts_with(SAMPLE_SIREN)),
        &format!("{p}_"),
        "cas",
    );
    cleanup(&p).await;
}

/// Who got mail (never the bodies: they hold temporary passwords).
fn recipients(prefix: &str) -> Vec<String> {
    mails_to(prefix).into_iter().flat_map(|m| m.rcpt).collect()
}

/// Manual accounts: no mail unless SYNC_MANUAL_PASSWORD_MAIL asks for it. The second half is
/// also the proof that the sink receives what Moodle sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_accounts_get_a_password_mail_only_when_the_setting_asks() {
    smtp_sink();
    let quiet = unique_prefix("man");
    let w = world(
        &quiet,
        Some(&prefixed_sample(&quiet)),
        &[("SYNC_USER_AUTH", "manual"), ("SYNC_ROLE_RULES", "-")],
    )
    .await;
    let r = w.run(opts()).await;
    assert_eq!(r.counts["users"].created, 28, "{}", r.render());
    let snap = snapshot(&quiet).await;
    assert!(snap.users.values().all(|u| u.auth == "manual"));
    assert_eq!(mails_to(&quiet).len(), 0, "{:?}", recipients(&quiet));
    let pref = lab().sql(&format!(
        "select count(*) from mdl_user_preferences p join mdl_user u on u.id = p.userid \
         where p.name = 'auth_forcepasswordchange' and u.username like '{quiet}%'"
    ));
    assert_eq!(
        pref[0][0], "0",
        "no forced password change without the mail"
    );
    cleanup(&quiet).await;

    let mailed = unique_prefix("mail");
    let w = world(
        &mailed,
        Some(&prefixed_sample(&mailed)),
        &[
            ("SYNC_USER_AUTH", "manual"),
            ("SYNC_ROLE_RULES", "-"),
            ("SYNC_MANUAL_PASSWORD_MAIL", "true"),
        ],
    )
    .await;
    let r = w.run(opts()).await;
    assert_eq!(r.counts["users"].created, 28, "{}", r.render());
    let got = mails_to(&mailed);
    // Everyone but Hugo Lefèvre, who has no mail: Moodle never mails a `.invalid` address.
    assert_eq!(got.len(), 27, "{:?}", recipients(&mailed));
    assert!(!recipients(&mailed)
        .iter()
        .any(|r| r.contains("no-mail.invalid")));
    assert!(got.iter().all(|m| m.data.contains("New user account")));
    cleanup(&mailed).await;
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}
