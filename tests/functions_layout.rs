//! `functions/<Name>/function.json` and `host.json` agree with the code's function table and
//! with the host's rules; `local.settings.example.json` lists every setting the app reads.

use bridge::host::functions::{binding_for_queue, FunctionKind, FUNCTIONS};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(rel: &str) -> Value {
    let text = std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn one_folder_per_function_each_with_only_function_json() {
    let folders: BTreeSet<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let expected: BTreeSet<String> = FUNCTIONS.iter().map(|f| f.name.to_string()).collect();
    assert_eq!(folders, expected);
    for f in &folders {
        let files: Vec<String> = std::fs::read_dir(root().join("functions").join(f))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(files, ["function.json"], "{f}");
    }
}

#[test]
fn bindings_match_the_function_table() {
    for spec in FUNCTIONS {
        let v = read_json(&format!("functions/{}/function.json", spec.name));
        let bindings = v["bindings"].as_array().unwrap();
        let inputs: Vec<&Value> = bindings.iter().filter(|b| b["direction"] == "in").collect();
        assert_eq!(inputs.len(), 1, "{}: exactly one trigger", spec.name);
        let trigger = inputs[0];
        match spec.kind {
            FunctionKind::Timer {
                schedule_setting, ..
            } => {
                assert_eq!(trigger["type"], "timerTrigger");
                assert_eq!(trigger["name"], "timer");
                assert_eq!(
                    trigger["schedule"],
                    format!("%{schedule_setting}%"),
                    "schedule comes from an app setting"
                );
            }
            FunctionKind::Queue { queue, .. } => {
                assert_eq!(trigger["type"], "queueTrigger");
                assert_eq!(trigger["name"], "msg");
                assert_eq!(trigger["queueName"], queue);
                assert_eq!(trigger["connection"], "AzureWebJobsStorage");
            }
            FunctionKind::Http { route, methods, .. } => {
                assert_eq!(trigger["type"], "httpTrigger");
                assert_eq!(trigger["name"], "req");
                assert_eq!(trigger["route"], route);
                let m: Vec<&str> = trigger["methods"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap())
                    .collect();
                assert_eq!(m, methods, "{}", spec.name);
                assert!(bindings
                    .iter()
                    .any(|b| b["type"] == "http" && b["direction"] == "out" && b["name"] == "res"));
            }
        }
        let queue_outs: BTreeSet<(String, String)> = bindings
            .iter()
            .filter(|b| b["type"] == "queue" && b["direction"] == "out")
            .map(|b| {
                (
                    b["name"].as_str().unwrap().to_string(),
                    b["queueName"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: BTreeSet<(String, String)> = spec
            .outputs
            .iter()
            .map(|q| (binding_for_queue(q), q.to_string()))
            .collect();
        assert_eq!(queue_outs, expected, "{}", spec.name);
        // The host forwards the raw request only for HTTP-in + HTTP-out functions.
        let http_only = bindings.len() == 2 && trigger["type"] == "httpTrigger";
        assert_eq!(spec.forwarded(), http_only, "{}", spec.name);
    }
}

#[test]
fn host_json_follows_the_custom_handler_rules() {
    let host = read_json("host.json");
    assert_eq!(host["version"], "2.0");
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "handler"
    );
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(
        host["extensions"]["http"]["routePrefix"], "",
        "routes in function.json are the full paths"
    );
    assert_eq!(host["extensions"]["queues"]["maxDequeueCount"], 5);
    assert_eq!(
        host["extensionBundle"]["id"],
        "Microsoft.Azure.Functions.ExtensionBundle"
    );
    assert!(
        host["extensionBundle"]["version"]
            .as_str()
            .unwrap()
            .starts_with("[4."),
        "Flex needs bundle 4.x"
    );
    assert_eq!(
        bridge::queue::MAX_DEQUEUE,
        5,
        "standalone queue poisons after as many tries as the host"
    );
}

#[test]
fn local_settings_example_lists_every_setting_the_app_reads() {
    let example = read_json("local.settings.example.json");
    let values = example["Values"].as_object().unwrap();
    let documented: BTreeSet<String> = bridge::settings::Settings::documented()
        .into_iter()
        .map(|d| d.name)
        .collect();
    let listed: BTreeSet<String> = values
        .keys()
        .filter(|k| !k.starts_with("FUNCTIONS_"))
        .cloned()
        .collect();
    let missing: Vec<_> = documented.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "add to local.settings.example.json (run `handler settings --format example`): {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "settings the app does not read: {unknown:?}"
    );
    assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
    for (k, v) in values {
        let secret = bridge::settings::Settings::documented()
            .into_iter()
            .any(|d| &d.name == k && d.secret);
        if secret {
            assert!(
                v.as_str().unwrap_or("").is_empty() || v == "UseDevelopmentStorage=true",
                "{k}: no real secret in the example"
            );
        }
    }
}

#[test]
fn readme_documents_every_setting() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let missing: Vec<String> = bridge::settings::Settings::documented()
        .into_iter()
        .map(|d| d.name)
        .filter(|n| !readme.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README settings table lacks {missing:?}: regenerate with `handler settings --format markdown`"
    );
}

/// Web-service function names the code passes to the Moodle client (`.call("…"` / `.call_value("…"`).
fn functions_called(dir: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            functions_called(&p, out);
            continue;
        }
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for marker in [".call(", ".call_value("] {
            for piece in text.split(marker).skip(1) {
                if let Some(rest) = piece.trim_start().strip_prefix('"') {
                    out.insert(rest.split('"').next().unwrap_or_default().to_string());
                }
            }
        }
    }
}

