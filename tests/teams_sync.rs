//! Moodle courses → Teams against the Moodle double and the Graph double (which enforces Graph's
//! throttling table, permissions and the teams behaviours of `shared/fixtures/graph`): first
//! provisioning of many courses, role and name changes, pending courses, operations that take
//! several polls or fail, 207 partial failures, a crash between creating a group and recording
//! it, and simulations that write nothing.

use bridge::graph::GraphClient;
use bridge::outbound::RetryPolicy;
use bridge::store::{tables, SharedStore};
use bridge::sync::run::{run_inline, SyncEnv};
use bridge::sync::{RunReport, SyncOptions};
use bridge::teams_sync::api::{GraphReply, GraphRequest, GraphSend, Method, TeamsError};
use bridge::teams_sync::link::{self, Stage};
use bridge::teams_sync::{TeamsEnv, TeamsSettings};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::fake_moodle::{FakeMoodle, FakeUser};
use testkit::graph_double::{teams, Fault, GraphDouble};
use testkit::sync_env::{pairs, sync_settings};

const TEACHER: i64 = 3;
const STUDENT: i64 = 5;

fn entra(moodle_id: i64) -> String {
    format!("11111111-1111-4111-8111-{moodle_id:012x}")
}

struct World {
    fake: FakeMoodle,
    graph: GraphDouble,
    env: SyncEnv,
    _dir: tempfile::TempDir,
}

fn client(graph: &GraphDouble) -> GraphClient {
    let mut c = GraphClient::from_settings(reqwest::Client::new(), &graph.settings()).unwrap();
    c.retry = RetryPolicy {
        max_attempts: 4,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_total_wait: Duration::from_secs(20),
    };
    c
}

async fn world_with(extra: &[(&str, &str)], send: Option<Arc<dyn GraphSend>>) -> World {
    let fake = FakeMoodle::start().await;
    let graph = GraphDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore =
        Arc::new(bridge::store::sqlite::SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
    store.ensure_tables().await.unwrap();
    let mut map = pairs(&[
        ("TEAMS_COURSES", "all"),
        ("TEAMS_FRESH_GROUP_WAIT_SECS", "0"),
    ]);
    map.extend(pairs(extra));
    let mut src = bridge::config::Source::from_map(map);
    let settings = TeamsSettings::load(&mut src);
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    let send = send.unwrap_or_else(|| Arc::new(client(&graph)));
    // One client, as the app has: the run's report counts the Teams pass's Moodle calls too.
    let moodle = fake.client();
    let teams = TeamsEnv {
        settings: Arc::new(settings),
        store: store.clone(),
        moodle: moodle.clone(),
        graph: send,
        after_ready: None,
    };
    let env = SyncEnv {
        settings: Arc::new(sync_settings(&[], &[])),
        store,
        blobs: None,
        moodle,
        teams: Some(teams),
        entra: None,
    };
    World {
        fake,
        graph,
        env,
        _dir: dir,
    }
}

async fn world(extra: &[(&str, &str)]) -> World {
    world_with(extra, None).await
}

impl World {
    fn user(&self, username: &str) -> i64 {
        self.fake.lock().insert_user(FakeUser {
            username: username.into(),
            firstname: username.into(),
            lastname: "T".into(),
            email: format!("{username}@lab.example.test"),
            auth: "manual".into(),
            ..Default::default()
        })
    }

    /// A user with an Entra account the Entra sync linked.
    async fn linked(&self, username: &str) -> i64 {
        let id = self.user(username);
        self.link(id).await;
        id
    }

    async fn link(&self, id: i64) {
        self.env
            .store
            .upsert(
                tables::MAPPINGS,
                &bridge::teams_sync::users::link_row(&entra(id), id),
            )
            .await
            .unwrap();
    }

    fn course(&self, short: &str) -> i64 {
        self.fake
            .lock()
            .insert_course(short, &format!("ID-{short}"), 1)
    }

    fn enrol(&self, user: i64, role: i64, course: i64) {
        self.fake.lock().enrolments.insert((role, user, course));
    }

    fn unenrol(&self, user: i64, course: i64) {
        self.fake
            .lock()
            .enrolments
            .retain(|(_, u, c)| !(*u == user && *c == course));
    }

    async fn run(&self, opts: SyncOptions) -> RunReport {
        let r = run_inline(&self.env, &opts, None).await.unwrap();
        assert!(r.complete, "{}", r.render());
        r
    }

    async fn teams_run(&self) -> RunReport {
        self.run(teams_opts()).await
    }

    /// Polls stay `TEAMS_POLL_SECS` apart across runs: make every pending one due.
    async fn make_polls_due(&self) {
        for e in self
            .env
            .store
            .query(tables::MAPPINGS, link::COURSE_PK, None, 1000)
            .await
            .unwrap()
            .entities
        {
            let mut l: link::CourseTeam = e.json("link").unwrap().unwrap();
            l.polled_at -= 3600;
            link::save(&self.env.store, &l).await.unwrap();
        }
    }

    async fn link_of(&self, course: i64) -> link::CourseTeam {
        link::load(&self.env.store, course).await.unwrap().unwrap()
    }

    async fn roster(&self, course: i64) -> Vec<(String, bool)> {
        let team = self.link_of(course).await.team_id.unwrap();
        teams::with(&self.graph, |t| t.roster(&team))
    }

    /// Runs (polls made due each time) until every course's team is active.
    async fn until_active(&self, courses: &[i64], max_runs: usize) -> usize {
        let mut last = String::new();
        for n in 1..=max_runs {
            self.make_polls_due().await;
            last = self.teams_run().await.render();
            let mut all = true;
            for c in courses {
                all &= link::load(&self.env.store, *c)
                    .await
                    .unwrap()
                    .is_some_and(|l| l.stage == Stage::Active);
            }
            if all {
                return n;
            }
        }
        panic!("teams not active after {max_runs} runs; last run:\n{last}");
    }

    /// POSTs to exactly `path` (no sub-path).
    fn posts_to(&self, path: &str) -> usize {
        self.graph
            .lock()
            .log
            .iter()
            .filter(|(m, p)| m == "POST" && p.split('?').next() == Some(path))
            .count()
    }

    fn graph_writes(&self) -> usize {
        self.graph
            .lock()
            .log
            .iter()
            .filter(|(m, _)| m != "GET")
            .count()
    }
}

fn teams_opts() -> SyncOptions {
    SyncOptions {
        teams: true,
        ..Default::default()
    }
}

fn issues<'a>(r: &'a RunReport, outcome: &str) -> Vec<&'a bridge::sync::report::Issue> {
    r.issues.iter().filter(|i| i.outcome == outcome).collect()
}

