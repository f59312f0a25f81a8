//! `demo`: the whole loop on this machine with no account anywhere. A sample school from the
//! project's own ENT generator ([`crate::ent_data`]) goes through the LDIF source into the Moodle
//! double; Entra accounts in the Graph double are linked to those Moodle accounts; every course
//! gets its team in the Graph double; a pupil asks the bot in French and in English through the
//! real `/api/messages` path (Bot Connector tokens minted with a key made at start,
//! [`keys`]); a teacher's announcement is posted to `/api/webhook` and fanned out to the pupil's
//! chat (Bot Connector double) and to the class channel's Workflows webhook (webhook double).
//! Then `serve` keeps running, with a one-time link to the admin page.
//!
//! Everything the bridge does here is its real code path: the settings are loaded and validated
//! like `handler serve`'s, the runs are the ones `handler sync` makes, and the HTTP calls go to
//! the server this process listens with.

pub mod keys;
pub mod moodle;

use crate::ent_data::{self, Spec};
use crate::fake_moodle::{FakeCourse, FakeMoodle};
use crate::graph_double::GraphDouble;
use crate::notify_doubles::{workflows_path, workflows_url, LimitedConnector, LimitedWebhook};
use bridge::app::AppState;
use bridge::sync::{RunReport, SyncEnv, SyncOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const BOT_APP_ID: &str = "de000000-0000-4000-8000-00000000b071";
const STUDENT: i64 = 5;

pub struct Options {
    /// Where `serve` listens (port 0: any free port).
    pub addr: SocketAddr,
    pub people: usize,
    /// Stop after the summary instead of serving (CI).
    pub exit_after_summary: bool,
    /// Where the store and the export go (default: a fresh temporary folder).
    pub dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: "127.0.0.1:7071".parse().expect("address"),
            people: 60,
            exit_after_summary: false,
            dir: None,
        }
    }
}

/// What happened, for the summary (and the test that reads it).
#[derive(Debug, Default)]
struct Summary {
    rows: BTreeMap<&'static str, String>,
}

impl Summary {
    fn set(&mut self, k: &'static str, v: impl ToString) {
        self.rows.insert(k, v.to_string());
    }
}

fn counts(r: &RunReport, entity: &str) -> bridge::sync::report::Counts {
    r.counts.get(entity).cloned().unwrap_or_default()
}

/// Prints as it goes; a closed stdout does not stop the demo.
struct Out<'a>(&'a mut dyn Write);

impl Out<'_> {
    fn line(&mut self, s: impl AsRef<str>) {
        let _ = writeln!(self.0, "{}", s.as_ref());
        let _ = self.0.flush();
    }
    fn step(&mut self, n: usize, title: &str) {
        self.line(format!("\n[{n}/7] {title}"));
    }
}

