//! Package checks: the official JSON schemas with the strict semantics Microsoft's own tooling
//! applies (draft 2019-09: `const` and keywords beside `$ref` are enforced, although the schemas
//! declare draft-04), plus the rules the schemas do not check (fixtures' VALIDATE.md): semver,
//! `manifestVersion` = schema version, host-only `validDomains` without shared-suffix wildcards,
//! at most 10 commands per list (v1.17 and the bot-menu guide), localization limits and keys,
//! and a zip whose files are all there. Every violation names a JSON pointer and the rule.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const MANIFEST_V1_30: &str = include_str!("schema/manifest-v1.30.schema.json");
const LOCALIZATION_V1_30: &str = include_str!("schema/localization-v1.30.schema.json");
const MANIFEST_V1_17: &str = include_str!("schema/manifest-v1.17.schema.json");
const LOCALIZATION_V1_17: &str = include_str!("schema/localization-v1.17.schema.json");

/// Stricter than the v1.30 schema's 12: the package stays valid for v1.17 clients and the guide.
pub const MAX_COMMANDS_PER_LIST: usize = 10;

/// One broken rule: where (JSON pointer, "" = the document), which rule, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The file inside the package (`manifest.json`, `fr.json`, …).
    pub file: String,
    pub path: String,
    /// The schema keyword (`pattern`, `maxLength`, `required`, `const` …) or our rule's name.
    pub rule: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "(root)"
        } else {
            &self.path
        };
        write!(f, "{} {path} [{}] {}", self.file, self.rule, self.message)
    }
}

fn violation(
    file: &str,
    path: impl Into<String>,
    rule: &str,
    message: impl Into<String>,
) -> Violation {
    Violation {
        file: file.to_string(),
        path: path.into(),
        rule: rule.to_string(),
        message: message.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaKind {
    Manifest,
    Localization,
}

struct Compiled {
    manifest_v1_30: jsonschema::Validator,
    localization_v1_30: jsonschema::Validator,
    manifest_v1_17: jsonschema::Validator,
    localization_v1_17: jsonschema::Validator,
}

fn compile(text: &str) -> jsonschema::Validator {
    let mut schema: Value = serde_json::from_str(text).expect("vendored schema is JSON");
    // The declared draft-04 `$schema` must go: jsonschema 0.33 forced to 2019-09 otherwise
    // resolves `$ref` targets with draft-04 rules and drops their keywords (`/id`'s GUID
    // pattern went unchecked; tests/teams_app_package.rs holds every verdict of the fixtures).
    if let Some(o) = schema.as_object_mut() {
        o.remove("$schema");
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft201909)
        .build(&schema)
        .expect("vendored schema compiles")
}

fn compiled() -> &'static Compiled {
    static C: OnceLock<Compiled> = OnceLock::new();
    C.get_or_init(|| Compiled {
        manifest_v1_30: compile(MANIFEST_V1_30),
        localization_v1_30: compile(LOCALIZATION_V1_30),
        manifest_v1_17: compile(MANIFEST_V1_17),
        localization_v1_17: compile(LOCALIZATION_V1_17),
    })
}

/// `vX.Y` out of a `$schema` URL such as `…/teams/v1.30/MicrosoftTeams.schema.json`.
fn schema_version(doc: &Value) -> Option<&str> {
    let url = doc.get("$schema")?.as_str()?;
    let mut parts = url.rsplit('/');
    parts.next()?;
    parts.next()?.strip_prefix('v')
}

/// Schema errors only (the "strict" verdict of the fixtures); the version comes from `$schema`
/// and defaults to v1.30.
pub fn schema_errors(kind: SchemaKind, file: &str, doc: &Value) -> Vec<Violation> {
    let c = compiled();
    let version = schema_version(doc).unwrap_or("1.30");
    let validator = match (kind, version) {
        (SchemaKind::Manifest, "1.30") => &c.manifest_v1_30,
        (SchemaKind::Manifest, "1.17") => &c.manifest_v1_17,
        (SchemaKind::Localization, "1.30") => &c.localization_v1_30,
        (SchemaKind::Localization, "1.17") => &c.localization_v1_17,
        (_, other) => {
            return vec![violation(
                file,
                "/$schema",
                "schema-version",
                format!("schema v{other} is not known here (v1.30 and v1.17 are)"),
            )]
        }
    };
    validator
        .iter_errors(doc)
        .map(|e| {
            let schema_path = e.schema_path.to_string();
            let keyword = schema_path
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            violation(file, e.instance_path.to_string(), &keyword, e.to_string())
        })
        .collect()
}

/// The schema's own (unused) `definitions.semver`: numeric parts, no leading zeros, no suffix.
pub fn is_semver(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 9
                && p.chars().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

/// Shared suffixes under which a wildcard would cover domains nobody here controls.
const SHARED_SUFFIXES: &[&str] = &[
    "onmicrosoft.com",
    "azurewebsites.net",
    "azurestaticapps.net",
    "cloudapp.net",
    "cloudapp.azure.com",
    "trafficmanager.net",
    "azurefd.net",
    "azureedge.net",
    "windows.net",
    "sharepoint.com",
    "github.io",
    "herokuapp.com",
    "co.uk",
    "ac.uk",
    "gouv.fr",
    "com.fr",
    "asso.fr",
];

fn domain_problem(entry: &str) -> Option<(&'static str, String)> {
    if entry.contains("://") {
        return Some((
            "validDomains.host",
            format!("{entry:?} has a scheme: write the host name only"),
        ));
    }
    if entry.contains('/') || entry.contains(':') || entry.contains('?') {
        return Some((
            "validDomains.host",
            format!("{entry:?} has a path or port: write the host name only"),
        ));
    }
    let (wildcard, host) = match entry.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, entry),
    };
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !labels.iter().all(label_ok) {
        return Some((
            "validDomains.host",
            format!("{entry:?} is not a host name (a wildcard may only be a leading \"*.\")"),
        ));
    }
    if wildcard {
        let lower = host.to_ascii_lowercase();
        if labels.len() < 2 || SHARED_SUFFIXES.contains(&lower.as_str()) {
            return Some((
                "validDomains.wildcard",
                format!("{entry:?} covers a top-level or shared domain: a wildcard must sit on a domain you control"),
            ));
        }
    }
    None
}

