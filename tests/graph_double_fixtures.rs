//! The Graph double answers as the fixture files in `shared/fixtures/graph/` show Graph answering:
//! the fixture's own request is sent (host replaced by the double's) and the answer is compared
//! with the fixture's — status, headers that matter, key sets and values.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use testkit::fixture_json;
use testkit::graph_double::{DeltaExpiry, Fault, GraphDouble, GraphReply};

const GRAPH: &str = "https://graph.microsoft.com/v1.0";

struct Wire {
    double: GraphDouble,
    http: reqwest::Client,
    bearer: String,
}

impl Wire {
    async fn start() -> Wire {
        let double = GraphDouble::start().await;
        let http = reqwest::Client::new();
        let tok = fixture_json("graph/token-client-credentials.json");
        let r = http
            .post(double.token_url())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(tok["request"]["body"].as_str().unwrap().to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            tok["response"]["status"].as_u64().unwrap() as u16
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            keys(&body),
            keys(&tok["response"]["body"]),
            "token answer keys"
        );
        assert_eq!(body["token_type"], "Bearer");
        let bearer = body["access_token"].as_str().unwrap().to_string();
        Wire {
            double,
            http,
            bearer,
        }
    }

    /// The fixture URL on the double.
    fn url(&self, fixture_url: &str) -> String {
        fixture_url.replace(GRAPH, &self.double.base_url())
    }

