//! Where settings come from: process environment first, then `local.settings.json` `Values`
//! (the file `func start` reads), so one file serves both the Functions tooling and `handler serve`.
//! Every read is recorded, so `handler settings` and the infra cross-check list the real set.

use super::secret::Secret;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One documented setting, recorded the first time a loader reads it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SettingDoc {
    pub name: String,
    pub secret: bool,
    pub description: String,
    /// The value used when the setting is absent, if there is one.
    pub default: Option<String>,
}

#[derive(Debug, Default)]
pub struct Source {
    env: BTreeMap<String, String>,
    file: BTreeMap<String, String>,
    problems: Vec<String>,
    read: BTreeMap<String, SettingDoc>,
    seen: BTreeSet<String>,
    /// Folder relative paths are resolved against: the settings file's folder.
    base_dir: Option<PathBuf>,
}

impl Source {
    pub fn from_process() -> Self {
        Self::from_map(std::env::vars().collect())
    }

    /// The process environment over `local.settings.json` in the working directory, or over the
    /// file `BRIDGE_SETTINGS_FILE` names.
    pub fn from_process_and_file() -> Self {
        let src = Self::from_process();
        let file = src
            .platform("BRIDGE_SETTINGS_FILE")
            .unwrap_or_else(|| "local.settings.json".into());
        src.with_local_settings(Path::new(&file))
    }

    pub fn from_map(env: BTreeMap<String, String>) -> Self {
        Source {
            env,
            ..Default::default()
        }
    }

    /// Layer `local.settings.json` under the environment. A missing file is fine; a broken one is a problem.
    pub fn with_local_settings(mut self, path: &Path) -> Self {
        // Resolved once, so a run started from another folder finds the same store and files.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.base_dir = absolute.parent().map(Path::to_path_buf);
        match std::fs::read_to_string(path) {
            Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => {
                    if let Some(values) = v.get("Values").and_then(|v| v.as_object()) {
                        for (k, v) in values {
                            let s = match v {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            self.file.insert(k.clone(), s);
                        }
                    }
                }
                Err(e) => self
                    .problems
                    .push(format!("{}: not valid JSON ({e})", path.display())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => self
                .problems
                .push(format!("{}: cannot be read ({e})", path.display())),
        }
        self
    }

    fn record(&mut self, name: &str, secret: bool, description: &str) {
        self.read.entry(name.to_string()).or_insert(SettingDoc {
            name: name.to_string(),
            secret,
            description: description.to_string(),
            default: None,
        });
    }

    fn record_default(&mut self, name: &str, default: String) {
        if let Some(doc) = self.read.get_mut(name) {
            doc.default.get_or_insert(default);
        }
    }

    fn raw(&mut self, name: &str) -> Option<String> {
        self.seen.insert(name.to_string());
        let v = self
            .env
            .get(name)
            .or_else(|| self.file.get(name))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())?;
        // App Service hands the literal reference text to the app when it cannot resolve it;
        // using it as a password or token would fail later in a far less clear way.
        if v.starts_with("@Microsoft.KeyVault(") {
            self.problem(format!(
                "{name}: the Key Vault reference was not resolved (check that the app's identity may read the secret)"
            ));
            return None;
        }
        Some(v)
    }

    /// An optional plain setting.
    pub fn opt(&mut self, name: &str, description: &str) -> Option<String> {
        self.record(name, false, description);
        self.raw(name)
    }

    /// A plain setting with a default.
    pub fn string(&mut self, name: &str, default: &str, description: &str) -> String {
        let v = self.opt(name, description);
        self.record_default(name, default.to_string());
        v.unwrap_or_else(|| default.to_string())
    }

    /// A file or folder path with a default; a relative value is taken from the settings file's
    /// folder (not the working directory), so every run of one deployment sees the same files.
    pub fn path(&mut self, name: &str, default: &str, description: &str) -> PathBuf {
        let p = PathBuf::from(self.string(name, default, description));
        match &self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        }
    }