fn is_https(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() > 8 && s[..8].eq_ignore_ascii_case("https://"))
}

/// The rules the schema does not check, on the manifest alone.
pub fn manifest_rules(file: &str, m: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(v) = m.get("version").and_then(Value::as_str) {
        if !is_semver(v) {
            out.push(violation(
                file,
                "/version",
                "semver",
                format!("{v:?} is not MAJOR.MINOR.PATCH (numbers, no leading zeros)"),
            ));
        }
    }
    // Checked here as well as by `const`, so it holds whatever draft a validator follows.
    if let (Some(declared), Some(schema)) = (
        m.get("manifestVersion").and_then(Value::as_str),
        schema_version(m),
    ) {
        if declared != schema {
            out.push(violation(
                file,
                "/manifestVersion",
                "manifestVersion",
                format!("{declared:?} differs from the $schema version {schema:?}"),
            ));
        }
    }
    if let Some(domains) = m.get("validDomains").and_then(Value::as_array) {
        for (n, d) in domains.iter().enumerate() {
            if let Some((rule, msg)) = d.as_str().and_then(domain_problem) {
                out.push(violation(file, format!("/validDomains/{n}"), rule, msg));
            }
        }
    }
    let bots = m.get("bots").and_then(Value::as_array);
    for (b, bot) in bots.into_iter().flatten().enumerate() {
        let bot_scopes: Vec<&str> = bot
            .get("scopes")
            .and_then(Value::as_array)
            .map(|s| s.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let lists = bot.get("commandLists").and_then(Value::as_array);
        let mut titles: BTreeMap<(String, String), String> = BTreeMap::new();
        for (l, list) in lists.into_iter().flatten().enumerate() {
            let path = format!("/bots/{b}/commandLists/{l}");
            let commands = list.get("commands").and_then(Value::as_array);
            let count = commands.map_or(0, Vec::len);
            if count > MAX_COMMANDS_PER_LIST {
                out.push(violation(
                    file,
                    format!("{path}/commands"),
                    "commands.max",
                    format!("{count} commands: at most {MAX_COMMANDS_PER_LIST} per list (v1.17 and the bot-menu guide)"),
                ));
            }
            let scopes: Vec<&str> = list
                .get("scopes")
                .and_then(Value::as_array)
                .map(|s| s.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for s in &scopes {
                if !bot_scopes.contains(s) {
                    out.push(violation(
                        file,
                        format!("{path}/scopes"),
                        "commands.scope",
                        format!("scope {s:?} is not one of the bot's scopes"),
                    ));
                }
            }
            for (c, cmd) in commands.into_iter().flatten().enumerate() {
                let Some(title) = cmd.get("title").and_then(Value::as_str) else {
                    continue;
                };
                for s in &scopes {
                    let here = format!("{path}/commands/{c}/title");
                    if let Some(first) =
                        titles.insert((s.to_string(), title.to_lowercase()), here.clone())
                    {
                        out.push(violation(
                            file,
                            here,
                            "commands.unique",
                            format!("title {title:?} is already used in scope {s:?} at {first}"),
                        ));
                    }
                }
            }
        }
    }
    let mut entity_ids: Vec<&str> = Vec::new();
    for (n, tab) in m
        .get("staticTabs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let id = tab
            .get("entityId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if entity_ids.contains(&id) {
            out.push(violation(
                file,
                format!("/staticTabs/{n}/entityId"),
                "staticTabs.unique",
                format!("entityId {id:?} is used twice"),
            ));
        }
        entity_ids.push(id);
        let builtin = matches!(id, "conversations" | "about");
        if !builtin && (tab.get("name").is_none() || tab.get("contentUrl").is_none()) {
            out.push(violation(
                file,
                format!("/staticTabs/{n}"),
                "staticTabs.content",
                "a static tab needs a name and a contentUrl",
            ));
        }
        for key in ["contentUrl", "websiteUrl"] {
            if let Some(u) = tab.get(key) {
                if !is_https(u) {
                    out.push(violation(
                        file,
                        format!("/staticTabs/{n}/{key}"),
                        "https",
                        "Teams only loads https:// URLs",
                    ));
                }
            }
        }
    }
    for (n, tab) in m
        .get("configurableTabs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(u) = tab.get("configurationUrl") {
            if !is_https(u) {
                out.push(violation(
                    file,
                    format!("/configurableTabs/{n}/configurationUrl"),
                    "https",
                    "Teams only loads https:// URLs",
                ));
            }
        }
    }
    out
}

/// Limits written beside `$ref` in the localization schema, checked whatever the draft.
const LOCALIZED_LIMITS: &[(&str, usize)] = &[
    ("name.short", 30),
    ("name.full", 100),
    ("description.short", 80),
    ("description.full", 4000),
];

/// The localization file's own rules; with the manifest, also that every key names an element
/// that exists there.
pub fn localization_rules(file: &str, loc: &Value, manifest: Option<&Value>) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(obj) = loc.as_object() else {
        return out;
    };
    for (key, max) in LOCALIZED_LIMITS {
        if let Some(s) = obj.get(*key).and_then(Value::as_str) {
            let n = s.chars().count();
            if n > *max {
                out.push(violation(
                    file,
                    format!("/{key}"),
                    "maxLength",
                    format!("{n} characters, at most {max}"),
                ));
            }
        }
    }
    let Some(m) = manifest else {
        return out;
    };
    for key in obj.keys() {
        if key == "$schema" || LOCALIZED_LIMITS.iter().any(|(k, _)| k == key) {
            continue;
        }
        if localized_element(m, key).is_none() {
            out.push(violation(
                file,
                format!("/{key}"),
                "localization.key",
                "names no element of the manifest",
            ));
        }
    }
    out
}