    async fn send(&self, request: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let method =
            reqwest::Method::from_bytes(request["method"].as_str().unwrap().as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, self.url(request["url"].as_str().unwrap()))
            .bearer_auth(&self.bearer);
        if !request["body"].is_null() {
            req = req.json(&request["body"]);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, headers, body)
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The fixture body with Graph's host replaced by the double's.
fn on_double(v: &Value, base: &str) -> Value {
    serde_json::from_str(&v.to_string().replace(GRAPH, base)).unwrap()
}

fn users_of(fixture: &str) -> Vec<Value> {
    fixture_json(fixture)["response"]["body"]["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u.get("@removed").is_none())
        .cloned()
        .collect()
}

fn same_link_form(got: &Value, want: &Value, base: &str, param: &str) {
    let prefix = format!("{base}/users/delta?{param}=");
    assert!(got.as_str().unwrap().starts_with(&prefix), "{got}");
    assert!(want
        .as_str()
        .unwrap()
        .replace(GRAPH, base)
        .starts_with(&prefix));
}

#[tokio::test]
async fn bad_secret_answer_matches_the_fixture() {
    let w = Wire::start().await;
    let tok = fixture_json("graph/token-client-credentials.json");
    let bad = &tok["more_exchanges"][0];
    let body = bad["request"]["body"]
        .as_str()
        .unwrap()
        .replace("PLACEHOLDER-CLIENT-SECRET-VALUE", "not-the-secret");
    let r = w
        .http
        .post(w.double.token_url())
        .body(body)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let got: Value = r.json().await.unwrap();
    assert_eq!(keys(&got), keys(&bad["response"]["body"]));
    assert_eq!(got["error"], "invalid_client");
    assert_eq!(got["error_codes"], json!([7000215]));
}

#[tokio::test]
async fn delta_rounds_match_the_fixtures() {
    let w = Wire::start().await;
    let base = w.double.base_url();
    let page1 = fixture_json("graph/users-delta-initial-page1.json");
    let last = fixture_json("graph/users-delta-initial-last.json");
    {
        let mut s = w.double.lock();
        for u in users_of("graph/users-delta-initial-page1.json")
            .into_iter()
            .chain(users_of("graph/users-delta-initial-last.json"))
        {
            s.users.upsert(u);
        }
        s.users.delta_page_size = 3;
    }
    let (status, _, body) = w.send(&page1["request"]).await;
    assert_eq!(status, 200);
    let want = on_double(&page1["response"]["body"], &base);
    assert_eq!(keys(&body), keys(&want));
    assert_eq!(body["@odata.context"], want["@odata.context"]);
    same_link_form(
        &body["@odata.nextLink"],
        &page1["response"]["body"]["@odata.nextLink"],
        &base,
        "$skiptoken",
    );
    // Each user has the fixture's properties: absent when never set (emma.petit has no mail).
    let fixture_users: Vec<Value> = users_of("graph/users-delta-initial-page1.json")
        .into_iter()
        .chain(users_of("graph/users-delta-initial-last.json"))
        .collect();
    let mut seen = Vec::new();
    let mut page = body;
    loop {
        for u in page["value"].as_array().unwrap() {
            let want = fixture_users.iter().find(|f| f["id"] == u["id"]).unwrap();
            assert_eq!(u, want, "delta item as in the fixture");
            seen.push(u["id"].clone());
        }
        let Some(next) = page["@odata.nextLink"].as_str() else {
            break;
        };
        let r = w
            .http
            .get(next)
            .bearer_auth(&w.bearer)
            .send()
            .await
            .unwrap();
        page = r.json().await.unwrap();
    }
    assert_eq!(seen.len(), fixture_users.len());
    let want_last = on_double(&last["response"]["body"], &base);
    assert_eq!(keys(&page), keys(&want_last));
    same_link_form(
        &page["@odata.deltaLink"],
        &last["response"]["body"]["@odata.deltaLink"],
        &base,
        "$deltatoken",
    );

    // The changes round of users-delta-changes.json.
    let changes = fixture_json("graph/users-delta-changes.json");
    let want_values = changes["response"]["body"]["value"]
        .as_array()
        .unwrap()
        .clone();
    {
        let mut s = w.double.lock();
        s.users.delta_page_size = 10;
        s.users.upsert(want_values[0].clone());
        s.users.upsert(want_values[1].clone());
        s.users
            .remove("11111111-1111-4111-8111-000000000001", false);
        s.users.remove("11111111-1111-4111-8111-000000000006", true);
    }
    let delta_link = page["@odata.deltaLink"].as_str().unwrap().to_string();
    let body: Value = w
        .http
        .get(&delta_link)
        .bearer_auth(&w.bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want = on_double(&changes["response"]["body"], &base);
    assert_eq!(keys(&body), keys(&want));
    assert_eq!(
        body["value"], want["value"],
        "update, new user, @removed changed and deleted"
    );

    // Nothing changed: an empty value and a new deltaLink.
    let next_link = body["@odata.deltaLink"].as_str().unwrap().to_string();
    let body: Value = w
        .http
        .get(&next_link)
        .bearer_auth(&w.bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["value"], json!([]));
    assert_ne!(body["@odata.deltaLink"].as_str().unwrap(), next_link);
}

#[tokio::test]
async fn expiry_forms_match_the_fixture() {
    let w = Wire::start().await;
    let base = w.double.base_url();
    let expired = fixture_json("graph/users-delta-expired.json");
    w.double.lock().users.upsert(json!({"id": "u1"}));
    let initial =
        json!({"method": "GET", "url": format!("{GRAPH}/users/delta?$select=id"), "body": null});
    let (_, _, body) = w.send(&initial).await;
    let link = body["@odata.deltaLink"].as_str().unwrap().to_string();

    w.double.lock().users.expire_delta_tokens(DeltaExpiry::Gone);
    let r = w
        .http
        .get(&link)
        .bearer_auth(&w.bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        expired["response"]["status"].as_u64().unwrap() as u16
    );
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        location,
        expired["response"]["headers"]["Location"]
            .as_str()
            .unwrap()
            .replace(GRAPH, &base)
    );
    let got: Value = r.json().await.unwrap();
    assert_eq!(
        got["error"]["code"],
        expired["response"]["body"]["error"]["code"]
    );
    assert_eq!(
        keys(&got["error"]),
        keys(&expired["response"]["body"]["error"])
    );
    assert_eq!(
        keys(&got["error"]["innerError"]),
        keys(&expired["response"]["body"]["error"]["innerError"])
    );

    let resync = &expired["more_exchanges"][0]["response"];
    let (_, _, body) = w.send(&initial).await;
    let link = body["@odata.deltaLink"].as_str().unwrap().to_string();
    w.double
        .lock()
        .users
        .expire_delta_tokens(DeltaExpiry::ResyncRequired);
    let r = w
        .http
        .get(&link)
        .bearer_auth(&w.bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        resync["status"].as_u64().unwrap() as u16
    );
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["error"]["code"], resync["body"]["error"]["code"]);

    let skip = &expired["more_exchanges"][1]["response"];
    {
        let mut s = w.double.lock();
        s.users.upsert(json!({"id": "u2"}));
        s.users.delta_page_size = 1;
    }
    let (_, _, body) = w.send(&initial).await;
    w.double.lock().users.expire_skip_tokens();
    let r = w
        .http
        .get(body["@odata.nextLink"].as_str().unwrap())
        .bearer_auth(&w.bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), skip["status"].as_u64().unwrap() as u16);
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["error"]["code"], skip["body"]["error"]["code"]);
}

#[tokio::test]
async fn plain_paging_matches_the_fixture() {
    let w = Wire::start().await;
    let base = w.double.base_url();
    let f = fixture_json("graph/users-page-nextlink.json");
    {
        let mut s = w.double.lock();
        for u in users_of("graph/users-delta-initial-page1.json") {
            s.users.upsert(u);
        }
    }
    let (status, _, body) = w.send(&f["request"]).await;
    assert_eq!(status, 200);
    let want = on_double(&f["response"]["body"], &base);
    assert_eq!(keys(&body), keys(&want));
    assert_eq!(body["@odata.context"], want["@odata.context"]);
    assert_eq!(body["value"], want["value"]);
    let next = body["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!(
            "{base}/users?$select=id,userPrincipalName,mail,accountEnabled&$top=2&$skiptoken="
        )),
        "{next}"
    );
    let last: Value = w
        .http
        .get(next)
        .bearer_auth(&w.bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want_last = on_double(&f["more_exchanges"][0]["response"]["body"], &base);
    assert_eq!(last, want_last, "last page, mail null on a plain list");
}

