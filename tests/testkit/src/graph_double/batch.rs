//! `POST /$batch` as `batch.json` shows it: at most 20 requests with unique ids (else the whole
//! batch is 400), inner urls relative to the version root, a body needs `headers.Content-Type`;
//! each inner request goes through the same faults, throttling and permissions as an outer one
//! (a throttled item gets its own 429 + `Retry-After`), and an item whose dependency failed gets
//! 424 `FailedDependency`. The envelope answers 200.

use super::{dispatch, parse_query, segments, GraphReply, GraphRequest, Shared};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn run(shared: &Shared, outer: &GraphRequest) -> GraphReply {
    let Some(requests) = outer.body["requests"].as_array() else {
        return GraphReply::error(400, "BadRequest", "Invalid batch payload format.");
    };
    if requests.len() > 20 {
        return GraphReply::error(
            400,
            "BadRequest",
            "Number of batch request steps exceeds the maximum of 20.",
        );
    }
    let ids: BTreeSet<&str> = requests.iter().filter_map(|r| r["id"].as_str()).collect();
    if ids.len() != requests.len() {
        return GraphReply::error(400, "BadRequest", "Batch request ids must be unique.");
    }
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut responses = Vec::new();
    for r in requests {
        let id = r["id"].as_str().unwrap_or("").to_string();
        let method = r["method"].as_str().unwrap_or("GET").to_ascii_uppercase();
        let url = r["url"].as_str().unwrap_or("");
        let depends: Vec<&str> = r["dependsOn"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let reply = if let Some(d) = depends.iter().find(|d| failed.contains(**d)) {
            GraphReply::json(
                424,
                json!({"error": {"code": "FailedDependency", "message": format!("The request depends on request '{d}', which failed.")}}),
            )
        } else if !url.starts_with('/') {
            GraphReply::error(
                400,
                "BadRequest",
                "Inner request urls are relative to the version root.",
            )
        } else if !r["body"].is_null()
            && !r["headers"]
                .as_object()
                .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("content-type")))
        {
            GraphReply::error(
                400,
                "BadRequest",
                "Content-Type header must be specified for a request with a body.",
            )
        } else {
            let (path, query) = url
                .split_once('?')
                .map_or((url, None), |(p, q)| (p, Some(q)));
            shared
                .lock()
                .batch_log
                .push((method.clone(), url.to_string()));
            let inner = GraphRequest {
                method: method.clone(),
                path: path.to_string(),
                target: url.to_string(),
                segments: segments(path),
                query: parse_query(query),
                headers: r["headers"]
                    .as_object()
                    .map(|h| {
                        h.iter()
                            .map(|(k, v)| {
                                (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                body: r["body"].clone(),
            };
            dispatch(shared, &inner)
        };
        if !(200..300).contains(&reply.status) {
            failed.insert(id.clone());
        }
        let mut headers: BTreeMap<String, String> = reply.headers.into_iter().collect();
        headers.insert("Content-Type".into(), "application/json".into());
        headers.insert("Cache-Control".into(), "no-cache".into());
        let mut answer = json!({"id": id, "status": reply.status, "headers": headers});
        if let Some(b) = reply.body {
            answer["body"] = b;
        } else if let Some((content_type, bytes)) = reply.raw {
            // Graph base64-encodes a binary inner body.
            use base64::Engine as _;
            answer["headers"]["Content-Type"] = json!(content_type);
            answer["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        responses.push(answer);
    }
    GraphReply::json(200, json!({"responses": responses}))
}
