//! The zip (`manifest.json`, `fr.json`, `color.png`, `outline.png`, all at the root) and where it
//! is kept: `teams-app/<version>.zip` in the blob store, with `teams-app/latest.json` naming the
//! newest. Without a pinned version, the patch number goes up whenever the generated content
//! changes (Teams only takes an update with a new version) and stays when nothing changed.

use super::icons::{self, Icon};
use super::manifest::{self, Inputs};
use super::validate;
use super::{TeamsAppError, CONTAINER};
use crate::settings::Settings;
use crate::store::BlobStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};

pub const LATEST: &str = "latest.json";
pub const ZIP_CONTENT_TYPE: &str = "application/zip";
/// A Teams package is a manifest, two icons and a language file: far below this.
const MAX_ZIP_BYTES: u64 = 8 * 1024 * 1024;

/// A built package: its files (zip entry name → bytes) and what identifies its content.
#[derive(Debug, Clone)]
pub struct Package {
    pub version: String,
    /// sha256 of everything but the version: equal hashes, nothing to publish.
    pub content_hash: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// What `latest.json` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    pub version: String,
    pub content_hash: String,
    /// Blob name of the zip inside the container.
    pub blob: String,
    pub built_at: String,
}

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).expect("JSON value serializes");
    out.push(b'\n');
    out
}

/// The icons: files named in the settings (checked) or drawn from the accent colour.
pub fn icons_for(
    settings: &Settings,
    inputs: &Inputs,
) -> Result<(Vec<u8>, Vec<u8>), TeamsAppError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| TeamsAppError::File {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    };
    let t = &settings.teams_app;
    let color = match &t.color_icon {
        Some(p) => read(p)?,
        None => icons::draw_color(&inputs.accent_color),
    };
    let outline = match &t.outline_icon {
        Some(p) => read(p)?,
        None => icons::draw_outline(),
    };
    icons::check(Icon::Color, &color)?;
    icons::check(Icon::Outline, &outline)?;
    Ok((color, outline))
}

/// All four files for `version`.
pub fn assemble(inputs: &Inputs, version: &str, color: &[u8], outline: &[u8]) -> Package {
    let mut files = BTreeMap::new();
    files.insert(
        "manifest.json".to_string(),
        pretty(&manifest::manifest(inputs, version)),
    );
    files.insert(
        manifest::FR_FILE.to_string(),
        pretty(&manifest::french(inputs)),
    );
    files.insert(manifest::COLOR_ICON.to_string(), color.to_vec());
    files.insert(manifest::OUTLINE_ICON.to_string(), outline.to_vec());
    let content_hash = content_hash(inputs, color, outline);
    Package {
        version: version.to_string(),
        content_hash,
        files,
    }
}

/// The hash of the package with its version left out.
pub fn content_hash(inputs: &Inputs, color: &[u8], outline: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [
        pretty(&manifest::manifest(inputs, "0.0.0")),
        pretty(&manifest::french(inputs)),
        color.to_vec(),
        outline.to_vec(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(&part);
    }
    hex::encode(h.finalize())
}

/// `1.4.2` → `1.4.3`.
pub fn bump_patch(version: &str) -> Option<String> {
    if !validate::is_semver(version) {
        return None;
    }
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    let (a, b, c) = (parts.next()??, parts.next()??, parts.next()??);
    Some(format!("{a}.{b}.{}", c + 1))
}

/// The version of a new build: pinned, or the latest one when the content is the same, or the
/// latest one bumped, or 1.0.0 for the first package.
pub fn next_version(pinned: Option<&str>, latest: Option<&Latest>, content_hash: &str) -> String {
    if let Some(v) = pinned {
        return v.to_string();
    }
    match latest {
        None => "1.0.0".to_string(),
        Some(l) if l.content_hash == content_hash => l.version.clone(),
        Some(l) => bump_patch(&l.version).unwrap_or_else(|| "1.0.0".to_string()),
    }
}

/// Deterministic zip: fixed timestamps, sorted names, so the same content gives the same bytes.
pub fn zip(p: &Package) -> Result<Vec<u8>, TeamsAppError> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (name, bytes) in &p.files {
        w.start_file(name.as_str(), options)
            .map_err(|e| TeamsAppError::Zip(e.to_string()))?;
        w.write_all(bytes)
            .map_err(|e| TeamsAppError::Zip(e.to_string()))?;
    }
    let cursor = w.finish().map_err(|e| TeamsAppError::Zip(e.to_string()))?;
    Ok(cursor.into_inner())
}