#[tokio::test]
async fn throttled_and_unavailable_answers_match_the_fixtures() {
    let w = Wire::start().await;
    let throttled = fixture_json("graph/throttled-429.json");
    w.double.inject(Fault {
        method: None,
        path_prefix: "/users/delta".into(),
        status: 429,
        retry_after: Some("2.128".into()),
        times: 1,
    });
    let (status, headers, body) = w.send(&throttled["request"]).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "2.128");
    assert_eq!(
        body["error"]["code"],
        throttled["response"]["body"]["error"]["code"]
    );
    assert_eq!(
        keys(&body["error"]),
        keys(&throttled["response"]["body"]["error"])
    );

    let unavailable = fixture_json("graph/service-unavailable-503.json");
    w.double.inject(Fault {
        method: None,
        path_prefix: "/users/delta".into(),
        status: 503,
        retry_after: Some("30".into()),
        times: 1,
    });
    let (status, headers, body) = w.send(&unavailable["request"]).await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "30");
    assert_eq!(
        body["error"]["code"],
        unavailable["response"]["body"]["error"]["code"]
    );

    // A limit of the table exceeded: 429 with a fractional Retry-After, as the fixture shows.
    w.double.lock().limits.identity_ru_per_10s = 2;
    let users = json!({"method": "GET", "url": format!("{GRAPH}/users"), "body": null});
    let (first, _, _) = w.send(&users).await;
    let (second, headers, body) = w.send(&users).await;
    assert_eq!((first, second), (200, 429));
    let ra: f64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(ra > 9.0 && ra <= 10.0, "{ra}");
    assert_eq!(body["error"]["code"], "TooManyRequests");
}

#[tokio::test]
async fn batch_matches_the_fixture() {
    let w = Wire::start().await;
    let f = fixture_json("graph/batch.json");
    w.double.lock().users.upsert(json!({
        "id": "11111111-1111-4111-8111-000000000004",
        "userPrincipalName": "hugo.moreau@ecole.example",
        "accountEnabled": true,
        "mail": "hugo.moreau@ecole.example"
    }));
    // Stand-ins for the teams routes (their real double lives with the teams sync).
    w.double.route(
        "POST",
        "/teams/{id}/members/add",
        "TeamMember.ReadWrite.All",
        |_, _| GraphReply::json(200, json!({"value": []})),
    );
    w.double.route(
        "GET",
        "/teams/{id}/members",
        "TeamMember.Read.All",
        |_, _| GraphReply::json(200, json!({"value": []})),
    );
    w.double.inject(Fault {
        method: Some("POST".into()),
        path_prefix: "/teams/".into(),
        status: 429,
        retry_after: Some("12".into()),
        times: 1,
    });
    let (status, _, body) = w.send(&f["request"]).await;
    assert_eq!(status, 200);
    let want = &f["response"]["body"]["responses"];
    let got = body["responses"].as_array().unwrap();
    assert_eq!(got.len(), 3);
    for (g, w) in got.iter().zip(want.as_array().unwrap()) {
        assert_eq!(g["id"], w["id"]);
        assert_eq!(g["status"], w["status"], "item {}", w["id"]);
    }
    let item1 = &got[0]["body"];
    let want1 = &want[0]["body"];
    for k in ["id", "userPrincipalName", "accountEnabled"] {
        assert_eq!(item1[k], want1[k]);
    }
    assert!(
        item1.get("mail").is_none(),
        "$select honoured inside the batch"
    );
    assert_eq!(
        got[1]["headers"]["Retry-After"],
        want[1]["headers"]["Retry-After"]
    );
    assert_eq!(
        got[2]["body"]["error"]["code"],
        want[2]["body"]["error"]["code"]
    );

    // More than 20 requests, or duplicate ids: the whole batch is refused.
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    let (status, _, _) = w.send(&json!({"method": "POST", "url": format!("{GRAPH}/$batch"), "body": {"requests": many}})).await;
    assert_eq!(status, 400);
    let dup = json!([{"id": "1", "method": "GET", "url": "/users"}, {"id": "1", "method": "GET", "url": "/users"}]);
    let (status, _, _) = w
        .send(
            &json!({"method": "POST", "url": format!("{GRAPH}/$batch"), "body": {"requests": dup}}),
        )
        .await;
    assert_eq!(status, 400);
}