/// `staticTabs[0].name` → the manifest value it overrides, if that element exists.
fn localized_element<'a>(m: &'a Value, key: &str) -> Option<&'a Value> {
    let mut cur = m;
    for part in key.split('.') {
        match part.split_once('[') {
            Some((name, rest)) => {
                cur = cur.get(name)?;
                for idx in rest.split('[') {
                    let i: usize = idx.trim_end_matches(']').parse().ok()?;
                    cur = cur.get(i)?;
                }
            }
            None => cur = cur.get(part)?,
        }
    }
    Some(cur)
}

/// Schema + own rules of a manifest.
pub fn check_manifest(file: &str, m: &Value) -> Vec<Violation> {
    let mut out = schema_errors(SchemaKind::Manifest, file, m);
    out.extend(manifest_rules(file, m));
    out
}

/// Schema + own rules of a localization file.
pub fn check_localization(file: &str, loc: &Value, manifest: Option<&Value>) -> Vec<Violation> {
    let mut out = schema_errors(SchemaKind::Localization, file, loc);
    // The schema (2019-09) already reports the same length limits: keep one line per problem.
    for v in localization_rules(file, loc, manifest) {
        if !out.iter().any(|o| o.path == v.path && o.rule == v.rule) {
            out.push(v);
        }
    }
    out
}