#[tokio::test]
async fn first_provisioning_of_many_courses_then_a_run_with_no_change_calls_graph_not_at_all() {
    let w = world(&[]).await;
    teams::with(&w.graph, |t| t.polls_to_finish = 2);
    let mut courses = Vec::new();
    let mut expected = Vec::new();
    for c in 0..24 {
        let course = w.course(&format!("C{c:02}"));
        let teacher = w.linked(&format!("teacher{c}")).await;
        w.enrol(teacher, TEACHER, course);
        let mut roster = vec![(entra(teacher), true)];
        for s in 0..8 {
            let student = w.linked(&format!("s{c}-{s}")).await;
            w.enrol(student, STUDENT, course);
            roster.push((entra(student), false));
        }
        roster.sort();
        courses.push(course);
        expected.push(roster);
    }
    // One course's group creation fails once (a 500): the others go on.
    w.graph.inject(Fault {
        method: Some("POST".into()),
        path_prefix: "/groups".into(),
        status: 500,
        retry_after: None,
        times: 1,
    });
    let r = w.teams_run().await;
    let t = r.counts.get("teams").cloned().unwrap_or_default();
    assert_eq!((t.created, t.failed), (23, 1), "{}", r.render());
    assert_eq!(issues(&r, "failed").len(), 1, "{}", r.render());
    assert_eq!(r.moodle_writes(), 0);
    assert!(
        r.moodle_calls.contains_key("core_enrol_get_enrolled_users"),
        "{:?}",
        r.moodle_calls
    );
    assert_eq!(w.fake.lock().write_calls(), 0);
    // The operation is not polled again in the same run nor before TEAMS_POLL_SECS.
    let r = w.teams_run().await;
    assert_eq!(
        r.graph_calls.get("GET /teams/{id}/operations/{id}"),
        None,
        "{:?}",
        r.graph_calls
    );
    let runs = w.until_active(&courses, 6).await;
    assert!(
        runs >= 3,
        "two inProgress polls, then succeeded: {runs} runs"
    );
    for (c, want) in courses.iter().zip(&expected) {
        assert_eq!(&w.roster(*c).await, want, "course {c}");
    }
    let (groups, teams_n) = teams::with(&w.graph, |t| (t.groups.len(), t.teams.len()));
    assert_eq!(
        (groups, teams_n),
        (24, 24),
        "one group and one team per course"
    );
    // Nothing changed: no Graph call at all, no Moodle write.
    let before = w.graph.calls();
    let r = w.teams_run().await;
    assert_eq!(w.graph.calls(), before, "{:?}", r.graph_calls);
    assert_eq!(r.counts["teams"].unchanged, 24);
    assert_eq!(r.moodle_writes(), 0);
    assert_eq!(
        w.graph.lock().throttled,
        0,
        "the client paces itself under the limits"
    );
}

