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
