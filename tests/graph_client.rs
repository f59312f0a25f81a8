//! The Graph client (`handler/graph/`) against the Graph double: token, paging, delta rounds and
//! every "start over" form, `$batch` with items failing on their own, 429/503 with `Retry-After`,
//! pacing under the throttling table, and the typed errors that stop a run.

use bridge::graph::{BatchRequest, DeltaCheckpoint, DeltaItem, GraphClient, GraphError, StartOver};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime};
use testkit::graph_double::{DeltaExpiry, Fault, GraphDouble, GraphReply};

const SELECT: &str = "/users/delta?$select=id,userPrincipalName,mail,givenName,surname,accountEnabled,employeeId,department,preferredLanguage,onPremisesSamAccountName";

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    user_principal_name: Option<String>,
    mail: Option<String>,
    account_enabled: Option<bool>,
}

fn user(n: u32) -> Value {
    json!({
        "id": format!("11111111-1111-4111-8111-{n:012}"),
        "userPrincipalName": format!("user{n}@ecole.example"),
        "mail": format!("user{n}@ecole.example"),
        "givenName": "Given",
        "surname": format!("S{n}"),
        "accountEnabled": true,
        "employeeId": format!("E-{n}"),
    })
}

async fn setup(users: u32) -> (GraphDouble, GraphClient) {
    let double = GraphDouble::start().await;
    {
        let mut s = double.lock();
        for n in 1..=users {
            s.users.upsert(user(n));
        }
        s.users.delta_page_size = 3;
    }
    let client = GraphClient::from_settings(reqwest::Client::new(), &double.settings()).unwrap();
    (double, client)
}

/// Reads a whole round: (present ids, removed ids, restarted?, round).
async fn read_round(
    client: &GraphClient,
    checkpoint: Option<&DeltaCheckpoint>,
) -> (
    Vec<String>,
    Vec<String>,
    bool,
    bool,
    Option<DeltaCheckpoint>,
    Option<StartOver>,
) {
    let mut round = client.delta::<User>(SELECT, checkpoint);
    let (mut present, mut removed, mut restarted) = (Vec::new(), Vec::new(), false);
    while let Some(page) = round.next_page().await.unwrap() {
        if page.restarted.is_some() {
            restarted = true;
            present.clear();
            removed.clear();
        }
        for item in page.items {
            match item {
                DeltaItem::Present(u) => present.push(u.id),
                DeltaItem::Removed { id, .. } => removed.push(id),
            }
        }
    }
    (
        present,
        removed,
        restarted,
        round.is_full(),
        round.checkpoint().cloned(),
        round.why_full().cloned(),
    )
}

#[tokio::test]
async fn delta_initial_round_then_changes_then_no_change_in_one_call() {
    let (double, client) = setup(7).await;
    let (present, removed, _, full, cp, why) = read_round(&client, None).await;
    assert_eq!(present.len(), 7);
    assert!(removed.is_empty());
    assert!(full);
    assert_eq!(why, Some(StartOver::NoCheckpoint));
    let cp = cp.expect("checkpoint after the last page");
    assert_eq!(double.calls(), 3, "7 users, pages of 3");
    assert_eq!(double.lock().token_requests, 1, "token cached across pages");

    {
        let mut s = double.lock();
        s.users.patch(
            "11111111-1111-4111-8111-000000000002",
            json!({"department": "1ere C"}),
        );
        s.users.upsert(user(8));
        s.users
            .remove("11111111-1111-4111-8111-000000000001", false);
        s.users.remove("11111111-1111-4111-8111-000000000006", true);
    }
    let before = double.calls();
    let (present, removed, _, full, cp2, _) = read_round(&client, Some(&cp)).await;
    assert!(!full, "incremental");
    assert_eq!(present.len(), 2);
    assert_eq!(removed.len(), 2);
    assert_eq!(double.calls() - before, 2);
    let cp2 = cp2.unwrap();
    assert_ne!(
        cp2.link, cp.link,
        "the newest deltaLink replaces the old one"
    );

    let before = double.calls();
    let (present, removed, _, full, cp3, _) = read_round(&client, Some(&cp2)).await;
    assert!(present.is_empty() && removed.is_empty() && !full);
    assert_eq!(
        double.calls() - before,
        1,
        "a no-change run is one Graph call"
    );
    assert!(cp3.is_some());
}

