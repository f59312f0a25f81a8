//! `demo` runs to its end (`--exit-after-summary`, bounded) and its printed summary says the whole
//! loop happened; the Moodle answers it gives the bot have every field of the recordings.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run_demo() -> (String, String) {
    run(Command::new(env!("CARGO_BIN_EXE_demo")))
}

fn run(mut cmd: Command) -> (String, String) {
    let mut child = cmd
        .args([
            "--addr",
            "127.0.0.1:0",
            "--people",
            "60",
            "--exit-after-summary",
        ])
        .env_remove("FIXTURES_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "demo failed: {status}\n{out}\n{err}");
    (out, err)
}

fn summary(out: &str) -> BTreeMap<String, String> {
    let at = out.find("\ndemo summary:\n").expect("a summary") + 15;
    out[at..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `handler demo` runs the `demo` binary built beside it (`cargo build --workspace` puts them in
/// one folder), passing its arguments through, and ends with the demo's exit status.
#[test]
fn handler_demo_runs_the_demo_built_beside_it() {
    let handler = std::path::Path::new(env!("CARGO_BIN_EXE_demo"))
        .with_file_name(format!("handler{}", std::env::consts::EXE_SUFFIX));
    assert!(
        handler.is_file(),
        "{} is not built: run the tests with --workspace (the README's test command does)",
        handler.display()
    );
    let mut cmd = Command::new(&handler);
    // Outside any checkout, so the sibling is what runs (not `cargo run`).
    cmd.arg("demo").current_dir(std::env::temp_dir());
    let (out, _) = run(cmd);
    let s = summary(&out);
    assert_eq!(s["users_created"], "60", "{out}");
    assert_eq!(s["bot_answers"], "3", "{out}");
}

#[test]
fn the_demo_runs_the_whole_loop_and_prints_its_summary() {
    let (out, err) = run_demo();
    let s = summary(&out);
    let n = |k: &str| -> u64 { s[k].parse().unwrap_or_else(|_| panic!("{k}: {}", s[k])) };
    // 60 people, 10 classes: every account, every class cohort, the teachers' course roles.
    assert_eq!(n("users_created"), 60, "{out}");
    assert_eq!(n("users_skipped"), 0, "{out}");
    assert_eq!(n("cohorts_created"), 10, "{out}");
    assert_eq!(n("roles_assigned"), 10, "{out}");
    // Everyone but the hostile entry has an Entra account, linked to their ENT account.
    assert_eq!(n("entra_linked"), 59, "{out}");
    // Every course either got its team requested or is pending with its reason.
    assert_eq!(n("teams_requested") + n("teams_pending"), 10, "{out}");
    assert!(n("teams_requested") >= 1, "{out}");
    assert!(out.contains("nobody holds an owner role"), "{out}");
    // The bot answered in both languages through /api/messages.
    assert_eq!(n("bot_answers"), 3, "{out}");
    for text in ["Vos cours", "Assignments due", "Vos notes", "→ HTTP 200"] {
        assert!(out.contains(text), "{text} missing:\n{out}");
    }
    assert_eq!(n("notify_status"), 202, "{out}");
    assert_eq!(s["notify_chat"], "true", "{out}");
    assert_eq!(s["notify_channel"], "true", "{out}");
    // The directory run, the Entra run and the Teams run.
    assert_eq!(n("runs_in_history"), 3, "{out}");
    assert!(
        out.contains("/manage/sync/login/link?token="),
        "the admin link is printed: {out}"
    );
    // Nothing the bridge logged at warn or above on the way.
    assert!(!err.contains("ERROR"), "{err}");
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn the_demo_answers_the_bot_with_every_recorded_field() {
    let course = testkit::fake_moodle::FakeCourse {
        id: 7,
        shortname: "SCI-6A".into(),
        fullname: "Sciences 6A".into(),
        idnumber: "9990000100000$6A".into(),
        category: 1,
        visible: true,
        enddate: 0,
    };
    let body = |case: &str| testkit::fake_moodle::FakeMoodle::fixture_body(case);
    let recorded = body("core_enrol_get_users_courses/student.json");
    let ours = testkit::demo::moodle::user_course(&course, 30);
    assert_eq!(keys(&ours), keys(&recorded[0]));
    let recorded = body("core_calendar_get_action_events_by_timesort/student_upcoming.json");
    let ours = testkit::demo::moodle::due_event(1, &course, "Devoir", 1_800_000_000);
    let event = &recorded["events"][0];
    assert_eq!(keys(&ours), keys(event));
    for nested in ["course", "icon", "action", "subscription"] {
        assert_eq!(keys(&ours[nested]), keys(&event[nested]), "{nested}");
    }
}

/// Left serving, the printed link opens the admin page signed in, with the demo's runs in it.
#[tokio::test]
async fn the_printed_link_opens_the_admin_page_signed_in() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--addr", "127.0.0.1:0", "--people", "40"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the demo");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let link = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(at) = l.find("http://") {
                if l.contains("/manage/sync/login/link?token=") {
                    return l[at..].trim().to_string();
                }
            }
        }
        panic!("the demo ended without a link");
    })
    .await
    .expect("a link within 180 s");
    let base = link.split("/manage/").next().unwrap().to_string();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(&link).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("bridge_admin="))
        .expect("a session cookie");
    let page = http
        .get(format!("{base}/manage/sync?lang=en"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    for text in [
        "Run a sync",
        "Entra ID users",
        "Teams (Moodle courses",
        "complete",
    ] {
        assert!(html.contains(text), "{text} missing: {html}");
    }
    // Used once.
    let again = http.get(&link).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 403);
    child.kill().await.unwrap();
}