/// A whole package, as file name → bytes (names exactly as stored in the zip).
pub fn check_files(files: &BTreeMap<String, Vec<u8>>) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(bytes) = files.get("manifest.json") else {
        let nested = files.keys().find(|k| k.ends_with("/manifest.json"));
        let hint = nested
            .map(|n| format!(" (found {n:?}: zip the files, not their folder)"))
            .unwrap_or_default();
        out.push(violation(
            "manifest.json",
            "",
            "zip.layout",
            format!("manifest.json is not at the root of the zip{hint}"),
        ));
        return out;
    };
    let manifest: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            out.push(violation(
                "manifest.json",
                "",
                "json",
                format!("not JSON ({e})"),
            ));
            return out;
        }
    };
    out.extend(check_manifest("manifest.json", &manifest));
    let mut referenced: Vec<(String, String)> = Vec::new();
    for key in ["color", "outline", "color32x32"] {
        if let Some(f) = manifest
            .pointer(&format!("/icons/{key}"))
            .and_then(Value::as_str)
        {
            referenced.push((format!("/icons/{key}"), f.to_string()));
        }
    }
    let loc = manifest.get("localizationInfo");
    if let Some(f) = loc
        .and_then(|l| l.get("defaultLanguageFile"))
        .and_then(Value::as_str)
    {
        referenced.push((
            "/localizationInfo/defaultLanguageFile".into(),
            f.to_string(),
        ));
    }
    let languages = loc
        .and_then(|l| l.get("additionalLanguages"))
        .and_then(Value::as_array);
    for (n, lang) in languages.into_iter().flatten().enumerate() {
        if let Some(f) = lang.get("file").and_then(Value::as_str) {
            referenced.push((
                format!("/localizationInfo/additionalLanguages/{n}/file"),
                f.to_string(),
            ));
        }
    }
    for (path, name) in &referenced {
        let Some(content) = files.get(name) else {
            out.push(violation(
                "manifest.json",
                path.clone(),
                "zip.file",
                format!("{name:?} is not in the zip (names are case-sensitive)"),
            ));
            continue;
        };
        if path.starts_with("/icons/") {
            let icon = if path == "/icons/outline" {
                Some(super::icons::Icon::Outline)
            } else if path == "/icons/color" {
                Some(super::icons::Icon::Color)
            } else {
                None
            };
            if let Some(icon) = icon {
                if let Err(e) = super::icons::check(icon, content) {
                    out.push(violation(name, "", "icon", e.to_string()));
                }
            }
        } else {
            match serde_json::from_slice::<Value>(content) {
                Ok(doc) => out.extend(check_localization(name, &doc, Some(&manifest))),
                Err(e) => out.push(violation(name, "", "json", format!("not JSON ({e})"))),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_follows_the_schema_definition() {
        for ok in ["1.0.0", "0.1.10", "10.20.30"] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in [
            "1.0",
            "1.0.0-beta",
            "01.0.0",
            "1..0",
            "a.b.c",
            "1.0.0.0",
            "",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

    #[test]
    fn domains_are_host_names_with_at_most_a_wildcard_on_an_own_domain() {
        assert!(domain_problem("bridge.example.org").is_none());
        assert!(domain_problem("*.example.org").is_none());
        assert_eq!(
            domain_problem("https://bridge.example.org").unwrap().0,
            "validDomains.host"
        );
        assert_eq!(
            domain_problem("bridge.example.org:443").unwrap().0,
            "validDomains.host"
        );
        assert_eq!(domain_problem("*.org").unwrap().0, "validDomains.wildcard");
        assert_eq!(
            domain_problem("*.azurewebsites.net").unwrap().0,
            "validDomains.wildcard"
        );
        assert_eq!(
            domain_problem("a.*.example.org").unwrap().0,
            "validDomains.host"
        );
    }
}