#[tokio::test]
async fn every_start_over_form_gives_a_full_round() {
    for form in [
        DeltaExpiry::Gone,
        DeltaExpiry::ResyncRequired,
        DeltaExpiry::GonePascalCase,
    ] {
        let (double, client) = setup(5).await;
        let (_, _, _, _, cp, _) = read_round(&client, None).await;
        double.lock().users.expire_delta_tokens(form);
        let (present, _, restarted, full, cp2, why) = read_round(&client, cp.as_ref()).await;
        assert!(full && restarted, "{form:?}");
        assert_eq!(present.len(), 5, "{form:?}: the full round lists everyone");
        assert!(
            matches!(why, Some(StartOver::StateGone { .. })),
            "{form:?}: {why:?}"
        );
        assert!(cp2.is_some());
        // The full round keeps the $select (the 410's Location drops it).
        let log = double.lock().log.clone();
        assert!(
            log.iter()
                .any(|(_, p)| p.starts_with("/users/delta?$select=")),
            "{form:?}: {log:?}"
        );
    }
}

#[tokio::test]
async fn expired_skip_token_mid_round_restarts_the_round() {
    let (double, client) = setup(7).await;
    let mut round = client.delta::<User>(SELECT, None);
    let first = round.next_page().await.unwrap().unwrap();
    assert_eq!(first.items.len(), 3);
    double.lock().users.expire_skip_tokens();
    let second = round.next_page().await.unwrap().unwrap();
    assert_eq!(second.restarted, Some(StartOver::PageTokenExpired));
    let mut n = second.items.len();
    while let Some(p) = round.next_page().await.unwrap() {
        n += p.items.len();
    }
    assert_eq!(n, 7, "the restarted round lists every user again");
    assert!(round.is_full() && round.is_complete());
}

#[tokio::test]
async fn a_stale_checkpoint_is_not_used() {
    let (double, client) = setup(4).await;
    let (_, _, _, _, cp, _) = read_round(&client, None).await;
    let mut cp = cp.unwrap();
    cp.saved_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 7 * 24 * 3600;
    let before = double.lock().log.len();
    let (present, _, _, full, _, why) = read_round(&client, Some(&cp)).await;
    assert!(full);
    assert_eq!(why, Some(StartOver::CheckpointTooOld));
    assert_eq!(present.len(), 4);
    let log = double.lock().log.clone();
    assert!(!log[before..]
        .iter()
        .any(|(_, p)| p.contains("$deltatoken=")));
}

#[tokio::test]
async fn a_failed_page_ends_the_round_without_checkpoint() {
    let (double, client) = setup(7).await;
    let mut round = client.delta::<User>(SELECT, None);
    round.next_page().await.unwrap().unwrap();
    double.inject(Fault {
        method: None,
        path_prefix: "/users/delta".into(),
        status: 500,
        retry_after: None,
        times: 1,
    });
    assert!(round.next_page().await.is_err());
    assert!(round.checkpoint().is_none() && !round.is_complete());
}

#[tokio::test]
async fn plain_paging_follows_next_links_whole() {
    let (_double, client) = setup(5).await;
    let all: Vec<User> = client
        .all("/users?$select=id,userPrincipalName,mail,accountEnabled&$top=2")
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    let mut pages = client.pages::<User>("/users?$top=2");
    let mut count = 0;
    while let Some(p) = pages.next_page().await.unwrap() {
        assert!(p.items.len() <= 2);
        count += 1;
    }
    assert_eq!(count, 3);
}