fn settings_map(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

/// A throwaway argon2 hash: sign-in under the demo is by the one-time link, so nobody needs
/// this password, and cheap parameters keep the start fast in a debug build.
fn throwaway_password_hash() -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt =
        SaltString::encode_b64(&rand_bytes::<16>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let password = hex_encode(&rand_bytes::<24>());
    let hash = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(1024, 1, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?,
    )
    .hash_password(password.as_bytes(), &salt)
    .map_err(|e| anyhow::anyhow!("hash: {e}"))?;
    Ok(hash.to_string())
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rsa::rand_core::RngCore::fill_bytes(&mut rsa::rand_core::OsRng, &mut b);
    b
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An Entra object id for person `i` of the sample school.
fn entra_id(i: usize) -> String {
    format!("e0000000-0000-4000-8000-{i:012}")
}

pub async fn run(opts: Options, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut out = Out(out);
    let mut sum = Summary::default();
    let started = std::time::Instant::now();
    let tmp = match &opts.dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("bridge-demo-").tempdir()?),
    };
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(|| tmp.as_ref().expect("temporary folder").path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    out.line("moodle-teams-bridge demo: the real bridge, with local doubles of the ENT directory,");
    out.line(
        "Moodle, Microsoft Graph, the Bot Connector and a Workflows webhook. No account needed.",
    );
    out.line(format!("working folder: {}", dir.display()));

    // --- the doubles -------------------------------------------------------------------------
    let fake = FakeMoodle::start().await;
    let graph = GraphDouble::start().await;
    let connector = LimitedConnector::start().await;
    let webhooks = LimitedWebhook::start().await;
    let keys = keys::LocalKeys::start().await?;
    let tenant = graph.lock().tenant_id.clone();
    // Graph takes a few polls (minutes) to finish a team; the double finishes at the first.
    crate::graph_double::teams::with(&graph, |t| t.polls_to_finish = 0);

    // --- step 1: the school ------------------------------------------------------------------
    out.step(
        1,
        "A sample school from the ENT data generator, exported as LDIF",
    );
    let spec = Spec {
        schools: 1,
        no_mail_every: 9,
        duplicate_login_every: 0,
        ..Spec::new(opts.people)
    };
    let ldif = dir.join("ent-export.ldif");
    ent_data::write_ldif(&mut std::fs::File::create(&ldif)?, &spec)?;
    let mut roles: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..spec.people {
        *roles.entry(ent_data::role_of(i)).or_default() += 1;
    }
    let school = ent_data::siren(0);
    out.line(format!(
        "  {} people ({} pupils, {} teachers, {} staff) of school {school}, written to {}",
        spec.people,
        roles.get("student").copied().unwrap_or(0),
        roles.get("teacher").copied().unwrap_or(0),
        roles.get("staff").copied().unwrap_or(0),
        ldif.display()
    ));
    // One Moodle course per class, named as the role rule expects (`{school}${class}`): the
    // teachers of a class become its editing teachers.
    let classes: std::collections::BTreeSet<&str> =
        (0..spec.people).map(|i| ent_data::class_of(i).1).collect();
    let mut courses: BTreeMap<String, FakeCourse> = BTreeMap::new();
    {
        let mut st = fake.lock();
        for class in &classes {
            let id = st.insert_course(&format!("SCI-{class}"), &format!("{school}${class}"), 1);
            if let Some(c) = st.courses.iter_mut().find(|c| c.id == id) {
                c.fullname = format!("Sciences {class}");
                courses.insert(class.to_string(), c.clone());
            }
        }
    }
    out.line(format!(
        "  Moodle has {} courses, one per class ({}), idnumber <school>$<class>",
        courses.len(),
        classes.iter().copied().collect::<Vec<_>>().join(", ")
    ));

    // --- settings, the app, serve --------------------------------------------------------------
    let mut env = vec![
        ("STORE_BACKEND".into(), "sqlite".into()),
        (
            "SQLITE_PATH".into(),
            dir.join("bridge.sqlite").display().to_string(),
        ),
        ("BLOB_DIR".into(), dir.join("blobs").display().to_string()),
        ("SYNC_SOURCE".into(), "ldif".into()),
        ("SYNC_SOURCE_FILE".into(), ldif.display().to_string()),
        ("MOODLE_URL".into(), fake.base_url()),
        (
            "MOODLE_TOKEN".into(),
            fake.settings().token.expose().to_string(),
        ),
        ("TEAMS_COURSES".into(), "all".into()),
        ("TEAMS_FRESH_GROUP_WAIT_SECS".into(), "0".into()),
        // Graph's own minimum between polls of a team creation (the default is 60).
        ("TEAMS_POLL_SECS".into(), "30".into()),
        (
            "ENTRA_ENT_LINK".into(),
            "login=onPremisesSamAccountName".into(),
        ),
        ("BOT_APP_ID".into(), BOT_APP_ID.into()),
        ("BOT_APP_TYPE".into(), "SingleTenant".into()),
        ("BOT_TENANT_ID".into(), tenant.clone()),
        ("BOT_APP_PASSWORD".into(), hex_encode(&rand_bytes::<16>())),
        ("BOT_OPENID_METADATA_URL".into(), keys.metadata_url()),
        (
            "BOT_TOKEN_ENDPOINT".into(),
            format!("{}/oauth2/v2.0/token", connector.uri()),
        ),
        ("BOT_TRUSTED_SERVICE_URLS".into(), connector.uri()),
        ("BOT_ANSWER_CACHE_SECS".into(), "0".into()),
        ("WEBHOOK_SECRET".into(), hex_encode(&rand_bytes::<24>())),
        ("NOTIFY_WEBHOOK_DOUBLE_URL".into(), webhooks.uri()),
        ("ADMIN_PASSWORD_HASH".into(), throwaway_password_hash()?),
        ("ADMIN_SESSION_KEY".into(), hex_encode(&rand_bytes::<32>())),
        ("LOG_LEVEL".into(), "warn".into()),
        ("LOG_FORMAT".into(), "text".into()),
    ];
    env.extend(graph.env());
    let env = settings_map(env);
    let webhook_secret = env["WEBHOOK_SECRET"].clone();
    let settings =
        bridge::settings::Settings::load(&mut bridge::config::Source::from_map(env.clone()))
            .map_err(|e| anyhow::anyhow!("demo settings: {e}"))?;
    bridge::telemetry::init(&settings.core.log_level, settings.core.log_json);
    let listener = tokio::net::TcpListener::bind(opts.addr).await?;
    let addr = listener.local_addr()?;
    let state = AppState::build(settings, true).await?;
    state.store.ensure_tables().await?;
    let serving = tokio::spawn(bridge::serve::run(state.clone(), listener));
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await?;
    out.line(format!(
        "  handler serve listening on {base} (store {})",
        state.store.describe()
    ));

    // --- step 2: directory → Moodle ----------------------------------------------------------
    out.step(
        2,
        "ENT directory → Moodle: accounts, class cohorts, teachers' roles (what `handler sync` runs)",
    );
    let sync = SyncEnv::from_app(&state).map_err(|e| anyhow::anyhow!(e))?;
    let ent_opts = SyncOptions {
        users: true,
        cohorts: true,
        roles: true,
        trigger: Some("cli".into()),
        ..Default::default()
    };
    let report = bridge::sync::run::run_inline(&sync, &ent_opts, None).await?;
    for line in report.render().lines() {
        out.line(format!("  {line}"));
    }
    let users = counts(&report, "users");
    sum.set("users_created", users.created);
    sum.set("users_skipped", users.skipped);
    sum.set("cohorts_created", counts(&report, "cohorts").created);
    sum.set("roles_assigned", counts(&report, "roles").created);

    // Moodle's cohort sync enrols each class cohort in its course; the double has no enrolment
    // methods, so the demo does what they would.
    let enrolled = {
        let mut st = fake.lock();
        let mut n = 0;
        let by_idnumber: BTreeMap<String, i64> = st
            .courses
            .iter()
            .map(|c| (c.idnumber.clone(), c.id))
            .collect();
        let assignments: Vec<(i64, i64, i64)> = st
            .role_assignments
            .iter()
            .filter(|(_, _, level, _)| level == "course")
            .map(|(r, u, _, c)| (*r, *u, *c))
            .collect();
        for (role, user, course) in assignments {
            n += usize::from(st.enrolments.insert((role, user, course)));
        }
        let cohorts: Vec<(String, i64)> = st
            .cohorts
            .values()
            .map(|c| (c.idnumber.clone(), c.id))
            .collect();
        for (idnumber, id) in cohorts {
            let class = idnumber.rsplit('$').next().unwrap_or_default().to_string();
            let Some(course) = by_idnumber.get(&format!("{school}${class}")).copied() else {
                continue;
            };
            let members: Vec<i64> = st.members.get(&id).into_iter().flatten().copied().collect();
            for m in members {
                n += usize::from(st.enrolments.insert((STUDENT, m, course)));
            }
        }
        n
    };
    out.line(format!(
        "  Moodle enrols each class cohort in its course and each teacher where they teach: {enrolled} enrolments (done by the double, as Moodle's cohort sync would)"
    ));

    // --- step 3: Entra → Moodle --------------------------------------------------------------
    out.step(
        3,
        "Entra ID → Moodle: the school's Entra accounts linked to the ENT's Moodle accounts",
    );
    {
        let mut g = graph.lock();
        for i in 0..spec.people {
            if spec.hostile && i == 3 {
                continue;
            }
            let login = ent_data::login(i);
            g.users.upsert(json!({
                "id": entra_id(i),
                "userPrincipalName": format!("{login}@college-demo.example"),
                "mail": format!("{login}@college-demo.example"),
                "givenName": ent_data::first_name(i),
                "surname": "Demo",
                "accountEnabled": true,
                "preferredLanguage": if i % 2 == 0 { "fr-FR" } else { "en-GB" },
                "onPremisesSamAccountName": login,
            }));
        }
    }
    anyhow::ensure!(sync.entra.is_some(), "Graph is not configured");
    let entra_opts = SyncOptions {
        entra: true,
        trigger: Some("cli".into()),
        ..Default::default()
    };
    let entra = bridge::sync::run::run_inline(&sync, &entra_opts, None).await?;
    for line in entra.render().lines() {
        out.line(format!("  {line}"));
    }
    sum.set(
        "entra_linked",
        entra.entra.as_ref().map(|e| e.linked).unwrap_or(0),
    );

    // --- step 4: Moodle courses → Teams --------------------------------------------------------
    out.step(
        4,
        "Moodle courses → Teams: one team per course, teachers own it, pupils are members",
    );
    let teams_opts = SyncOptions {
        teams: true,
        trigger: Some("cli".into()),
        ..Default::default()
    };
    let teams = bridge::sync::run::run_inline(&sync, &teams_opts, None).await?;
    let t = counts(&teams, "teams");
    let pending: Vec<_> = teams
        .issues
        .iter()
        .filter(|i| i.outcome == "pending")
        .collect();
    out.line(format!(
        "  teams: {} requested from Graph, {} pending, {} failed ({} Graph team groups now exist in the double)",
        t.created,
        pending.len(),
        t.failed,
        crate::graph_double::teams::with(&graph, |s| s.groups.len())
    ));
    for p in pending.iter().take(5) {
        out.line(format!("  pending {}: {}", p.key, p.reason));
    }
    out.line("  (Graph creates a team asynchronously: the next run, at least 30 s later, polls it and adds the members; the demo runs it in 32 s)");
    sum.set("teams_requested", t.created);
    sum.set("teams_pending", pending.len());

    // --- step 5: the bot -------------------------------------------------------------------------
    out.step(
        5,
        "The Teams bot: a pupil asks in French and in English (POST /api/messages)",
    );
    // A pupil with an Entra account and a Moodle account: index 4 is the first pupil after
    // the hostile entry.
    let pupil = (0..spec.people)
        .find(|&i| ent_data::role_of(i) == "student" && !(spec.hostile && i == 3))
        .ok_or_else(|| anyhow::anyhow!("no pupil in the sample"))?;
    let pupil_login = ent_data::login(pupil).to_lowercase();
    let (pupil_moodle, pupil_course) = {
        let st = fake.lock();
        let u = st
            .user_by_username(&pupil_login)
            .map(|u| u.id)
            .ok_or_else(|| anyhow::anyhow!("{pupil_login} not in Moodle"))?;
        let class = ent_data::class_of(pupil).1;
        (u, courses.get(class).cloned())
    };
    // Their class's course, and one more so the lists have two lines.
    let mut pupil_courses: Vec<FakeCourse> = pupil_course.iter().cloned().collect();
    let other = courses
        .values()
        .find(|c| Some(c.id) != pupil_course.as_ref().map(|p| p.id));
    pupil_courses.extend(other.cloned());
    let now = chrono::Utc::now().timestamp();
    moodle::answer_for(&fake, pupil_moodle, &pupil_courses, now);
    let service_url = format!("{}/emea/", connector.uri());
    let token = keys.connector_token(BOT_APP_ID, &service_url)?;
    let conversation = format!("a:demo-{pupil}");
    let mut answered = 0;
    for (n, (text, locale)) in [
        ("mes cours", "fr-FR"),
        ("what is due this week?", "en-GB"),
        ("mes notes", "fr-FR"),
    ]
    .iter()
    .enumerate()
    {
        let activity = message(
            &service_url,
            text,
            locale,
            &entra_id(pupil),
            &conversation,
            &tenant,
            n,
        );
        let before = connector.sends_to(&conversation).len();
        let r = http
            .post(format!("{base}/api/messages"))
            .bearer_auth(&token)
            .json(&activity)
            .send()
            .await?;
        let status = r.status().as_u16();
        let reply = wait_for(|| next_message(&connector, &conversation, before)).await;
        out.line(format!(
            "  {} asks ({locale}): {text:?} → HTTP {status}",
            ent_data::login(pupil)
        ));
        match reply {
            Some(a) => {
                answered += 1;
                for l in reply_lines(&a).iter().take(6) {
                    out.line(format!("      {l}"));
                }
            }
            None => out.line("      (no reply reached the Bot Connector double)"),
        }
    }
    sum.set("bot_answers", answered);

    // --- step 6: a notification ------------------------------------------------------------------
    out.step(
        6,
        "A Moodle notification fanned out (POST /api/webhook → notify queue → Teams)",
    );
    let course = pupil_course.ok_or_else(|| anyhow::anyhow!("the pupil's class has no course"))?;
    let channel_id = "demo-channel";
    bridge::notify::channels::save(
        &state.store,
        &bridge::notify::channels::ChannelConfig {
            id: channel_id.into(),
            course: course.id,
            url: workflows_url(channel_id),
            kinds: vec![bridge::notify::schema::Kind::Announcement],
            owner: entra_id(0),
            lang: "fr".into(),
            channel_name: "Général".into(),
            disabled: None,
        },
    )
    .await?;
    out.line(format!(
        "  the class channel of {} is subscribed to announcements (a Workflows webhook)",
        course.fullname
    ));
    let body = json!({
        "kind": "announcement",
        "course": course.id,
        "recipients": [pupil_moodle],
        "title": "Sortie au musée jeudi",
        "text": "Rendez-vous à 8 h 30 devant le collège.",
        "link": format!("{}/mod/forum/view.php?id=1", moodle::SITE),
        "idempotency_key": format!("demo-{}", hex_encode(&rand_bytes::<6>())),
    });
    let sent_before = connector.sends_to(&conversation).len();
    let r = http
        .post(format!("{base}/api/webhook"))
        .bearer_auth(&webhook_secret)
        .json(&body)
        .send()
        .await?;
    let status = r.status().as_u16();
    out.line(format!(
        "  POST /api/webhook → HTTP {status} (queued on notify)"
    ));
    let card = wait_for(|| next_message(&connector, &conversation, sent_before)).await;
    let post = wait_for(|| {
        webhooks
            .posts_to(&workflows_path(channel_id))
            .first()
            .cloned()
    })
    .await;
    out.line(format!(
        "  the pupil's chat got the card: {}",
        if card.is_some() { "yes" } else { "no" }
    ));
    out.line(format!(
        "  the channel's Workflows webhook got the post: {}",
        if post.is_some() { "yes" } else { "no" }
    ));
    sum.set("notify_status", status);
    sum.set("notify_chat", card.is_some());
    sum.set("notify_channel", post.is_some());

    // --- step 7: the admin page ------------------------------------------------------------------
    out.step(
        7,
        "The admin page (/manage/sync): runs, history, schedules, service checks",
    );
    let token = bridge::admin::link::create(&state.store, chrono::Utc::now().timestamp()).await?;
    let link = bridge::admin::link::url(&addr, &token);
    let history = bridge::sync::run::latest_reports(&state.store, 20).await?;
    out.line(format!("  {} runs in the history", history.len()));
    sum.set("runs_in_history", history.len());
    sum.set("seconds", format!("{:.1}", started.elapsed().as_secs_f64()));

    out.line("\ndemo summary:");
    for (k, v) in &sum.rows {
        out.line(format!("  {k}: {v}"));
    }
    out.line(format!(
        "\nadmin page (one-time sign-in link, valid 10 minutes): {link}"
    ));
    if opts.exit_after_summary {
        serving.abort();
        return Ok(());
    }
    out.line(format!(
        "handler serve keeps running on {base} with the doubles; Ctrl-C stops it (the working folder {} is {}).",
        dir.display(),
        if tmp.is_some() { "removed then" } else { "kept" }
    ));
    // Graph asks for 30 s between polls of a team creation: one more Teams pass then finishes
    // the teams requested above and adds their members, as the next scheduled run would.
    if t.created > 0 {
        let sync = sync.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(32)).await;
            match bridge::sync::run::run_inline(&sync, &teams_opts, None).await {
                Ok(r) => {
                    let members = counts(&r, bridge::teams_sync::course::MEMBERS.as_str());
                    println!(
                        "\n[teams, 32 s later] {} teams ready, {} members added; see the run in the admin page's history",
                        counts(&r, "teams").updated + counts(&r, "teams").created,
                        members.created
                    );
                    if std::env::var_os("DEMO_DEBUG").is_some() {
                        println!("{}", r.render());
                    }
                }
                Err(e) => println!("\n[teams, 32 s later] the Teams pass did not run: {e}"),
            }
        });
    }
    serving.await??;
    Ok(())
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if http.get(format!("{base}/")).send().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("serve did not answer on {base}")
}