    /// The folder relative paths are resolved against, when a settings file was layered in.
    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }

    /// An optional secret: recorded as secret so docs and dumps never show it.
    pub fn secret(&mut self, name: &str, description: &str) -> Option<Secret> {
        self.record(name, true, description);
        let value = self.raw(name)?;
        // Known from the start, so any remote text echoing it is scrubbed (`crate::redact`).
        crate::redact::register(&value);
        Some(Secret::new(value))
    }

    /// A parsed setting with a default; a value that does not parse is a problem, named.
    pub fn parse<T: FromStr + std::fmt::Display>(
        &mut self,
        name: &str,
        default: T,
        description: &str,
    ) -> T
    where
        T::Err: std::fmt::Display,
    {
        let v = self.opt(name, description);
        self.record_default(name, default.to_string());
        match v {
            None => default,
            Some(v) => match v.parse::<T>() {
                Ok(t) => t,
                Err(e) => {
                    self.problem(format!("{name}: cannot parse {v:?} ({e})"));
                    default
                }
            },
        }
    }

    pub fn flag(&mut self, name: &str, default: bool, description: &str) -> bool {
        let v = self.opt(name, description);
        self.record_default(name, default.to_string());
        match v.as_deref() {
            None => default,
            Some("1" | "true" | "True" | "TRUE" | "yes" | "on") => true,
            Some("0" | "false" | "False" | "FALSE" | "no" | "off") => false,
            Some(other) => {
                self.problem(format!("{name}: expected true or false, got {other:?}"));
                default
            }
        }
    }

    /// One of a closed set of values (`off`, `suspend`, `delete`…); absent: `default`. Any other
    /// value is a problem naming the allowed ones, and gives None: the caller says what the
    /// remaining checks assume (the load fails anyway).
    pub fn choice<T: Copy>(
        &mut self,
        name: &str,
        default: &str,
        allowed: &[(&str, T)],
        description: &str,
    ) -> Option<T> {
        debug_assert!(
            allowed.iter().any(|(label, _)| *label == default),
            "{name}: default {default:?} is not among the allowed values"
        );
        let v = self.string(name, default, description);
        match pick(&v, allowed) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(format!("{name}: {e}"));
                None
            }
        }
    }

    /// A value the hosting platform gives the process (the Functions host's port, the Lambda
    /// runtime API, the settings file's path): from the environment only, so a copy left in
    /// `local.settings.json` cannot switch the binary into a hosted mode, and not listed by
    /// `handler settings` (nobody sets it as an app setting).
    pub fn platform(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// A setting that must be there when its feature is on.
    pub fn required(&mut self, name: &str, description: &str) -> Option<String> {
        let v = self.opt(name, description);
        if v.is_none() {
            self.problem(format!("{name}: required ({description})"));
        }
        v
    }

    pub fn required_secret(&mut self, name: &str, description: &str) -> Option<Secret> {
        let v = self.secret(name, description);
        if v.is_none() {
            self.problem(format!("{name}: required ({description})"));
        }
        v
    }

    /// A URL that must parse and use one of the allowed schemes.
    pub fn url(&mut self, name: &str, schemes: &[&str], description: &str) -> Option<url::Url> {
        let raw = self.opt(name, description)?;
        match url::Url::parse(&raw) {
            Ok(u) if schemes.contains(&u.scheme()) => Some(u),
            Ok(u) => {
                self.problem(format!(
                    "{name}: scheme {:?} not allowed (use one of {})",
                    u.scheme(),
                    schemes.join(", ")
                ));
                None
            }
            Err(e) => {
                self.problem(format!("{name}: not a URL ({e})"));
                None
            }
        }
    }

    pub fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }

    /// Every setting the loaders know, in name order.
    pub fn documented(&self) -> Vec<SettingDoc> {
        self.read.values().cloned().collect()
    }
}

/// `value` among the `allowed` labels (exact spelling); the error lists them all:
/// `"purge" is not off, suspend or delete`.
pub fn pick<T: Copy>(value: &str, allowed: &[(&str, T)]) -> Result<T, String> {
    if let Some((_, t)) = allowed.iter().find(|(label, _)| *label == value) {
        return Ok(*t);
    }
    let labels: Vec<&str> = allowed.iter().map(|(label, _)| *label).collect();
    let listed = match labels.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "nothing".to_string(),
    };
    Err(format!("{value:?} is not {listed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(pairs: &[(&str, &str)]) -> Source {
        Source::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Mode {
        Off,
        Suspend,
        Delete,
    }

    const MODES: &[(&str, Mode)] = &[
        ("off", Mode::Off),
        ("suspend", Mode::Suspend),
        ("delete", Mode::Delete),
    ];

    #[test]
    fn a_choice_takes_one_of_its_values_and_names_them_all_otherwise() {
        let mut src = source(&[("A", "suspend"), ("B", "Delete"), ("C", " delete ")]);
        assert_eq!(src.choice("A", "off", MODES, "a"), Some(Mode::Suspend));
        // Exact spelling: what the operator wrote is what the docs show.
        assert_eq!(src.choice("B", "off", MODES, "b"), None);
        assert_eq!(src.choice("C", "off", MODES, "c"), Some(Mode::Delete));
        assert_eq!(
            src.choice("ABSENT", "off", MODES, "absent"),
            Some(Mode::Off)
        );
        assert_eq!(
            src.take_problems(),
            ["B: \"Delete\" is not off, suspend or delete"]
        );
        let doc = src
            .documented()
            .into_iter()
            .find(|d| d.name == "ABSENT")
            .unwrap();
        assert_eq!(doc.default.as_deref(), Some("off"));
        assert_eq!(
            pick("x", &[("keep", 1), ("remove", 2)]),
            Err("\"x\" is not keep or remove".to_string())
        );
        assert_eq!(
            pick("x", &[("only", 1)]),
            Err("\"x\" is not only".to_string())
        );
    }

    #[test]
    fn platform_values_come_from_the_environment_only_and_are_not_documented() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("local.settings.json");
        std::fs::write(&file, r#"{"Values":{"IN_FILE":"f"}}"#).unwrap();
        let mut src = source(&[("IN_ENV", " e ")]).with_local_settings(&file);
        assert_eq!(src.platform("IN_ENV").as_deref(), Some("e"));
        assert_eq!(src.platform("IN_FILE"), None);
        assert_eq!(
            src.opt("IN_FILE", "read as a setting").as_deref(),
            Some("f")
        );
        let names: Vec<String> = src.documented().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["IN_FILE"]);
    }
}