/// Entries of a zip, by their exact names (folders skipped).
pub fn unzip(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, TeamsAppError> {
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| TeamsAppError::Zip(format!("not a zip ({e})")))?;
    let mut out = BTreeMap::new();
    let mut total = 0u64;
    for i in 0..a.len() {
        let mut f = a
            .by_index(i)
            .map_err(|e| TeamsAppError::Zip(e.to_string()))?;
        if f.is_dir() {
            continue;
        }
        total = total.saturating_add(f.size());
        if total > MAX_ZIP_BYTES {
            return Err(TeamsAppError::Zip(format!(
                "more than {MAX_ZIP_BYTES} bytes unpacked: not a Teams app package"
            )));
        }
        let name = f.name().to_string();
        let mut buf = Vec::new();
        f.by_ref()
            .take(MAX_ZIP_BYTES)
            .read_to_end(&mut buf)
            .map_err(|e| TeamsAppError::Zip(format!("{name}: {e}")))?;
        out.insert(name, buf);
    }
    Ok(out)
}

/// Unzip and check every rule; the violations, empty when the package is good.
pub fn check_zip(bytes: &[u8]) -> Result<Vec<validate::Violation>, TeamsAppError> {
    Ok(validate::check_files(&unzip(bytes)?))
}

pub fn zip_name(version: &str) -> String {
    format!("{version}.zip")
}

pub async fn latest(blobs: &dyn BlobStore) -> Result<Option<Latest>, TeamsAppError> {
    match blobs.get(CONTAINER, LATEST).await? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| TeamsAppError::Zip(format!("{CONTAINER}/{LATEST} is not readable ({e})"))),
    }
}

/// A stored package: the zip and its `latest.json` description.
#[derive(Debug, Clone)]
pub struct Built {
    pub latest: Latest,
    pub zip: Vec<u8>,
    /// False when the latest package already had this content and version.
    pub changed: bool,
}

/// Build, check and store the package; the check runs on the zip's own entries, so what is
/// stored is exactly what was validated.
pub async fn build_and_store(
    settings: &Settings,
    blobs: &dyn BlobStore,
) -> Result<Built, TeamsAppError> {
    let inputs = Inputs::from_settings(settings)?;
    let (color, outline) = icons_for(settings, &inputs)?;
    let hash = content_hash(&inputs, &color, &outline);
    let previous = latest(blobs).await?;
    let version = next_version(
        settings.teams_app.version.as_deref(),
        previous.as_ref(),
        &hash,
    );
    let package = assemble(&inputs, &version, &color, &outline);
    let bytes = zip(&package)?;
    let violations = check_zip(&bytes)?;
    if !violations.is_empty() {
        return Err(TeamsAppError::Invalid(violations));
    }
    let changed = previous
        .as_ref()
        .is_none_or(|l| l.content_hash != hash || l.version != version);
    let latest = Latest {
        blob: zip_name(&version),
        version,
        content_hash: hash,
        built_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    blobs
        .put(CONTAINER, &latest.blob, bytes.clone(), ZIP_CONTENT_TYPE)
        .await?;
    let marker = serde_json::to_vec_pretty(&latest).expect("serializes");
    blobs
        .put(CONTAINER, LATEST, marker, "application/json")
        .await?;
    Ok(Built {
        latest,
        zip: bytes,
        changed,
    })
}

/// The newest stored package, if one was built.
pub async fn load_latest(blobs: &dyn BlobStore) -> Result<Option<Built>, TeamsAppError> {
    let Some(l) = latest(blobs).await? else {
        return Ok(None);
    };
    let zip = blobs.get(CONTAINER, &l.blob).await?.ok_or_else(|| {
        TeamsAppError::Zip(format!(
            "{CONTAINER}/{} is named as latest but missing",
            l.blob
        ))
    })?;
    Ok(Some(Built {
        latest: l,
        zip,
        changed: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_pinned_kept_or_bumped() {
        let l = Latest {
            version: "1.2.9".into(),
            content_hash: "aa".into(),
            blob: "1.2.9.zip".into(),
            built_at: String::new(),
        };
        assert_eq!(next_version(None, None, "aa"), "1.0.0");
        assert_eq!(next_version(None, Some(&l), "aa"), "1.2.9");
        assert_eq!(next_version(None, Some(&l), "bb"), "1.2.10");
        assert_eq!(next_version(Some("3.0.0"), Some(&l), "bb"), "3.0.0");
    }
}