#[tokio::test]
async fn throttled_calls_wait_the_fractional_retry_after_and_succeed() {
    let (double, client) = setup(2).await;
    double.inject(Fault {
        method: Some("GET".into()),
        path_prefix: "/users/".into(),
        status: 429,
        retry_after: Some("0.35".into()),
        times: 1,
    });
    let t = Instant::now();
    let u: User = client
        .get_json("/users/11111111-1111-4111-8111-000000000001")
        .await
        .unwrap();
    assert_eq!(
        u.user_principal_name.as_deref(),
        Some("user1@ecole.example")
    );
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(client.stats().throttled, 1);
    assert_eq!(client.stats().requests, 2);
}

#[tokio::test]
async fn unavailable_get_is_retried_but_a_post_is_not_repeated_blindly() {
    let (double, client) = setup(1).await;
    double.route("POST", "/teams", "Team.Create", |_, _| {
        GraphReply::empty(202)
    });
    double.inject(Fault {
        method: Some("GET".into()),
        path_prefix: "/users".into(),
        status: 503,
        retry_after: Some("0.1".into()),
        times: 1,
    });
    let _: Value = client.get_json("/users?$top=1").await.unwrap();
    double.inject(Fault {
        method: Some("POST".into()),
        path_prefix: "/teams".into(),
        status: 504,
        retry_after: None,
        times: 1,
    });
    let before = double.calls();
    let err = client
        .post_json("/teams", &json!({"displayName": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(504));
    assert_eq!(
        double.calls() - before,
        1,
        "POST /teams is not repeated after a 504"
    );
}

#[tokio::test]
async fn missing_permission_is_fatal_and_names_it() {
    let (double, client) = setup(1).await;
    double.deny("User.Read.All");
    let err = client
        .delta::<User>(SELECT, None)
        .next_page()
        .await
        .unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert!(
        matches!(
            err,
            GraphError::Forbidden {
                permission: "User.Read.All",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("User.Read.All"));
    assert_eq!(double.calls(), 1, "403 is not retried");
}

#[tokio::test]
async fn bad_secret_is_fatal_before_any_graph_call() {
    let double = GraphDouble::start().await;
    let mut settings = double.settings();
    settings.auth = bridge::graph::GraphAuth::Secret(bridge::config::Secret::new("wrong"));
    let client = GraphClient::from_settings(reqwest::Client::new(), &settings).unwrap();
    let err = client.get_json::<Value>("/users").await.unwrap_err();
    assert!(matches!(err, GraphError::Credentials(_)), "{err:?}");
    assert!(err.is_fatal());
    assert!(
        err.to_string().contains("AADSTS7000215") || err.to_string().contains("401"),
        "{err}"
    );
    assert!(!err.to_string().contains("wrong"), "the secret never shows");
    assert_eq!(double.calls(), 0);
    assert_eq!(
        double.lock().token_requests,
        1,
        "refused credentials are not retried"
    );
}

#[tokio::test]
async fn a_revoked_token_is_fetched_again_once() {
    let (double, client) = setup(1).await;
    let _: Value = client.get_json("/users").await.unwrap();
    double.revoke_tokens();
    let _: Value = client.get_json("/users").await.unwrap();
    assert_eq!(double.lock().token_requests, 2);
}

#[tokio::test]
async fn links_outside_the_graph_root_never_get_the_token() {
    let (double, client) = setup(1).await;
    let err = client
        .get_json::<Value>("https://evil.example/v1.0/users")
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::UntrustedLink(_)), "{err:?}");
    let other_port = "http://127.0.0.1:1/v1.0/users";
    assert!(client.get_json::<Value>(other_port).await.is_err());
    assert_eq!(double.calls(), 0);
}

#[tokio::test]
async fn batch_groups_of_twenty_and_items_fail_on_their_own() {
    let (double, client) = setup(25).await;
    double.inject(Fault {
        method: Some("GET".into()),
        path_prefix: "/users/11111111-1111-4111-8111-000000000003".into(),
        status: 429,
        retry_after: Some("0.2".into()),
        times: 1,
    });
    let mut requests: Vec<BatchRequest> = (1..=25)
        .map(|n| {
            BatchRequest::get(
                n.to_string(),
                format!("/users/11111111-1111-4111-8111-{n:012}?$select=id,userPrincipalName"),
            )
        })
        .collect();
    requests.push(BatchRequest::get("missing", "/users/nobody"));
    let results = client.batch(requests).await.unwrap();
    assert_eq!(results.len(), 26);
    for (id, r) in &results[..25] {
        let a = r.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(a.status, 200);
    }
    assert!(matches!(results[25].1, Err(GraphError::NotFound { .. })));
    let s = double.lock();
    assert_eq!(
        s.count("POST", "/$batch"),
        3,
        "20 + 6, then the throttled item alone"
    );
    assert_eq!(
        s.batch_log
            .iter()
            .filter(|(_, u)| u.contains("-000000000003"))
            .count(),
        2,
        "only the throttled item is sent again"
    );
    drop(s);
    assert_eq!(client.stats().throttled, 1);
}

#[tokio::test]
async fn batch_dependants_of_a_throttled_item_are_retried_with_it() {
    let (double, client) = setup(2).await;
    double.route(
        "POST",
        "/teams/{id}/members/add",
        "TeamMember.ReadWrite.All",
        |_, _| GraphReply::json(200, json!({"value": []})),
    );
    double.inject(Fault {
        method: Some("POST".into()),
        path_prefix: "/teams/".into(),
        status: 429,
        retry_after: Some("0.1".into()),
        times: 1,
    });
    let mut add = BatchRequest::with_body(
        "2",
        "POST",
        "/teams/22222222-2222-4222-8222-000000000001/members/add",
        json!({"values": []}),
    );
    add.depends_on = vec!["1".into()];
    let mut list = BatchRequest::get("3", "/users/11111111-1111-4111-8111-000000000002");
    list.depends_on = vec!["2".into()];
    let results = client
        .batch(vec![
            BatchRequest::get("1", "/users/11111111-1111-4111-8111-000000000001"),
            add,
            list,
        ])
        .await
        .unwrap();
    for (id, r) in &results {
        assert!(r.is_ok(), "{id}: {r:?}");
    }
    assert_eq!(double.lock().count("POST", "/$batch"), 2);
}

#[tokio::test]
async fn post_teams_is_paced_under_ten_per_second_without_a_429() {
    let (double, client) = setup(0).await;
    double.route("POST", "/teams", "Team.Create", |_, _| {
        GraphReply::empty(202)
            .header("Location", "/teams('22222222-2222-4222-8222-000000000001')/operations('33333333-3333-4333-8333-000000000001')")
            .header("Content-Location", "/teams('22222222-2222-4222-8222-000000000001')")
    });
    let t = Instant::now();
    let mut handles = Vec::new();
    let client = std::sync::Arc::new(client);
    for _ in 0..25 {
        let c = client.clone();
        handles.push(tokio::spawn(async move {
            c.post_json("/teams", &json!({"displayName": "x"})).await
        }));
    }
    for h in handles {
        let r = h.await.unwrap().unwrap();
        assert_eq!(r.status, 202);
        assert!(r.content_location.unwrap().contains("22222222"));
    }
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "25 at 10/s: {:?}",
        t.elapsed()
    );
    assert_eq!(double.lock().throttled, 0, "the client paced itself");
    assert_eq!(client.stats().throttled, 0);
}

#[tokio::test]
async fn the_double_throttles_a_client_that_does_not_pace() {
    let double = GraphDouble::start().await;
    double.route(
        "POST",
        "/teams/{id}/archive",
        "TeamSettings.ReadWrite.All",
        |_, _| GraphReply::empty(202),
    );
    let http = reqwest::Client::new();
    let token: Value = http
        .post(double.token_url())
        .form(&[
            ("client_id", testkit::graph_double::CLIENT_ID),
            ("scope", "https://graph.microsoft.com/.default"),
            ("client_secret", testkit::graph_double::CLIENT_SECRET),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().unwrap().to_string();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..6 {
        let r = http
            .post(format!("{}/teams/t1/archive", double.base_url()))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        4,
        "4 per second per team: {statuses:?}"
    );
    let ra: f64 = retry_after.unwrap().parse().unwrap();
    assert!(ra > 0.0 && ra <= 1.0, "{ra}");
}