/// The first message activity the Connector double accepted for `conversation` after `skip` sends.
fn next_message(c: &LimitedConnector, conversation: &str, skip: usize) -> Option<Value> {
    c.sends_to(conversation)
        .into_iter()
        .skip(skip)
        .find(|a| a["type"] == "message")
}

/// Poll `f` for up to 20 s.
async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..200 {
        if let Some(v) = f() {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A personal-chat message as Teams sends it (`fixtures/botframework/message-personal.json`).
fn message(
    service_url: &str,
    text: &str,
    locale: &str,
    aad: &str,
    conversation: &str,
    tenant: &str,
    n: usize,
) -> Value {
    let now = chrono::Utc::now();
    json!({
        "text": text, "textFormat": "plain",
        "attachments": [{"contentType": "text/html", "content": format!("<p>{text}</p>")}],
        "type": "message", "timestamp": now.to_rfc3339(), "localTimestamp": now.to_rfc3339(),
        "id": format!("17000000000{n:02}"), "channelId": "msteams", "serviceUrl": service_url,
        "from": {"id": format!("29:demo-{aad}"), "name": "Élève démo", "aadObjectId": aad},
        "conversation": {"conversationType": "personal", "tenantId": tenant, "id": conversation},
        "recipient": {"id": format!("28:{BOT_APP_ID}"), "name": "Moodle"},
        "entities": [{"locale": locale, "country": "FR", "platform": "Web",
                      "timezone": "Europe/Paris", "type": "clientInfo"}],
        "channelData": {"tenant": {"id": tenant}},
        "locale": locale, "localTimezone": "Europe/Paris"
    })
}

/// The text of a bot reply: its own text, or the Adaptive Card's text blocks and facts.
fn reply_lines(activity: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(t) = activity["text"].as_str().filter(|t| !t.is_empty()) {
        lines.push(t.to_string());
    }
    fn walk(v: &Value, lines: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                match m.get("type").and_then(Value::as_str) {
                    Some("TextBlock") => {
                        if let Some(t) = m.get("text").and_then(Value::as_str) {
                            lines.push(t.to_string());
                        }
                    }
                    Some("FactSet") => {
                        for f in m
                            .get("facts")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            lines.push(format!(
                                "{}: {}",
                                f["title"].as_str().unwrap_or_default(),
                                f["value"].as_str().unwrap_or_default()
                            ));
                        }
                        return;
                    }
                    _ => {}
                }
                for (k, x) in m {
                    if k != "actions" {
                        walk(x, lines);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, lines)),
            _ => {}
        }
    }
    walk(&activity["attachments"], &mut lines);
    lines
}