#[test]
fn readme_lists_exactly_the_moodle_functions_the_code_calls() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("**Moodle side**")
        .expect("Moodle side paragraph");
    let end = start + readme[start..].find("\n\n").unwrap();
    let listed: BTreeSet<String> = readme[start..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| w.contains('_') && w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .filter(|w| *w != "max_input_vars")
        .map(str::to_string)
        .collect();
    let mut called = BTreeSet::new();
    functions_called(&root().join("handler"), &mut called);
    // moodle/enrol.rs: client helpers for the Teams round, not called by the sync or the bot yet.
    for later in ["enrol_manual_enrol_users", "enrol_manual_unenrol_users"] {
        called.remove(later);
    }
    let not_called: Vec<_> = listed.difference(&called).collect();
    let not_listed: Vec<_> = called.difference(&listed).collect();
    assert!(
        not_called.is_empty() && not_listed.is_empty(),
        "README lists functions the code never calls: {not_called:?}; the code calls functions the README omits: {not_listed:?}"
    );
}

/// Every HTTP route a function.json declares reaches a handler: its own answer, or an explicit
/// JSON 501 "not in this build" — never the router's "no route" 404.
#[tokio::test]
async fn every_declared_route_is_answered_by_the_router() {
    use bridge::config::Source;
    use bridge::settings::Settings;
    use tower::ServiceExt;
    bridge::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut src = Source::from_map(
        [
            ("SQLITE_PATH", dir.path().join("s.sqlite")),
            ("BLOB_DIR", dir.path().join("blobs")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string_lossy().to_string()))
        .collect(),
    );
    let settings = Settings::load(&mut src).unwrap();
    let state = bridge::app::AppState::build(settings, false).await.unwrap();
    let router = bridge::app::public_router(state);
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("functions")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        let v = read_json(&format!("functions/{name}/function.json"));
        for b in v["bindings"].as_array().unwrap() {
            if b["type"] != "httpTrigger" {
                continue;
            }
            let path = format!("/{}", b["route"].as_str().unwrap()).replace("{*rest}", "probe");
            for m in b["methods"].as_array().unwrap() {
                let method = m.as_str().unwrap().to_ascii_uppercase();
                let req = axum::http::Request::builder()
                    .method(method.as_str())
                    .uri(&path)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from("{}"))
                    .unwrap();
                let res = router.clone().oneshot(req).await.unwrap();
                let status = res.status().as_u16();
                let body = axum::body::to_bytes(res.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let text = String::from_utf8_lossy(&body).to_string();
                let what = format!("{name}: {method} {path} answered {status} {text}");
                let json: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("{what}: answer is not JSON"));
                let error = json["error"].as_str().unwrap_or_default();
                assert!(!error.starts_with("no route"), "{what}");
                if status == 501 {
                    assert!(
                        error.contains("not in this build") && error.contains(&name),
                        "{what}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 9, "only {checked} route/method pairs found");
}