#[tokio::test]
async fn teacher_added_student_removed_course_renamed_and_teacher_becomes_student() {
    let w = world(&[]).await;
    teams::with(&w.graph, |t| t.polls_to_finish = 0);
    let course = w.course("MATH");
    let t1 = w.linked("t1").await;
    let t2 = w.linked("t2").await;
    let s1 = w.linked("s1").await;
    let s2 = w.linked("s2").await;
    for (u, r) in [(t1, TEACHER), (t2, TEACHER), (s1, STUDENT), (s2, STUDENT)] {
        w.enrol(u, r, course);
    }
    w.until_active(&[course], 3).await;
    let t3 = w.linked("t3").await;
    w.enrol(t3, TEACHER, course);
    w.unenrol(s2, course);
    w.unenrol(t2, course);
    w.enrol(t2, STUDENT, course);
    w.fake
        .lock()
        .courses
        .iter_mut()
        .find(|c| c.id == course)
        .unwrap()
        .fullname = "Mathématiques 2nde B".into();
    let r = w.teams_run().await;
    let mut want = vec![
        (entra(t1), true),
        (entra(t3), true),
        (entra(t2), false),
        (entra(s1), false),
    ];
    want.sort();
    assert_eq!(w.roster(course).await, want, "{}", r.render());
    let team = w.link_of(course).await.team_id.unwrap();
    let name = teams::with(&w.graph, |t| t.teams[&team].display_name.clone());
    assert_eq!(name, "Mathématiques 2nde B");
    let c = &r.counts["team members"];
    assert_eq!(
        (c.created, c.updated, c.removed),
        (1, 1, 1),
        "{}",
        r.render()
    );
    assert_eq!(
        r.graph_calls.get("DELETE /teams/{id}/members/{id}"),
        Some(&1)
    );

    // The last teacher leaves: the team keeps them as its owner, and says so.
    for t in [t1, t3] {
        w.unenrol(t, course);
    }
    w.enrol(t1, STUDENT, course);
    let r = w.teams_run().await;
    let owners: Vec<_> = w
        .roster(course)
        .await
        .into_iter()
        .filter(|(_, o)| *o)
        .collect();
    assert_eq!(owners.len(), 1, "{}", r.render());
    assert_eq!(issues(&r, "kept").len(), 1, "{}", r.render());
}

#[tokio::test]
async fn a_course_without_a_linked_owner_is_pending_then_created_once_one_is_linked() {
    let w = world(&[]).await;
    teams::with(&w.graph, |t| t.polls_to_finish = 0);
    let course = w.course("PHYS");
    let teacher = w.user("unlinked.teacher");
    let student = w.linked("s1").await;
    w.enrol(teacher, TEACHER, course);
    w.enrol(student, STUDENT, course);
    for _ in 0..2 {
        let r = w.teams_run().await;
        let p = issues(&r, "pending");
        assert_eq!(p.len(), 1, "{}", r.render());
        assert!(
            p[0].reason.contains("linked to an Entra account"),
            "{}",
            p[0].reason
        );
        assert!(
            r.errors.is_empty() && r.counts["teams"].failed == 0,
            "not an error: {}",
            r.render()
        );
    }
    assert_eq!(w.graph_writes(), 0);
    // The admin page's list: course, reason, since (the first run that found it pending).
    let listed = bridge::teams_sync::pending::list(&w.env.store)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].course_id, course);
    assert!(listed[0].reason.contains("linked to an Entra account"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(&listed[0].since).is_ok(),
        "{}",
        listed[0].since
    );
    let r = w.teams_run().await;
    assert!(
        issues(&r, "pending")[0]
            .reason
            .contains(&format!("pending since {}", listed[0].since)),
        "{}",
        r.render()
    );
    assert_eq!(
        bridge::teams_sync::pending::list(&w.env.store)
            .await
            .unwrap(),
        listed,
        "a later run keeps the first date"
    );
    w.link(teacher).await;
    let r = w.teams_run().await;
    assert_eq!(r.counts["teams"].created, 1, "{}", r.render());
    assert!(
        bridge::teams_sync::pending::list(&w.env.store)
            .await
            .unwrap()
            .is_empty(),
        "no longer pending once its team is requested"
    );
    w.until_active(&[course], 3).await;
    let mut want = vec![(entra(teacher), true), (entra(student), false)];
    want.sort();
    assert_eq!(w.roster(course).await, want);
}

#[tokio::test]
async fn an_operation_that_fails_is_requested_again_from_the_same_group() {
    let w = world(&[]).await;
    teams::with(&w.graph, |t| {
        t.polls_to_finish = 1;
        t.fail_next = 1;
    });
    let course = w.course("HIST");
    let teacher = w.linked("t").await;
    w.enrol(teacher, TEACHER, course);
    w.teams_run().await;
    w.make_polls_due().await;
    let r = w.teams_run().await;
    assert!(
        issues(&r, "waiting").len() == 1,
        "first poll: inProgress: {}",
        r.render()
    );
    w.make_polls_due().await;
    let r = w.teams_run().await;
    let f = issues(&r, "failed");
    assert_eq!(f.len(), 1, "{}", r.render());
    assert!(f[0].reason.contains("Conflict"), "{}", f[0].reason);
    w.until_active(&[course], 4).await;
    let (groups, teams_n) = teams::with(&w.graph, |t| (t.groups.len(), t.teams.len()));
    assert_eq!(
        (groups, teams_n),
        (1, 1),
        "the group is reused, not made again"
    );
    assert_eq!(w.posts_to("/groups"), 1);
    assert_eq!(w.posts_to("/teams"), 2);
}

