//! Teams app package (issue 18 items 1-3): the generated package validates, has the zip layout
//! Teams wants and is stored with its version; the fixtures' examples get the verdicts of
//! `examples/EXPECTED.json`; icon checks; the `handler teams-app build | validate` commands.

use bridge::config::Source;
use bridge::settings::Settings;
use bridge::store::blob::FsBlobStore;
use bridge::store::BlobStore;
use bridge::teams_app::package::{self, Latest};
use bridge::teams_app::validate::{self, SchemaKind};
use bridge::teams_app::{TeamsAppError, CONTAINER};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

const BOT: &str = "00000000-0000-4000-8000-00000000b001";

fn env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: BTreeMap<String, String> = [
        ("BOT_APP_ID", BOT),
        ("BOT_TENANT_ID", "00000000-aaaa-4000-8000-000000000001"),
        ("BOT_APP_PASSWORD", "pw-123456"),
        ("PUBLIC_URL", "https://bridge.example.org"),
        ("MOODLE_URL", "https://moodle.example.org"),
        ("MOODLE_TOKEN", "tok-123456"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        pairs.insert(k.to_string(), v.to_string());
    }
    pairs.into_iter().collect()
}

fn settings(extra: &[(&str, &str)]) -> Settings {
    Settings::load(&mut Source::from_map(env(extra).into_iter().collect())).expect("settings")
}

fn examples() -> std::path::PathBuf {
    testkit::fixtures_dir().join("teams-manifest-schema/examples")
}

fn json_file(name: &str) -> Value {
    let text = std::fs::read_to_string(examples().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn files_of(zip: &[u8]) -> BTreeMap<String, Vec<u8>> {
    package::unzip(zip).unwrap()
}

fn manifest_of(zip: &[u8]) -> Value {
    serde_json::from_slice(&files_of(zip)["manifest.json"]).unwrap()
}

#[tokio::test]
async fn the_generated_package_validates_and_has_the_zip_layout_teams_wants() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::new(dir.path().join("blobs"));
    let built = package::build_and_store(&settings(&[]), &blobs)
        .await
        .unwrap();
    assert_eq!(built.latest.version, "1.0.0");
    // Exactly the four files, all at the root, names as the manifest spells them.
    let names: Vec<String> = files_of(&built.zip).into_keys().collect();
    assert_eq!(
        names,
        ["color.png", "fr.json", "manifest.json", "outline.png"]
    );
    assert_eq!(package::check_zip(&built.zip).unwrap(), vec![]);

    let m = manifest_of(&built.zip);
    assert_eq!(m["manifestVersion"], "1.30");
    assert!(m["$schema"].as_str().unwrap().contains("/v1.30/"));
    assert_eq!(m["bots"][0]["botId"], BOT);
    assert_eq!(
        m["bots"][0]["scopes"],
        serde_json::json!(["personal", "team", "groupChat"])
    );
    for list in m["bots"][0]["commandLists"].as_array().unwrap() {
        let n = list["commands"].as_array().unwrap().len();
        assert!((1..=validate::MAX_COMMANDS_PER_LIST).contains(&n), "{n}");
    }
    assert_eq!(m["staticTabs"][0]["name"], "Moodle");
    assert_eq!(
        m["staticTabs"][0]["contentUrl"],
        "https://moodle.example.org/my/courses.php"
    );
    assert_eq!(
        m["configurableTabs"][0]["configurationUrl"],
        "https://bridge.example.org/connector/config"
    );
    assert!(
        m.get("connectors").is_none(),
        "Office 365 connectors are retired"
    );
    assert_eq!(
        m["validDomains"],
        serde_json::json!(["bridge.example.org", "moodle.example.org"])
    );
    assert_eq!(m["webApplicationInfo"]["id"], BOT);
    assert_eq!(
        m["webApplicationInfo"]["resource"],
        format!("api://bridge.example.org/{BOT}")
    );
    assert_eq!(m["localizationInfo"]["defaultLanguageTag"], "en");
    assert_eq!(
        m["localizationInfo"]["additionalLanguages"][0]["file"],
        "fr.json"
    );
    // The manifest id is stable for one bot and is a GUID.
    assert_eq!(
        m["id"],
        bridge::teams_app::manifest::derived_app_id(BOT).as_str()
    );
    let fr: Value = serde_json::from_slice(&files_of(&built.zip)["fr.json"]).unwrap();
    assert_eq!(fr["bots[0].commandLists[0].commands[4].title"], "aide");

    // Stored as teams-app/<version>.zip, with the latest marked.
    let stored = blobs.get(CONTAINER, "1.0.0.zip").await.unwrap().unwrap();
    assert_eq!(stored, built.zip);
    let latest: Latest =
        serde_json::from_slice(&blobs.get(CONTAINER, "latest.json").await.unwrap().unwrap())
            .unwrap();
    assert_eq!(latest.version, "1.0.0");
    assert_eq!(latest.blob, "1.0.0.zip");
}

#[tokio::test]
async fn the_version_stays_when_nothing_changed_and_is_bumped_when_the_content_does() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::new(dir.path().join("blobs"));
    let first = package::build_and_store(&settings(&[]), &blobs)
        .await
        .unwrap();
    let again = package::build_and_store(&settings(&[]), &blobs)
        .await
        .unwrap();
    assert_eq!(again.latest.version, "1.0.0");
    assert!(!again.changed);
    assert_eq!(first.zip, again.zip, "same content, same bytes");
    let renamed = settings(&[("TEAMS_APP_NAME", "Moodle école")]);
    let bumped = package::build_and_store(&renamed, &blobs).await.unwrap();
    assert_eq!(bumped.latest.version, "1.0.1");
    assert!(bumped.changed);
    assert_eq!(manifest_of(&bumped.zip)["version"], "1.0.1");
    let pinned = settings(&[("TEAMS_APP_VERSION", "2.3.4")]);
    let p = package::build_and_store(&pinned, &blobs).await.unwrap();
    assert_eq!(p.latest.version, "2.3.4");
    let mut listed = blobs.list(CONTAINER, "").await.unwrap();
    listed.sort();
    assert_eq!(
        listed,
        ["1.0.0.zip", "1.0.1.zip", "2.3.4.zip", "latest.json"]
    );
    let loaded = package::load_latest(&blobs).await.unwrap().unwrap();
    assert_eq!(loaded.latest.version, "2.3.4");
}

