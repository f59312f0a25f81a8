//! The sync against the real Moodle of `../shared/moodle-lab` (started by the test script): what
//! the directory says must be what Moodle holds afterwards, read back through its web service.
//! Each test works under its own username and cohort prefix (see `testkit::moodle_lab`).

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
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use testkit::moodle_lab::{lab, mails_to, smtp_sink, unique_prefix};

const SAMPLE_SIREN: &str = "99900100000016";

/// Settings of one test: its own cohort prefix, everything else as shipped.
fn settings(prefix: &str, extra: &[(&str, &str)]) -> SyncSettings {
    let cohort_prefix = format!("{prefix}_");
    let mut map: BTreeMap<String, String> = [
        ("SYNC_COHORT_PREFIX", cohort_prefix.as_str()),
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
            teams: None,
            entra: None,
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
        .filter_map(|r| r[0].parse::<MoodleUserId>().ok())
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

/// `ENTPersonDateSuppression` (dd/mm/yyyy) already passed: with the default
/// SYNC_SUSPEND_ON_DELETION_DATE no account is created for that person.
fn deletion_date_passed(e: &Entry) -> bool {
    e.first("ENTPersonDateSuppression")
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%d/%m/%Y").ok())
        .is_some_and(|d| d <= chrono::Utc::now().date_naive())
}

/// Moodle's 100-character columns, counted in characters.
fn cut100(v: &str) -> String {
    v.chars()
        .take(100)
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// In-scope entries, minus declared duplicates (seeAlso) and entries sharing a join key.
fn expected(entries: &[Entry], courses_of: &dyn Fn(&str) -> bool) -> Vec<Expected> {
    let in_scope: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            // The default populations: pupils, teachers, school and local-authority staff.
            [
                "ENTEleve",
                "ENTAuxEnseignant",
                "ENTAuxNonEnsEtab",
                "ENTAuxNonEnsCollLoc",
            ]
            .iter()
            .any(|c| has_class(e, c))
                && e.first("seeAlso").is_none()
                && !deletion_date_passed(e)
        })
        .collect();
    let mut joins: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &in_scope {
        *joins
            .entry(e.first("ENTPersonJointure").unwrap())
            .or_default() += 1;
    }
    in_scope
        .into_iter()
        .filter(|e| joins[e.first("ENTPersonJointure").unwrap()] == 1)
        .map(|e| {
            let login = e.first("ENTPersonLogin").unwrap().to_lowercase();
            let pair = |v: &String| {
                let class = v.rsplit('$').next().unwrap();
                format!("{}${class}", structure_of(v))
            };
            Expected {
                email: e
                    .first("mail")
                    .filter(|m| m.chars().count() <= 100)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{login}@no-mail.invalid")),
                username: login,
                firstname: cut100(e.first("givenName").unwrap()),
                lastname: cut100(e.first("sn").unwrap()),
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

const GEN_SCHOOLS: [&str; 3] = ["9990000100000", "9990000200000", "9990000300000"];
const FIRST: [&str; 8] = [
    "Léa",
    "Noé",
    "Maëlys",
    "Éloïse",
    "Jean-Baptiste",
    "Inès",
    "Zoé",
    "Théo",
];
const LAST: [&str; 7] = [
    "Œillet", "N'Diaye", "Le Goff", "Château", "Müller", "Da Silva", "Prévost",
];
const CLASSES: [&str; 5] = ["6A", "6B", "5A", "5B", "4A"];

fn ascii(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'é' | 'è' | 'ë' | 'É' => Some('e'),
            'ï' => Some('i'),
            'Œ' => Some('o'),
            'â' => Some('a'),
            'ü' => Some('u'),
            c if c.is_ascii_alphanumeric() || c == '-' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn ldif_line(out: &mut String, attr: &str, value: &str) {
    if value.is_ascii() {
        out.push_str(&format!("{attr}: {value}\n"));
    } else {
        let b = base64::engine::general_purpose::STANDARD.encode(value);
        out.push_str(&format!("{attr}:: {b}\n"));
    }
}

fn gen_person(out: &mut String, prefix: &str, uid: &str, i: usize, see_also: Option<&str>) {
    let school = GEN_SCHOOLS[i % 3];
    let s_dn = format!("ENTStructureSIREN={school},ou=structures,dc=ent,dc=example");
    let class = CLASSES[(i / 3) % CLASSES.len()];
    let mut first = FIRST[i % FIRST.len()].to_string();
    let mut last = LAST[(i / FIRST.len()) % LAST.len()].to_string();
    if i == 5 {
        // 130 characters: Moodle's column holds 100.
        first = "Marie-Ange-".repeat(12).chars().take(130).collect();
    }
    if i == 6 {
        // 100 characters but 200 bytes: fits, and must be kept whole.
        last = "é".repeat(100);
    }
    let short = |v: &str, n: usize| ascii(&v.chars().take(n).collect::<String>());
    let mut login = format!("{prefix}{}.{}{i}", short(&first, 12), short(&last, 8));
    if see_also.is_some() {
        login.push_str("dup");
    }
    let kind = match i % 10 {
        0 => "ENTAuxEnseignant",
        1 => "ENTAuxNonEnsEtab",
        _ => "ENTEleve",
    };
    out.push_str(&format!("dn: uid={uid},ou=people,dc=ent,dc=example\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\nobjectClass: ENTPerson\nobjectClass: {kind}\nuid: {uid}\n"));
    ldif_line(out, "cn", &format!("{first} {last}"));
    ldif_line(out, "sn", &last);
    ldif_line(out, "givenName", &first);
    out.push_str(&format!(
        "ENTPersonLogin: {login}\nENTPersonJointure: AC-TEST${prefix}{i}\n"
    ));
    if i == 8 {
        out.push_str(&format!("mail: {}{login}@ent.example\n", "x".repeat(90)));
    } else if i % 7 != 3 {
        out.push_str(&format!("mail: {login}@ent.example\n"));
    }
    if let Some(dn) = see_also {
        out.push_str(&format!("seeAlso: {dn}\n"));
    }
    match kind {
        "ENTAuxEnseignant" => {
            out.push_str(&format!("ENTPersonFonctions: {s_dn}$ENS$ENSEIGNEMENT$L1600$SCIENCES\nENTAuxEnsClasses: {s_dn}${class}\n"));
        }
        "ENTAuxNonEnsEtab" => {
            out.push_str(&format!(
                "ENTPersonFonctions: {s_dn}$EDU$EDUCATION$-$VIE SCOLAIRE\n"
            ));
        }
        _ => {
            out.push_str(&format!("ENTEleveClasses: {s_dn}${class}\n"));
            if i % 40 == 2 {
                // A pupil in a class of a second school too.
                let other = GEN_SCHOOLS[(i + 1) % 3];
                out.push_str(&format!("ENTEleveClasses: ENTStructureSIREN={other},ou=structures,dc=ent,dc=example$ULIS\n"));
            }
        }
    }
    out.push('\n');
}

/// `n` people in three schools (only the first has courses): accents, a 130-character first
/// name, a 100-character (200-byte) last name, a 100+-character address, people without mail,
/// a declared duplicate (seeAlso) of every 50th person, and two entries sharing one join key.
fn generated(prefix: &str, n: usize) -> String {
    let mut out = String::from("dn: dc=ent,dc=example\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\ndc: ent\no: ENT\n\n");
    for ou in ["people", "structures"] {
        out.push_str(&format!("dn: ou={ou},dc=ent,dc=example\nobjectClass: top\nobjectClass: organizationalUnit\nou: {ou}\n\n"));
    }
    for (k, school) in GEN_SCHOOLS.iter().enumerate() {
        out.push_str(&format!("dn: ENTStructureSIREN={school},ou=structures,dc=ent,dc=example\nobjectClass: top\nobjectClass: ENTStructure\nobjectClass: ENTEtablissement\nENTStructureSIREN: {school}\nENTStructureUAI: 999{k:04}X\nENTStructureNomCourant: COLLEGE {k}\n\n"));
    }
    for i in 0..n {
        let uid = format!("G{i:05}");
        gen_person(&mut out, prefix, &uid, i, None);
        if i % 50 == 4 {
            let real = format!("uid={uid},ou=people,dc=ent,dc=example");
            gen_person(&mut out, prefix, &format!("D{i:05}"), i, Some(&real));
        }
    }
    // Two entries, two logins, one join key (no seeAlso): a conflict.
    for (uid, login) in [("C00001", "conflict.one"), ("C00002", "conflict.two")] {
        out.push_str(&format!("dn: uid={uid},ou=people,dc=ent,dc=example\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\nobjectClass: ENTPerson\nobjectClass: ENTEleve\nuid: {uid}\ncn: Sam Conflict\nsn: Conflict\ngivenName: Sam\nENTPersonLogin: {prefix}{login}\nENTPersonJointure: AC-TEST${prefix}shared\nENTEleveClasses: ENTStructureSIREN={},ou=structures,dc=ent,dc=example$6A\n\n", GEN_SCHOOLS[0]));
    }
    out
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
    let ldif = testkit::ent_data::prefixed_sample(&p);
    let w = world(&p, Some(&ldif), &[]).await;
    let r = w.run(opts()).await;
    assert_eq!(r.total().failed, 0, "{}", r.render());
    let want = expected(&parse_ldif(&ldif), &|c| c.starts_with(SAMPLE_SIREN));
    // 20 pupils (one past her deletion date), 5 teachers, 3 school staff, 1 local-authority.
    assert_eq!(want.len(), 28);
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

/// The same sample school served by a real slapd instead of its export file: Moodle ends up
/// exactly as the directory says, with no password mail (both sources, one result).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_school_through_slapd_lands_in_moodle_like_its_export() {
    smtp_sink();
    let p = unique_prefix("sldap");
    let text = testkit::ent_data::prefixed_sample(&p);
    // slapadd takes entries only: the export's header comments and version line go.
    let entries: String = text
        .lines()
        .skip_while(|l| l.starts_with('#') || l.starts_with("version:") || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let slapd = testkit::slapd::Slapd::start(entries.as_bytes());
    let w = world(
        &p,
        None,
        &[
            ("LDAP_URL", slapd.url.as_str()),
            ("LDAP_BIND_DN", testkit::slapd::READER_DN),
            ("LDAP_BIND_PASSWORD", testkit::slapd::READER_PW),
        ],
    )
    .await;
    let r = w.run(opts()).await;
    assert_eq!(r.total().failed, 0, "{}", r.render());
    let want = expected(&parse_ldif(&text), &|c| c.starts_with(SAMPLE_SIREN));
    assert_eq!(want.len(), 28);
    assert_eq!(r.counts["users"].created, 28, "{}", r.render());
    let snap = snapshot(&p).await;
    assert_matches(&snap, &want, &format!("{p}_"), "cas");
    assert_eq!(snap.cohorts.len(), 4, "6A, 6B, 5A and ULIS-A");
    assert_eq!(
        mails_to(&p).len(),
        0,
        "password mails to {:?}",
        recipients(&p)
    );
    let again = w.run(opts()).await;
    assert_eq!(again.moodle_writes(), 0, "{}", again.render());
    cleanup(&p).await;
}

/// The generated directory through its LDIF export instead of slapd: the same people land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_directory_through_its_export_lands_in_moodle_as_through_slapd() {
    smtp_sink();
    let p = unique_prefix("genf");
    let text = generated(&p, 300);
    let w = world(&p, Some(&text), &[("SYNC_BATCH_SIZE", "120")]).await;
    let r = w.run(opts()).await;
    assert_eq!(r.total().failed, 0, "{}", r.render());
    let want = expected(&parse_ldif(&text), &|c| c.starts_with(GEN_SCHOOLS[0]));
    assert_eq!(want.len(), 300);
    assert_eq!(r.counts["users"].created, 300, "{}", r.render());
    assert_matches(&snapshot(&p).await, &want, &format!("{p}_"), "cas");
    cleanup(&p).await;
}

/// A few hundred generated people through a real slapd (paged search): accents, long values
/// cut to Moodle's columns in characters, missing mail, declared duplicates left out, a join key
/// claimed twice applied to neither, several schools (roles only where the course exists).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_directory_through_slapd_lands_in_moodle_as_the_directory_says() {
    smtp_sink();
    let p = unique_prefix("gen");
    let text = generated(&p, 300);
    let slapd = testkit::slapd::Slapd::start(text.as_bytes());
    let w = world(
        &p,
        None,
        &[
            ("LDAP_URL", slapd.url.as_str()),
            ("LDAP_BIND_DN", testkit::slapd::READER_DN),
            ("LDAP_BIND_PASSWORD", testkit::slapd::READER_PW),
            ("LDAP_PAGE_SIZE", "100"),
            ("SYNC_BATCH_SIZE", "120"),
        ],
    )
    .await;
    let r = w.run(opts()).await;
    assert_eq!(r.total().failed, 0, "{}", r.render());
    let entries = parse_ldif(&text);
    let want = expected(&entries, &|c| c.starts_with(GEN_SCHOOLS[0]));
    assert_eq!(want.len(), 300);
    assert_eq!(r.counts["users"].created, 300, "{}", r.render());
    let snap = snapshot(&p).await;
    assert_matches(&snap, &want, &format!("{p}_"), "cas");
    // Cut in characters: 100 é (200 bytes) kept whole, the 130-character first name cut to 100.
    let long_last = snap
        .users
        .values()
        .find(|u| u.lastname.starts_with('é'))
        .unwrap();
    assert_eq!(long_last.lastname, "é".repeat(100));
    let long_first = snap
        .users
        .values()
        .find(|u| u.firstname.starts_with("Marie-Ange"))
        .unwrap();
    assert_eq!(long_first.firstname.chars().count(), 100);
    let issues = |outcome: &str| -> Vec<String> {
        r.issues
            .iter()
            .filter(|i| i.outcome == outcome)
            .map(|i| format!("{} {}", i.key, i.reason))
            .collect()
    };
    assert_eq!(issues("shortened").len(), 2, "{:?}", issues("shortened"));
    let dups: Vec<String> = issues("skipped")
        .into_iter()
        .filter(|i| i.contains("seeAlso"))
        .collect();
    assert_eq!(dups.len(), 6, "{dups:?}");
    let conflicts = issues("conflict");
    assert!(
        conflicts.len() == 2
            && conflicts[0].starts_with("C00001")
            && conflicts[1].starts_with("C00002"),
        "{conflicts:?}"
    );
    // Teachers of the schools without courses: skipped with the reason, nothing assigned.
    assert!(r
        .issues
        .iter()
        .any(|i| i.entity == "roles" && i.reason.contains("no course with idnumber")));
    assert_eq!(mails_to(&p).len(), 0, "{:?}", recipients(&p));

    // No change in the directory: an incremental run writes nothing, and so does a forced one.
    let again = w.run(opts()).await;
    assert_eq!(again.moodle_writes(), 0, "{}", again.render());
    let forced = w
        .run(SyncOptions {
            force: true,
            ..opts()
        })
        .await;
    assert_eq!(forced.moodle_writes(), 0, "{}", forced.render());
    for entity in ["users", "memberships", "roles"] {
        let c = &forced.counts[entity];
        assert_eq!(
            (c.created, c.updated, c.removed),
            (0, 0, 0),
            "{entity}: {}",
            forced.render()
        );
    }
    assert_eq!(snapshot(&p).await, snap);
    cleanup(&p).await;
}

/// The double enforces what the real site does with Moodle's 100-character columns: 100
/// characters (200 bytes of `é`) are stored, 101 fail the whole create batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_double_and_the_real_moodle_agree_on_column_widths() {
    let p = unique_prefix("col");
    let fake = testkit::fake_moodle::FakeMoodle::start().await;
    let item = |n: usize, tag: &str| -> Vec<(String, String)> {
        bridge::moodle::users::UserFields {
            username: format!("{p}{tag}"),
            firstname: "é".repeat(n),
            lastname: "Martin".into(),
            email: format!("{p}{tag}@ent.example"),
            auth: "cas".into(),
            ..Default::default()
        }
        .create_item(false)
    };
    for client in [lab().client(), fake.client()] {
        let ok = users::create(&client, &[item(100, "a"), item(3, "b")]).await;
        assert_eq!(ok.map(|u| u.len()).ok(), Some(2));
        let err = users::create(&client, &[item(5, "c"), item(101, "d")])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("dmlwriteexception"), "{err}");
        let found = users::get_by_field(&client, UserField::Username, &[format!("{p}c")])
            .await
            .unwrap();
        assert!(found.is_empty(), "the batch was rolled back");
    }
    cleanup(&p).await;
}

/// The bot's answers for `student.martin` (seeded by the lab) say what Moodle holds: its courses,
/// the assignments due soon, the 87.5 grade. The answer code runs in-process against the lab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bots_answers_for_student_martin_match_what_moodle_holds() {
    use bridge::bot::answers::{answer, Action, Turn};
    use bridge::bot::cards::Reply;
    use bridge::bot::i18n::Lang;
    let client = lab().client();
    let found = users::get_by_field(
        &client,
        UserField::Username,
        &["student.martin".to_string()],
    )
    .await
    .unwrap();
    let martin = found
        .first()
        .expect("student.martin is seeded by the lab")
        .id;
    let now = chrono::Utc::now().timestamp();
    let turn = Turn {
        lang: Lang::En,
        utc_offset_minutes: 60,
        now,
        moodle_url: lab().url.trim_end_matches('/').to_string(),
        due_soon_days: 15,
    };
    let text = |r: Reply| match r {
        Reply::Text(t) => t,
        Reply::Card { summary, card } => format!("{summary} {card}"),
    };
    // What Moodle holds, read through its web service.
    let mut form = Form::new().field("userid", martin);
    form.push("returnusercount", 0);
    let courses = client
        .call_value("core_enrol_get_users_courses", &form)
        .await
        .unwrap();
    let courses: Vec<(i64, String)> = courses
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_i64().unwrap(),
                c["fullname"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(courses.len() >= 2, "{courses:?}");
    let said = text(
        answer(&client, &turn, martin, &Action::Courses)
            .await
            .unwrap(),
    );
    for (_, name) in &courses {
        let shown = serde_json::to_string(name).unwrap();
        assert!(
            said.contains(shown.trim_matches('"')),
            "course {name:?} missing from {said}"
        );
    }

    // The service account is not enrolled: without this flag it only gets warnings.
    let mut form = Form::new().field("includenotenrolledcourses", 1);
    for (i, (id, _)) in courses.iter().enumerate() {
        form.push(format!("courseids[{i}]"), id);
    }
    let assigns = client
        .call_value("mod_assign_get_assignments", &form)
        .await
        .unwrap();
    let mut due_soon = Vec::new();
    for c in assigns["courses"].as_array().unwrap() {
        for a in c["assignments"].as_array().unwrap() {
            let due = a["duedate"].as_i64().unwrap_or(0);
            if due > now && due <= now + 15 * 86_400 {
                due_soon.push(a["name"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(
        due_soon.len(),
        2,
        "the lab seeds two assignments due in 7 and 14 days"
    );
    let said = text(
        answer(
            &client,
            &turn,
            martin,
            &Action::Assignments { course: None },
        )
        .await
        .unwrap(),
    );
    for name in &due_soon {
        let shown = serde_json::to_string(name).unwrap();
        assert!(
            said.contains(shown.trim_matches('"')),
            "assignment {name:?} missing from {said}"
        );
    }

    let grades = client
        .call_value(
            "gradereport_overview_get_course_grades",
            &Form::new().field("userid", martin),
        )
        .await
        .unwrap();
    let held: Vec<f64> = grades["grades"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["rawgrade"].as_str()?.parse().ok())
        .collect();
    assert!(held.contains(&87.5), "{grades}");
    let said = text(
        answer(&client, &turn, martin, &Action::Grades)
            .await
            .unwrap(),
    );
    assert!(said.contains("87.5"), "{said}");
}

/// A course created in the lab by its PHP CLI (the bridge's token cannot create courses).
fn create_course(idnumber: &str, shortname: &str) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moodle-lab/course.php");
    let root = lab().dir.join("www/moodle");
    let out = std::process::Command::new("php")
        .arg(script)
        .arg(format!("--root={}", root.display()))
        .arg(format!("--idnumber={idnumber}"))
        .arg(format!("--shortname={shortname}"))
        .output()
        .expect("php (installed with the lab)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Entries skipped for a reason that can change (update-only, a course not there yet) wait in
/// the retry set and are re-examined by later runs, even when the export file did not change,
/// until they go through; the report says how many wait and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_entries_are_retried_until_they_go_through() {
    let p = unique_prefix("retry");
    let ldif = testkit::ent_data::prefixed_sample(&p);
    // Courses of this test only: `<prefix><school>$<class>`, none of which exists yet.
    let rule = format!("ENTAuxEnsClasses|course|editingteacher|{p}{{school}}${{code}}");
    let w = world(&p, Some(&ldif), &[("SYNC_ROLE_RULES", rule.as_str())]).await;

    let first = w
        .run(SyncOptions {
            update_only: true,
            ..opts()
        })
        .await;
    assert_eq!(first.counts["users"].created, 0);
    assert_eq!(
        first.waiting.get("update only"),
        Some(&28),
        "{}",
        first.render()
    );
    assert!(snapshot(&p).await.users.is_empty());

    // The export did not change: only the waiting entries are read again, and created.
    let second = w.run(opts()).await;
    assert_eq!(second.entries_read, 0, "{}", second.render());
    assert_eq!(second.retry_examined, 28, "{}", second.render());
    assert_eq!(second.counts["users"].created, 28, "{}", second.render());
    assert_eq!(second.waiting.get("update only"), None);
    assert_eq!(
        second.waiting.get("role context missing"),
        Some(&5),
        "the five teachers wait for their courses: {}",
        second.render()
    );
    assert!(second.render().contains("role context missing: 5"));
    assert!(lab().course_roles(&p).is_empty());

    for (school, class) in [
        (SAMPLE_SIREN, "6A"),
        (SAMPLE_SIREN, "6B"),
        (SAMPLE_SIREN, "5A"),
        ("99900200000025", "4C"),
    ] {
        create_course(
            &format!("{p}{school}${class}"),
            &format!("{p}-{school}-{class}"),
        );
    }
    let third = w.run(opts()).await;
    assert_eq!(third.retry_examined, 5, "{}", third.render());
    assert!(third.waiting.is_empty(), "{}", third.render());
    let want = expected(&parse_ldif(&ldif), &|_| true);
    let roles: BTreeSet<(String, String, String)> = want
        .iter()
        .flat_map(|w| {
            w.courses.iter().map(|c| {
                (
                    w.username.clone(),
                    "editingteacher".to_string(),
                    format!("{p}{c}"),
                )
            })
        })
        .collect();
    assert_eq!(roles.len(), 14);
    assert_eq!(lab().course_roles(&p), roles);
    // Nothing waits any more: the next run re-reads nothing.
    let fourth = w.run(opts()).await;
    assert_eq!(
        (fourth.retry_examined, fourth.moodle_writes()),
        (0, 0),
        "{}",
        fourth.render()
    );
    cleanup(&p).await;
}

fn check_config(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = lab().url.clone();
    let mut all: Vec<(&str, &str)> =
        vec![("MOODLE_URL", url.as_str()), ("STORE_BACKEND", "sqlite")];
    all.extend_from_slice(env);
    testkit::app::run_cli(dir.path(), &all, &["check-config"])
}

/// check-config reads what the token may do: the lab's `bridge_nocap` (only webservice/rest:use)
/// fails with the missing capabilities named; the bridge's own token passes.
#[test]
fn check_config_fails_on_a_token_without_the_capabilities() {
    let sample = testkit::fixtures_dir()
        .join("ent/sample-school.ldif")
        .display()
        .to_string();
    let source = [
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", sample.as_str()),
    ];
    let mut env = vec![("MOODLE_TOKEN", lab().nocap_token())];
    env.extend_from_slice(&source);
    let (code, out) = check_config(&env);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("moodle access (sync): FAILED"), "{out}");
    assert!(
        out.contains("moodle/user:viewdetails") && out.contains("moodle/cohort:view"),
        "{out}"
    );
    assert!(!out.contains(lab().nocap_token()), "token shown: {out}");
    let mut env = vec![("MOODLE_TOKEN", lab().token())];
    env.extend_from_slice(&source);
    let (code, out) = check_config(&env);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("moodle access (sync): ok"), "{out}");
}

/// check-config checks the sync's source whenever the sync is configured (not only when
/// scheduled): a missing export file, a directory that is down, a wrong bind password.
#[test]
fn check_config_fails_on_a_missing_file_ldap_down_or_a_wrong_password() {
    let token = [("MOODLE_TOKEN", lab().token())];
    let with = |extra: &[(&'static str, &str)]| {
        let mut env: Vec<(&str, &str)> = token.to_vec();
        env.extend_from_slice(extra);
        check_config(&env)
    };
    let (code, out) = with(&[
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", "/nonexistent/people.ldif"),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("sync source: FAILED") && out.contains("/nonexistent/people.ldif"),
        "{out}"
    );

    let down = format!("ldap://127.0.0.1:{}", testkit::free_port());
    let ldap = |url: &str, pw: &str| {
        with(&[
            ("LDAP_URL", url),
            ("LDAP_BIND_DN", testkit::slapd::READER_DN),
            ("LDAP_BIND_PASSWORD", pw),
            ("LDAP_TIMEOUT_SECS", "5"),
        ])
    };
    let (code, out) = ldap(&down, testkit::slapd::READER_PW);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("sync source: FAILED"), "{out}");

    let slapd = testkit::slapd::Slapd::start(generated("chk", 3).as_bytes());
    let (code, out) = ldap(&slapd.url, "not-the-password");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("sync source: FAILED"), "{out}");
    assert!(!out.contains("not-the-password"), "password shown: {out}");
    let (code, out) = ldap(&slapd.url, testkit::slapd::READER_PW);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("sync source: ok"), "{out}");
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
        Some(&testkit::ent_data::prefixed_sample(&quiet)),
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
        Some(&testkit::ent_data::prefixed_sample(&mailed)),
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
