//! School names for class cohorts: a class value carries the school as a structure id (the
//! SIREN in `ENTStructureSIREN=…`), which means nothing to a teacher picking a cohort. The
//! structure entries hold the school's name (`ENTStructureNomCourant`); they are read once per
//! pass, and only when a cohort is about to be created.

use super::settings::SyncSettings;
use super::source::{self, Entry, Query, SourceError};
use std::collections::HashMap;

/// Structure id (first RDN value of its entry, as in class values) → school name.
pub async fn load(s: &SyncSettings) -> Result<HashMap<String, String>, SourceError> {
    let Some(attr) = s.cohorts.school_name_attr.clone() else {
        return Ok(HashMap::new());
    };
    let query = Query {
        base: s.cohorts.structures_base.clone(),
        filter: "(objectClass=ENTStructure)".into(),
        since: None,
        attrs: vec![attr.clone()],
    };
    let (mut rx, handle) = source::spawn_read(s, query);
    let mut names = HashMap::new();
    while let Some(e) = rx.recv().await {
        if let (Some(id), Some(name)) = (Entry::rdn_value(&e.dn), e.first(&attr)) {
            names.insert(id.to_string(), name.trim().to_string());
        }
    }
    match handle.await {
        Ok(r) => r.map(|_| names),
        Err(e) => Err(SourceError::Ldap(format!("structure reader crashed: {e}"))),
    }
}

/// `3A (COLLÈGE SIMONE VEIL)` for the cohort key `<structure>$<class>` when the school is
/// known; the name the source gave otherwise.
pub fn cohort_name(key: &str, fallback: &str, names: &HashMap<String, String>) -> String {
    match key.split_once('$') {
        Some((school, class)) => match names.get(school) {
            Some(name) if !name.is_empty() => format!("{class} ({name})"),
            _ => fallback.to_string(),
        },
        None => fallback.to_string(),
    }
}