#[tokio::test]
async fn a_207_leaves_only_the_refused_users_for_the_next_run() {
    let w = world(&[]).await;
    teams::with(&w.graph, |t| t.polls_to_finish = 0);
    let course = w.course("BIO");
    let teacher = w.linked("t").await;
    w.enrol(teacher, TEACHER, course);
    let mut students = Vec::new();
    for s in 0..5 {
        let id = w.linked(&format!("s{s}")).await;
        w.enrol(id, STUDENT, course);
        students.push(id);
    }
    let fresh = entra(students[2]);
    teams::with(&w.graph, |t| {
        t.unknown_users.insert(fresh.clone());
    });
    w.until_active(&[course], 3).await;
    let roster = w.roster(course).await;
    assert_eq!(roster.len(), 5, "teacher + 4 students: {roster:?}");
    let l = w.link_of(course).await;
    assert_eq!(l.refused, vec![(fresh.clone(), "NotFound".to_string())]);
    // Replicated now: the next run adds that user alone.
    teams::with(&w.graph, |t| t.unknown_users.clear());
    let before = teams::with(&w.graph, |t| t.add_sizes.clone());
    let r = w.teams_run().await;
    let after = teams::with(&w.graph, |t| t.add_sizes.clone());
    assert_eq!(&after[before.len()..], &[1], "{}", r.render());
    assert_eq!(w.roster(course).await.len(), 6);
    assert!(w.link_of(course).await.refused.is_empty());
}

/// Forwards to the real client, and "dies" (the run fails) right after Graph created the
/// `kill_after`-th group, before the bridge could record it: a kill -9 at the worst moment.
struct DiesAfterGroup {
    inner: GraphClient,
    groups: AtomicU32,
    kill_after: u32,
}

#[async_trait::async_trait]
impl GraphSend for DiesAfterGroup {
    async fn send(&self, req: GraphRequest) -> Result<GraphReply, TeamsError> {
        let is_group = req.method == Method::Post && req.path == "/groups";
        let reply = GraphSend::send(&self.inner, req).await?;
        if is_group && self.groups.fetch_add(1, Ordering::SeqCst) + 1 == self.kill_after {
            return Err(TeamsError::Fatal("killed".into()));
        }
        Ok(reply)
    }
}

#[tokio::test]
async fn a_worker_killed_between_creating_a_group_and_recording_it_resumes_without_a_duplicate() {
    let w = world(&[]).await;
    teams::with(&w.graph, |t| t.polls_to_finish = 0);
    let dying: Arc<dyn GraphSend> = Arc::new(DiesAfterGroup {
        inner: client(&w.graph),
        groups: AtomicU32::new(0),
        kill_after: 2,
    });
    let mut courses = Vec::new();
    for c in 0..4 {
        let course = w.course(&format!("K{c}"));
        let t = w.linked(&format!("t{c}")).await;
        w.enrol(t, TEACHER, course);
        courses.push(course);
    }
    let mut dying_env = w.env.clone();
    if let Some(t) = dying_env.teams.as_mut() {
        t.graph = dying;
    }
    let r = run_inline(&dying_env, &teams_opts(), None).await.unwrap();
    assert!(!r.complete, "the run died: {}", r.render());
    assert!(w.posts_to("/groups") >= 2);
    // The course whose group Graph made but the run never recorded (others in flight may be
    // anywhere: they were dropped where they stood, as a kill would leave them).
    let mut unrecorded = 0;
    for c in &courses {
        let l = link::load(&w.env.store, *c).await.unwrap();
        unrecorded += usize::from(l.is_some_and(|l| l.stage == Stage::CreatingGroup));
    }
    assert!(unrecorded >= 1, "{}", r.render());
    w.until_active(&courses, 4).await;
    let (groups, teams_n) = teams::with(&w.graph, |t| (t.groups.len(), t.teams.len()));
    assert_eq!(
        (groups, teams_n),
        (4, 4),
        "no second group or team for the interrupted course"
    );
    assert_eq!(w.posts_to("/groups"), 4);
}