#[tokio::test]
async fn missing_settings_are_all_named() {
    let s = Settings::load(&mut Source::from_map(BTreeMap::new())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::new(dir.path().join("blobs"));
    let err = package::build_and_store(&s, &blobs).await.unwrap_err();
    let text = err.to_string();
    for name in ["BOT_APP_ID", "PUBLIC_URL", "MOODLE_URL"] {
        assert!(text.contains(name), "{name} missing from {text}");
    }
}

#[test]
fn a_bad_pinned_version_or_colour_is_a_settings_problem() {
    let err = Settings::load(&mut Source::from_map(
        env(&[
            ("TEAMS_APP_VERSION", "1.0"),
            ("TEAMS_APP_ACCENT_COLOR", "orange"),
        ])
        .into_iter()
        .collect(),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("TEAMS_APP_VERSION") && err.contains("TEAMS_APP_ACCENT_COLOR"),
        "{err}"
    );
}

fn png(size: u32, rgba: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, size, size);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&rgba.repeat((size * size) as usize))
            .unwrap();
    }
    out
}

#[tokio::test]
async fn supplied_icons_are_checked_a_191_px_colour_icon_and_an_opaque_outline_fail() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::new(dir.path().join("blobs"));
    let small = dir.path().join("small.png");
    std::fs::write(&small, png(191, [10, 20, 30, 255])).unwrap();
    let s = settings(&[("TEAMS_APP_COLOR_ICON", small.to_str().unwrap())]);
    let err = package::build_and_store(&s, &blobs).await.unwrap_err();
    assert!(
        matches!(
            err,
            TeamsAppError::Icon {
                file: "color.png",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("191×191"), "{err}");

    let opaque = dir.path().join("opaque.png");
    std::fs::write(&opaque, png(32, [40, 40, 40, 255])).unwrap();
    let s = settings(&[("TEAMS_APP_OUTLINE_ICON", opaque.to_str().unwrap())]);
    let err = package::build_and_store(&s, &blobs).await.unwrap_err();
    assert!(
        matches!(
            err,
            TeamsAppError::Icon {
                file: "outline.png",
                ..
            }
        ),
        "{err}"
    );

    // Good supplied icons are taken as they are.
    let color = dir.path().join("color.png");
    std::fs::write(&color, png(192, [0, 120, 212, 255])).unwrap();
    let s = settings(&[("TEAMS_APP_COLOR_ICON", color.to_str().unwrap())]);
    let built = package::build_and_store(&s, &blobs).await.unwrap();
    assert_eq!(
        files_of(&built.zip)["color.png"],
        std::fs::read(&color).unwrap()
    );
    assert!(blobs
        .list(CONTAINER, "")
        .await
        .unwrap()
        .contains(&"1.0.0.zip".to_string()));
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[tokio::test]
async fn a_zip_with_a_folder_a_missing_file_or_a_bad_icon_is_refused_by_path_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::new(dir.path().join("blobs"));
    let good = files_of(
        &package::build_and_store(&settings(&[]), &blobs)
            .await
            .unwrap()
            .zip,
    );
    let rules = |files: &[(&str, &[u8])]| -> BTreeSet<(String, String, String)> {
        package::check_zip(&zip_of(files))
            .unwrap()
            .into_iter()
            .map(|v| (v.file, v.path, v.rule))
            .collect()
    };
    let nested = rules(&[
        ("app/manifest.json", &good["manifest.json"]),
        ("app/fr.json", &good["fr.json"]),
    ]);
    assert!(
        nested.iter().any(|(_, _, r)| r == "zip.layout"),
        "{nested:?}"
    );
    let missing = rules(&[
        ("manifest.json", &good["manifest.json"]),
        ("color.png", &good["color.png"]),
        ("Outline.png", &good["outline.png"]),
    ]);
    assert!(missing.contains(&(
        "manifest.json".into(),
        "/icons/outline".into(),
        "zip.file".into()
    )));
    assert!(missing.contains(&(
        "manifest.json".into(),
        "/localizationInfo/additionalLanguages/0/file".into(),
        "zip.file".into()
    )));
    let opaque = png(32, [0, 0, 0, 255]);
    let bad_icon = rules(&[
        ("manifest.json", &good["manifest.json"]),
        ("fr.json", &good["fr.json"]),
        ("color.png", &good["color.png"]),
        ("outline.png", &opaque),
    ]);
    assert_eq!(
        bad_icon,
        BTreeSet::from([("outline.png".into(), "".into(), "icon".into())])
    );
    assert!(package::check_zip(b"not a zip").is_err());
}

#[test]
fn the_vendored_schemas_are_the_fixtures_copies() {
    let root = testkit::repo_root().join("handler/teams_app/schema");
    let fx = testkit::fixtures_dir().join("teams-manifest-schema");
    for (ours, theirs) in [
        (
            "manifest-v1.30.schema.json",
            "v1.30/MicrosoftTeams.schema.json",
        ),
        (
            "localization-v1.30.schema.json",
            "v1.30/MicrosoftTeams.Localization.schema.json",
        ),
        (
            "manifest-v1.17.schema.json",
            "v1.17/MicrosoftTeams.schema.json",
        ),
        (
            "localization-v1.17.schema.json",
            "v1.17/MicrosoftTeams.Localization.schema.json",
        ),
    ] {
        assert_eq!(
            std::fs::read(root.join(ours)).unwrap(),
            std::fs::read(fx.join(theirs)).unwrap(),
            "{ours}"
        );
    }
}

/// The rule our own checks name for each example the schema lets through.
fn own_rule(example: &str) -> Option<(&'static str, &'static str)> {
    Some(match example {
        "rule-invalid-version-not-semver.json" => ("/version", "semver"),
        "rule-invalid-eleven-commands.json" => ("/bots/0/commandLists/0/commands", "commands.max"),
        "rule-invalid-valid-domain-with-scheme.json" => ("/validDomains/0", "validDomains.host"),
        "rule-invalid-valid-domain-tld-wildcard.json" => {
            ("/validDomains/1", "validDomains.wildcard")
        }
        "rule-invalid-manifest-version-mismatch.json" => ("/manifestVersion", "manifestVersion"),
        "rule-invalid-loc-fr-name-short-too-long.json" => ("/name.short", "maxLength"),
        _ => return None,
    })
}

#[test]
fn every_example_gets_the_verdicts_of_expected_json() {
    let expected = json_file("EXPECTED.json");
    let mut seen = 0;
    for (name, want) in expected.as_object().unwrap() {
        if name.starts_with('_') {
            continue;
        }
        seen += 1;
        let doc = json_file(name);
        let kind = if want["schema"].as_str().unwrap().contains("Localization") {
            SchemaKind::Localization
        } else {
            SchemaKind::Manifest
        };
        // Strict schema verdict, and the same (path, keyword) pairs.
        let errors = validate::schema_errors(kind, name, &doc);
        let got: BTreeSet<(String, String)> = errors
            .iter()
            .map(|v| (v.path.clone(), v.rule.clone()))
            .collect();
        let want_errors: BTreeSet<(String, String)> = want["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["path"].as_str().unwrap().to_string(),
                    e["keyword"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(got, want_errors, "{name}: {errors:?}");
        assert_eq!(
            if errors.is_empty() {
                "valid"
            } else {
                "invalid"
            },
            want["strict"],
            "{name}"
        );
        // Full check: schema + own rules; the project's policy where it is stricter.
        let full = match kind {
            SchemaKind::Manifest => validate::check_manifest(name, &doc),
            SchemaKind::Localization => validate::check_localization(name, &doc, None),
        };
        let verdict = want.get("policy").unwrap_or(&want["teams"]);
        assert_eq!(
            if full.is_empty() { "valid" } else { "invalid" },
            *verdict,
            "{name}: {full:?}"
        );
        if name.starts_with("invalid-") || name.starts_with("rule-invalid-") {
            let (path, rule) = match own_rule(name) {
                Some((p, r)) => (p.to_string(), r.to_string()),
                None => want_errors
                    .iter()
                    .next()
                    .cloned()
                    .expect("an expected error"),
            };
            assert!(
                full.iter().any(|v| v.path == path && v.rule == rule),
                "{name}: wanted {path} [{rule}] in {full:?}"
            );
            // The message names the path.
            let line = full.iter().find(|v| v.path == path).unwrap().to_string();
            let shown = if path.is_empty() {
                "(root)"
            } else {
                path.as_str()
            };
            assert!(line.contains(shown), "{line}");
        }
    }
    assert_eq!(seen, 15, "every example of EXPECTED.json was checked");
}

#[test]
fn the_fixture_manifest_and_its_french_file_pass_the_package_check_with_keys_checked() {
    let m = json_file("valid-manifest.json");
    let fr = json_file("fr.json");
    assert_eq!(
        validate::check_localization("fr.json", &fr, Some(&m)),
        vec![]
    );
    let mut wrong = fr.clone();
    wrong["staticTabs[3].name"] = "Rien".into();
    let v = validate::check_localization("fr.json", &wrong, Some(&m));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        (v[0].path.as_str(), v[0].rule.as_str()),
        ("/staticTabs[3].name", "localization.key")
    );
}

#[test]
fn the_cli_builds_a_zip_that_its_validate_command_accepts_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let vars = env(&[]);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = dir.path().join("app.zip");
    let (code, text) = testkit::app::run_cli(
        dir.path(),
        &vars,
        &["teams-app", "build", "--out", out.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1.0.0"), "{text}");
    assert!(dir.path().join("blobs/teams-app/1.0.0.zip").exists());
    let (code, text) = testkit::app::run_cli(
        dir.path(),
        &vars,
        &["teams-app", "validate", out.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("valid"), "{text}");
    // A manifest with a scheme in validDomains: exit 1, the path and the rule are printed.
    let mut files = files_of(&std::fs::read(&out).unwrap());
    let mut m: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    m["validDomains"][0] = "https://bridge.example.org".into();
    files.insert("manifest.json".into(), serde_json::to_vec(&m).unwrap());
    let broken = dir.path().join("broken.zip");
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    std::fs::write(&broken, zip_of(&entries)).unwrap();
    let (code, text) = testkit::app::run_cli(
        dir.path(),
        &vars,
        &["teams-app", "validate", broken.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("/validDomains/0") && text.contains("validDomains.host"),
        "{text}"
    );
    // Without the settings the build names them and exits 2.
    let (code, text) = testkit::app::run_cli(dir.path(), &[], &["teams-app", "build"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("PUBLIC_URL"), "{text}");
}
