//! infra/package.sh, run with the debug `handler`, must produce the package layout the Functions
//! host expects: host.json at the root, one `<Name>/function.json` per function, the `handler`
//! binary with its run bit, and nothing else.

use bridge::host::functions::FUNCTIONS;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs package.sh into a fresh folder and returns (folder guard, zip path).
fn build_package() -> (tempfile::TempDir, PathBuf) {
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new("bash")
        .arg(repo().join("infra/package.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_handler"), "--out"])
        .arg(out.path())
        .output()
        .expect("run infra/package.sh");
    assert!(
        output.status.success(),
        "package.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    let zip_path = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("zip path on the last line")
            .trim(),
    );
    assert_eq!(zip_path, out.path().join("handler.zip"));
    (out, zip_path)
}

fn read_entry(archive: &mut zip::ZipArchive<std::fs::File>, name: &str) -> Vec<u8> {
    let mut entry = archive
        .by_name(name)
        .unwrap_or_else(|_| panic!("{name} missing from the package"));
    let mut buf = Vec::new();
    entry.read_to_end(&mut buf).expect("read entry");
    buf
}

fn unix_mode(archive: &mut zip::ZipArchive<std::fs::File>, name: &str) -> u32 {
    archive
        .by_name(name)
        .expect("entry")
        .unix_mode()
        .unwrap_or_else(|| panic!("{name} has no Unix mode"))
}

#[test]
fn package_layout_follows_the_host_rules() {
    let (_guard, zip_path) = build_package();
    let mut archive =
        zip::ZipArchive::new(std::fs::File::open(&zip_path).expect("open zip")).expect("valid zip");
    let names: BTreeSet<String> = archive.file_names().map(str::to_string).collect();

    // Exactly: host.json, handler, one function.json per function in the code's table.
    let mut expected: BTreeSet<String> = ["host.json".to_string(), "handler".to_string()].into();
    for f in FUNCTIONS {
        expected.insert(format!("{}/function.json", f.name));
    }
    assert_eq!(
        names, expected,
        "package entries (no stray files, no target/ or .git)"
    );

    // host.json: the custom handler is `handler` at the root; the bundle range includes 4.x.
    let host: serde_json::Value =
        serde_json::from_slice(&read_entry(&mut archive, "host.json")).expect("host.json is JSON");
    assert_eq!(host["version"], "2.0");
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "handler"
    );
    assert_eq!(
        host["extensionBundle"]["id"],
        "Microsoft.Azure.Functions.ExtensionBundle"
    );
    let range = host["extensionBundle"]["version"]
        .as_str()
        .expect("bundle version range");
    assert!(
        bundle_range_includes_4x(range),
        "extension bundle range {range:?} must include 4.x (Flex needs >= 4)"
    );

    // Each function.json is valid JSON with bindings and is byte-identical to the repo's copy.
    for f in FUNCTIONS {
        let entry = format!("{}/function.json", f.name);
        let bytes = read_entry(&mut archive, &entry);
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{entry}: {e}"));
        assert!(
            json["bindings"].as_array().is_some_and(|b| !b.is_empty()),
            "{entry} has no bindings"
        );
        let source = std::fs::read(repo().join("functions").join(f.name).join("function.json"))
            .expect("repo copy");
        assert_eq!(
            bytes, source,
            "{entry} differs from functions/{}/function.json",
            f.name
        );
    }

    // The binary keeps its run bit (0755) and is the one that was passed in.
    assert_eq!(
        unix_mode(&mut archive, "handler") & 0o777,
        0o755,
        "handler must be 0755 in the zip"
    );
    assert_eq!(unix_mode(&mut archive, "host.json") & 0o777, 0o644);
    let binary = read_entry(&mut archive, "handler");
    assert_eq!(
        binary.len() as u64,
        Path::new(env!("CARGO_BIN_EXE_handler"))
            .metadata()
            .unwrap()
            .len()
    );
    assert_eq!(&binary[..4], b"\x7fELF");
}

#[test]
fn package_is_deterministic() {
    // deploy.sh skips a publish when the SHA-256 matches the last one: same inputs, same bytes.
    let (_a, first) = build_package();
    let (_b, second) = build_package();
    assert_eq!(
        std::fs::read(first).unwrap(),
        std::fs::read(second).unwrap()
    );
}

#[test]
fn package_refuses_a_non_executable_input() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("handler");
    std::fs::write(&fake, b"#!/bin/sh\necho not an ELF\n").unwrap();
    let output = Command::new("bash")
        .arg(repo().join("infra/package.sh"))
        .arg("--binary")
        .arg(&fake)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not an ELF"));
}

/// `[4.*, 5.0.0)`, `[4.0.0, 5.0.0)` and the like: the lower bound is 4.x or lower and the upper bound
/// lies above 4.x.
fn bundle_range_includes_4x(range: &str) -> bool {
    let inner = range.trim();
    let (Some(open), Some(close)) = (inner.chars().next(), inner.chars().last()) else {
        return false;
    };
    if !matches!(open, '[' | '(') || !matches!(close, ']' | ')') {
        return false;
    }
    let body = &inner[1..inner.len() - 1];
    let Some((low, high)) = body.split_once(',') else {
        return false;
    };
    let major = |v: &str| {
        v.trim()
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
    };
    match (major(low), major(high)) {
        (Some(lo), Some(hi)) => lo <= 4 && (hi > 4 || (hi == 4 && close == ']')),
        (Some(lo), None) => lo <= 4 && high.trim().is_empty(),
        _ => false,
    }
}

#[test]
fn bundle_range_parser() {
    assert!(bundle_range_includes_4x("[4.*, 5.0.0)"));
    assert!(bundle_range_includes_4x("[4.0.0, 5.0.0)"));
    assert!(!bundle_range_includes_4x("[3.3.0, 4.0.0)"));
    assert!(!bundle_range_includes_4x("[5.*, 6.0.0)"));
    assert!(!bundle_range_includes_4x("4.*"));
}