#[tokio::test]
async fn a_simulation_makes_no_graph_and_no_moodle_write() {
    let w = world(&[]).await;
    teams::with(&w.graph, |t| t.polls_to_finish = 0);
    let course = w.course("ART");
    let t = w.linked("t").await;
    let s = w.linked("s").await;
    w.enrol(t, TEACHER, course);
    w.enrol(s, STUDENT, course);
    let sim = SyncOptions {
        simulate: true,
        ..teams_opts()
    };
    let r = w.run(sim.clone()).await;
    assert_eq!(issues(&r, "would create").len(), 1, "{}", r.render());
    assert_eq!(w.graph_writes(), 0);
    assert_eq!(r.moodle_writes(), 0);
    assert!(link::load(&w.env.store, course).await.unwrap().is_none());
    w.until_active(&[course], 3).await;
    let s2 = w.linked("s2").await;
    w.enrol(s2, STUDENT, course);
    w.unenrol(s, course);
    let writes = w.graph_writes();
    let r = w.run(sim).await;
    let u = issues(&r, "would update");
    assert_eq!(u.len(), 1, "{}", r.render());
    assert!(
        u[0].reason.contains("would add 1") && u[0].reason.contains("would remove 1"),
        "{}",
        u[0].reason
    );
    assert_eq!(w.graph_writes(), writes);
    assert_eq!(r.moodle_writes(), 0);
    assert!(
        r.moodle_calls.contains_key("core_enrol_get_enrolled_users"),
        "{:?}",
        r.moodle_calls
    );
    assert_eq!(w.fake.lock().write_calls(), 0);
}

#[tokio::test]
async fn a_group_minutes_old_is_tried_again_then_left_for_the_next_run() {
    let w = world(&[("TEAMS_FRESH_GROUP_WAIT_SECS", "1")]).await;
    teams::with(&w.graph, |t| {
        t.polls_to_finish = 0;
        t.fresh_group = Duration::from_millis(1500);
    });
    let course = w.course("GEO");
    let t = w.linked("t").await;
    w.enrol(t, TEACHER, course);
    // 404, 404 (1 s later), then the third try (2 s) finds the group replicated.
    let r = w.teams_run().await;
    assert_eq!(r.counts["teams"].created, 1, "{}", r.render());
    assert_eq!(w.posts_to("/teams"), 3);
    let w = world(&[("TEAMS_FRESH_GROUP_TRIES", "1")]).await;
    teams::with(&w.graph, |t| t.fresh_group = Duration::from_secs(60));
    let course = w.course("GEO");
    let t = w.linked("t").await;
    w.enrol(t, TEACHER, course);
    let r = w.teams_run().await;
    let waiting = issues(&r, "waiting");
    assert!(waiting[0].reason.contains("404"), "{}", r.render());
    assert_eq!(w.link_of(course).await.stage, Stage::GroupCreated);
}

#[tokio::test]
async fn a_hidden_course_has_its_team_archived_when_asked() {
    let w = world(&[("TEAMS_ARCHIVE_HIDDEN", "true")]).await;
    teams::with(&w.graph, |t| t.polls_to_finish = 0);
    let course = w.course("OLD");
    let t = w.linked("t").await;
    w.enrol(t, TEACHER, course);
    w.until_active(&[course], 3).await;
    w.fake
        .lock()
        .courses
        .iter_mut()
        .find(|c| c.id == course)
        .unwrap()
        .visible = false;
    let r = w.teams_run().await;
    assert_eq!(issues(&r, "archived").len(), 1, "{}", r.render());
    let team = w.link_of(course).await.team_id.unwrap();
    assert!(teams::with(&w.graph, |t| t.teams[&team].archived));
    assert_eq!(w.link_of(course).await.stage, Stage::Archived);
    let before = w.graph.calls();
    w.teams_run().await;
    assert_eq!(w.graph.calls(), before, "an archived team is left alone");

    // Visible again: unarchived, and what changed meanwhile is applied in the same run.
    let s = w.linked("late.student").await;
    w.enrol(s, STUDENT, course);
    w.fake
        .lock()
        .courses
        .iter_mut()
        .find(|c| c.id == course)
        .unwrap()
        .visible = true;
    let r = w.teams_run().await;
    let u = issues(&r, "updated");
    assert!(
        u.len() == 1 && u[0].reason.contains("unarchived"),
        "{}",
        r.render()
    );
    assert!(!teams::with(&w.graph, |t| t.teams[&team].archived));
    assert_eq!(teams::with(&w.graph, |t| t.unarchives), 1);
    assert_eq!(w.link_of(course).await.stage, Stage::Active);
    let mut want = vec![(entra(t), true), (entra(s), false)];
    want.sort();
    assert_eq!(w.roster(course).await, want);
    let before = w.graph.calls();
    w.teams_run().await;
    assert_eq!(w.graph.calls(), before, "nothing changed since");
}

