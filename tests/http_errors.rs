//! Every error answer is JSON (`{"error": …}`), including the body-size refusals that the
//! framework produces before any handler runs.

use serde_json::Value;
use testkit::app::Handler;

fn assert_json_413(r: reqwest::blocking::Response, what: &str) {
    assert_eq!(r.status(), 413, "{what}");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().unwrap();
    assert!(ct.starts_with("application/json"), "{what}: {ct} {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    assert_eq!(v["error"], "request body too large", "{what}: {text}");
}

#[test]
fn oversized_bodies_are_refused_with_a_json_413() {
    let dir = tempfile::tempdir().unwrap();
    let h = Handler::custom_handler(dir.path(), &[("MAX_BODY_BYTES", "1024")]);
    let client = reqwest::blocking::Client::new();

    // A public route: refused on Content-Length by the body-limit layer.
    let r = client
        .post(format!("{}/api/health", h.base))
        .body(vec![b'x'; 4096])
        .send()
        .unwrap();
    assert_json_413(r, "public route");

    // A host invocation: refused by the extractor's limit while reading.
    let big = format!(
        "{{\"Data\":{{\"msg\":\"{}\"}}}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let r = client
        .post(format!("{}/SyncWorker", h.base))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .unwrap();
    assert_json_413(r, "host invocation");
}