#[tokio::test]
async fn a_course_past_its_end_date_is_archived_and_unarchived_when_the_date_moves() {
    let w = world(&[("TEAMS_ARCHIVE_ENDED", "true")]).await;
    teams::with(&w.graph, |t| t.polls_to_finish = 0);
    let course = w.course("TERM1");
    let t = w.linked("t").await;
    w.enrol(t, TEACHER, course);
    w.until_active(&[course], 3).await;
    let team = w.link_of(course).await.team_id.unwrap();
    let set_end = |end: i64| {
        w.fake
            .lock()
            .courses
            .iter_mut()
            .find(|c| c.id == course)
            .unwrap()
            .enddate = end;
    };
    let now = chrono::Utc::now().timestamp();
    set_end(now - 86_400);
    let sim = w
        .run(SyncOptions {
            simulate: true,
            ..teams_opts()
        })
        .await;
    assert_eq!(issues(&sim, "would archive").len(), 1, "{}", sim.render());
    assert!(!teams::with(&w.graph, |t| t.teams[&team].archived));
    let r = w.teams_run().await;
    assert_eq!(issues(&r, "archived").len(), 1, "{}", r.render());
    assert!(teams::with(&w.graph, |t| t.teams[&team].archived));
    // The school extends the course: the team comes back.
    set_end(now + 30 * 86_400);
    let sim = w
        .run(SyncOptions {
            simulate: true,
            ..teams_opts()
        })
        .await;
    assert_eq!(issues(&sim, "would unarchive").len(), 1, "{}", sim.render());
    assert!(
        teams::with(&w.graph, |t| t.teams[&team].archived),
        "a simulation writes nothing"
    );
    let r = w.teams_run().await;
    assert!(
        !teams::with(&w.graph, |t| t.teams[&team].archived),
        "{}",
        r.render()
    );
    assert_eq!(w.link_of(course).await.stage, Stage::Active);
}

#[tokio::test]
async fn sync_timer_plans_a_shard_per_batch_of_courses_and_the_workers_apply_them() {
    let w = world(&[("TEAMS_COURSES_PER_SHARD", "2")]).await;
    teams::with(&w.graph, |t| t.polls_to_finish = 0);
    let mut courses = Vec::new();
    for c in 0..5 {
        let course = w.course(&format!("S{c}"));
        let t = w.linked(&format!("t{c}")).await;
        w.enrol(t, TEACHER, course);
        courses.push(course);
    }
    let shards = bridge::sync::run::plan_run(&w.env, &SyncOptions::scheduled())
        .await
        .unwrap();
    let names: Vec<&str> = shards.iter().map(|s| s.population.as_str()).collect();
    let teams_shards: Vec<_> = shards
        .iter()
        .filter(|s| s.population.starts_with("teams-"))
        .collect();
    assert_eq!(teams_shards.len(), 3, "{names:?}");
    assert_eq!(
        teams_shards.iter().map(|s| s.courses.len()).sum::<usize>(),
        5
    );
    // The message survives the queue (JSON, possibly encoded once more by the host).
    for s in &teams_shards {
        let again =
            bridge::sync::shard::Shard::parse(&serde_json::to_string(&s.to_json()).unwrap())
                .unwrap();
        assert_eq!(&again, *s);
    }
    for s in &teams_shards {
        let r = bridge::sync::run::apply_shard(&w.env, s).await.unwrap();
        assert_eq!(
            r.counts["teams"].created as usize,
            s.courses.len(),
            "{}",
            r.render()
        );
    }
    let row = w
        .env
        .store
        .get(tables::RUNS, &shards[0].run_id, "run")
        .await
        .unwrap()
        .unwrap();
    if shards.len() == teams_shards.len() {
        assert_eq!(row.str("status"), Some("done"));
    }
    assert_eq!(teams::with(&w.graph, |t| t.groups.len()), 5);
}

/// `handler sync --teams` killed with SIGKILL while it provisions, then run again until every
/// team is there: one group and one team per course, whatever the moment of the kill.
/// (Several threads: the doubles answer while the test waits for the process.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_provisioning_then_resume_makes_no_duplicate_team() {
    let fake = FakeMoodle::start().await;
    let graph = GraphDouble::start().await;
    teams::with(&graph, |t| t.polls_to_finish = 0);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bridge.sqlite");
    let courses = 30;
    {
        let store: SharedStore = Arc::new(bridge::store::sqlite::SqliteStore::open(&db).unwrap());
        store.ensure_tables().await.unwrap();
        for c in 0..courses {
            let id = {
                let mut st = fake.lock();
                let course = st.insert_course(&format!("K{c:02}"), &format!("ID-K{c:02}"), 1);
                let id = st.insert_user(FakeUser {
                    username: format!("teacher{c}"),
                    firstname: "T".into(),
                    lastname: format!("{c}"),
                    email: format!("teacher{c}@lab.example.test"),
                    auth: "manual".into(),
                    ..Default::default()
                });
                st.enrolments.insert((TEACHER, id, course));
                id
            };
            store
                .upsert(
                    tables::MAPPINGS,
                    &bridge::teams_sync::users::link_row(&entra(id), id),
                )
                .await
                .unwrap();
        }
    }
    let moodle_url = fake.settings().url.to_string();
    let mut env: Vec<(String, String)> = graph.env();
    env.extend(
        [
            ("MOODLE_URL", moodle_url.as_str()),
            ("MOODLE_TOKEN", "TOKEN"),
            ("TEAMS_COURSES", "all"),
            ("TEAMS_FRESH_GROUP_WAIT_SECS", "0"),
            // A killed run's lease lapses after this; the next run may then start.
            ("SYNC_LEASE_SECS", "2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = testkit::app::base_command(dir.path(), &env_ref)
        .args(["sync", "--teams"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // `POST /teams` is paced at 10/s: after the third, courses stand at every stage at once
        // (groups being created, made, teams requested, not yet requested).
        let teams_posts = graph
            .lock()
            .log
            .iter()
            .filter(|(m, p)| m == "POST" && p == "/teams")
            .count();
        if teams_posts >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never got going"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = teams::with(&graph, |t| t.teams.len());
    assert!(before < courses, "killed mid-provisioning: {before} teams");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let store: SharedStore = Arc::new(bridge::store::sqlite::SqliteStore::open(&db).unwrap());
    let mut active = 0;
    for _ in 0..6 {
        let (code, out) = testkit::app::run_cli(dir.path(), &env_ref, &["sync", "--teams"]);
        assert_eq!(code, Some(0), "{out}");
        let rows = store
            .query(tables::MAPPINGS, link::COURSE_PK, None, 1000)
            .await
            .unwrap();
        active = 0;
        for e in rows.entities {
            let mut l: link::CourseTeam = e.json("link").unwrap().unwrap();
            active += usize::from(l.stage == Stage::Active);
            l.polled_at -= 3600;
            link::save(&store, &l).await.unwrap();
        }
        if active == courses {
            break;
        }
    }
    assert_eq!(active, courses);
    let (groups, teams_n, nicknames) = teams::with(&graph, |t| {
        let nicks: std::collections::BTreeSet<String> =
            t.groups.values().map(|g| g.mail_nickname.clone()).collect();
        (t.groups.len(), t.teams.len(), nicks.len())
    });
    assert_eq!((groups, teams_n, nicknames), (courses, courses, courses));
}

#[tokio::test]
async fn a_user_disabled_in_entra_is_not_put_in_the_team() {
    let w = world(&[]).await;
    teams::with(&w.graph, |t| t.polls_to_finish = 0);
    let course = w.course("CHEM");
    let t = w.linked("t").await;
    let s1 = w.linked("s1").await;
    let s2 = w.linked("s2").await;
    for (u, r) in [(t, TEACHER), (s1, STUDENT), (s2, STUDENT)] {
        w.enrol(u, r, course);
    }
    // What the Entra sync writes when it suspends a disabled account.
    let row = bridge::teams_sync::users::link_row(&entra(s2), s2).with("suspended", true);
    w.env.store.upsert(tables::MAPPINGS, &row).await.unwrap();
    w.until_active(&[course], 3).await;
    let mut want = vec![(entra(t), true), (entra(s1), false)];
    want.sort();
    assert_eq!(w.roster(course).await, want);
}

#[tokio::test]
async fn a_missing_permission_stops_the_run_and_names_it() {
    let w = world(&[]).await;
    w.graph.deny("Team.Create");
    for c in 0..3 {
        let course = w.course(&format!("P{c}"));
        let t = w.linked(&format!("t{c}")).await;
        w.enrol(t, TEACHER, course);
    }
    let r = run_inline(&w.env, &teams_opts(), None).await.unwrap();
    assert!(!r.complete, "{}", r.render());
    assert!(
        r.errors.iter().any(|e| e.contains("Team.Create")),
        "{:?}",
        r.errors
    );
    // Stopped at the first refusal rather than failing every course.
    assert_eq!(w.posts_to("/teams"), 1);
}

/// Forwards to the real client and records how many requests were in flight at once.
struct InFlight {
    inner: GraphClient,
    now: AtomicU32,
    max: AtomicU32,
}

#[async_trait::async_trait]
impl GraphSend for InFlight {
    async fn send(&self, req: GraphRequest) -> Result<GraphReply, TeamsError> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        let r = GraphSend::send(&self.inner, req).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

#[tokio::test]
async fn courses_are_worked_teams_concurrency_at_a_time_and_the_report_keeps_course_order() {
    for (concurrency, many) in [("1", false), ("8", true)] {
        let w = world(&[("TEAMS_CONCURRENCY", concurrency)]).await;
        teams::with(&w.graph, |t| t.polls_to_finish = 0);
        let probe = Arc::new(InFlight {
            inner: client(&w.graph),
            now: AtomicU32::new(0),
            max: AtomicU32::new(0),
        });
        let mut env = w.env.clone();
        if let Some(t) = env.teams.as_mut() {
            t.graph = probe.clone();
        }
        let mut courses = Vec::new();
        for c in 0..12 {
            let course = w.course(&format!("N{c:02}"));
            let t = w.linked(&format!("t{c}")).await;
            w.enrol(t, TEACHER, course);
            courses.push(course);
        }
        let r = run_inline(&env, &teams_opts(), None).await.unwrap();
        assert!(r.complete, "{}", r.render());
        assert_eq!(r.counts["teams"].created, 12, "{}", r.render());
        let keys: Vec<i64> = issues(&r, "created")
            .iter()
            .map(|i| i.key.parse().unwrap())
            .collect();
        assert_eq!(keys, courses, "issues in course order");
        let max = probe.max.load(Ordering::SeqCst);
        if many {
            assert!(
                max > 1,
                "courses overlap: at most {max} request(s) in flight"
            );
            assert!(
                max <= 8,
                "no more than TEAMS_CONCURRENCY courses at once: {max}"
            );
        } else {
            assert_eq!(max, 1, "one course at a time");
        }
        assert_eq!(w.graph.lock().throttled, 0, "paced under the limits");
    }
}

/// `handler check-config` with Teams on: the token is fetched and its permissions read; a missing
/// one is named with what needs it and the setting to fix; a bad secret names the credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_config_checks_the_graph_token_and_each_permission_teams_needs() {
    let fake = FakeMoodle::start().await;
    let graph = GraphDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let moodle_url = fake.settings().url.to_string();
    let mut env: Vec<(String, String)> = graph.env();
    env.extend(
        [
            ("MOODLE_URL", moodle_url.as_str()),
            ("MOODLE_TOKEN", "TOKEN"),
            ("TEAMS_COURSES", "all"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let check = |env: &[(String, String)]| {
        let env_ref: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (_, out) = testkit::app::run_cli(dir.path(), &env_ref, &["check-config"]);
        out.lines()
            .find(|l| l.starts_with("graph:"))
            .unwrap_or_else(|| panic!("no graph line in:\n{out}"))
            .to_string()
    };
    let line = check(&env);
    assert!(line.starts_with("graph: ok"), "{line}");
    for p in [
        "User.Read.All",
        "Team.Create",
        "Group.ReadWrite.All",
        "GroupMember.Read.All",
        "Team.ReadBasic.All",
        "TeamMember.Read.All",
        "TeamMember.ReadWrite.All",
        "TeamSettings.ReadWrite.All",
    ] {
        assert!(line.contains(p), "{p} checked: {line}");
    }
    // Group.ReadWrite.All would stand in for Team.Create: both go.
    graph.deny("Team.Create");
    graph.deny("Group.ReadWrite.All");
    let line = check(&env);
    assert!(line.starts_with("graph: FAILED"), "{line}");
    assert!(
        line.contains("Team.Create (for POST /teams") && line.contains("TEAMS_COURSES=none"),
        "{line}"
    );
    assert!(
        line.contains("Group.ReadWrite.All (for POST /groups")
            && line.contains("TEAMS_TEMPLATE=educationClass"),
        "{line}"
    );
    assert!(!line.contains("TeamMember.ReadWrite.All (for"), "{line}");
    // Reading a team (GET /teams/{id}, its creation's operation): Team.ReadBasic.All, for which
    // TeamSettings.ReadWrite.All and Group.ReadWrite.All also do (team-get.md); with all three
    // gone it is named. TeamMember.ReadWrite.All still covers listing members.
    graph.deny("Team.ReadBasic.All");
    graph.deny("TeamSettings.ReadWrite.All");
    graph.deny("TeamMember.Read.All");
    let line = check(&env);
    assert!(
        line.contains("Team.ReadBasic.All (for GET /teams/{id} and its creation's operation"),
        "{line}"
    );
    assert!(
        line.contains("TeamSettings.ReadWrite.All (for PATCH /teams/{id}"),
        "{line}"
    );
    assert!(!line.contains("TeamMember.Read.All (for"), "{line}");
    graph.deny("TeamMember.ReadWrite.All");
    let line = check(&env);
    assert!(
        line.contains("TeamMember.Read.All (for GET /teams/{id}/members")
            && line.contains("TeamMember.ReadWrite.All (for POST /teams/{id}/members/add"),
        "each missing one is named: {line}"
    );
    let bad: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "GRAPH_CLIENT_SECRET" => (k.clone(), "NOT-THE-SECRET-9f3a".to_string()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let line = check(&bad);
    assert!(
        line.starts_with("graph: FAILED") && line.contains("GRAPH_CLIENT_SECRET"),
        "{line}"
    );
    assert!(
        !line.contains("NOT-THE-SECRET-9f3a"),
        "the secret is never printed: {line}"
    );
}
