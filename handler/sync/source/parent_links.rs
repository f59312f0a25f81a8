//! Parent ↔ child links, read from whichever side the directory fills: the parent's list of
//! children (`ENTAuxPersRelEleveEleve`) or the pupils' back-links (`ENTEleveParents`,
//! `ENTEleveAutoriteParentale`). One search per chunk of parents fetches every pupil either side
//! names. A link one side states while the other side is filled and says otherwise is a
//! contradiction: reported, and held as Moodle has it, never guessed.

use super::{Entry, Query};
use crate::moodle::roles::ContextLevel;
use crate::sync::filter::equals;
use crate::sync::record::{PersonRecord, RoleRef};
use crate::sync::settings::{SyncSettings, BACK_LINK_ATTRS, CHILDREN_ATTR, PARENT_CLASS};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// DNs compared as the directory would: case-insensitive, spaces around separators ignored.
fn norm(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| match rdn.split_once('=') {
            Some((a, v)) => format!("{}={}", a.trim(), v.trim()),
            None => rdn.trim().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// Carries the parent object class (a teacher who is also a parent does too).
pub fn is_parent(e: &Entry) -> bool {
    e.all("objectClass")
        .iter()
        .any(|c| c.eq_ignore_ascii_case(PARENT_CLASS))
}

fn children_named(parent: &Entry) -> Vec<&str> {
    parent
        .all(CHILDREN_ATTR)
        .iter()
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
        .collect()
}

/// The one search for these parents' pupils: those naming a parent, and those a parent names.
pub fn pupils_query(s: &SyncSettings, parents: &[&Entry]) -> Query {
    let mut any = String::new();
    for p in parents {
        for attr in BACK_LINK_ATTRS {
            any.push_str(&equals(attr, &p.dn));
        }
        for child in children_named(p) {
            let first = child.split(',').next().unwrap_or_default();
            if let Some((attr, value)) = first.split_once('=') {
                any.push_str(&equals(attr.trim(), value.trim()));
            }
        }
    }
    let mut attrs = vec![s.mapping.key.clone(), "objectClass".to_string()];
    attrs.extend(BACK_LINK_ATTRS.iter().map(|a| a.to_string()));
    Query {
        base: s.parents.pupils_base.clone(),
        filter: format!("(|{any})"),
        since: None,
        attrs,
    }
}

/// File sources: every entry of the pupils' base, for one read of the export per pass.
pub fn all_pupils_query(s: &SyncSettings) -> Query {
    let mut attrs = vec![s.mapping.key.clone(), "objectClass".to_string()];
    attrs.extend(BACK_LINK_ATTRS.iter().map(|a| a.to_string()));
    Query {
        base: s.parents.pupils_base.clone(),
        filter: "(objectClass=*)".to_string(),
        since: None,
        attrs,
    }
}

/// The pupil-side facts of an export file, read once per pass: an export is one snapshot, so one
/// read answers every chunk of parents (re-reading the file for each chunk of 100 parents made a
/// 90,000-entry export quadratic). Keeps each entry's key by DN, and back-links where there are.
#[derive(Debug, Default)]
pub struct FileIndex {
    key_by_dn: HashMap<String, String>,
    back_links: HashMap<String, Vec<(&'static str, String)>>,
    named_by: HashMap<String, Vec<String>>,
}

impl FileIndex {
    pub fn add(&mut self, s: &SyncSettings, e: &Entry) {
        let dn = norm(&e.dn);
        let key = e
            .first(&s.mapping.key)
            .or_else(|| Entry::rdn_value(&e.dn))
            .unwrap_or(&e.dn)
            .to_string();
        let mut backs = Vec::new();
        for attr in BACK_LINK_ATTRS {
            for v in e.all(attr).iter().filter(|v| !v.trim().is_empty()) {
                self.named_by.entry(norm(v)).or_default().push(dn.clone());
                backs.push((attr, v.clone()));
            }
        }
        if !backs.is_empty() {
            self.back_links.insert(dn.clone(), backs);
        }
        self.key_by_dn.insert(dn, key);
    }

    fn entry(&self, s: &SyncSettings, dn: &str) -> Option<Entry> {
        let key = self.key_by_dn.get(dn)?;
        let mut e = Entry::new(dn);
        e.push(&s.mapping.key, key.clone());
        for (attr, v) in self.back_links.get(dn).into_iter().flatten() {
            e.push(attr, v.clone());
        }
        Some(e)
    }

    /// What [`pupils_query`] would find for these parents: the pupils they name, and those
    /// naming them.
    pub fn pupils_for(&self, s: &SyncSettings, parents: &[&Entry]) -> Vec<Entry> {
        let mut dns = BTreeSet::new();
        for p in parents {
            dns.extend(children_named(p).into_iter().map(norm));
            dns.extend(
                self.named_by
                    .get(&norm(&p.dn))
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        dns.iter().filter_map(|dn| self.entry(s, dn)).collect()
    }
}

/// What the directory says about one parent's children.
#[derive(Debug, Default, PartialEq)]
pub struct Links {
    /// Children's source keys, linked.
    pub children: BTreeSet<String>,
    /// Children whose link the two sides disagree on.
    pub disputed: BTreeSet<String>,
    pub conflicts: Vec<String>,
}

pub fn links(s: &SyncSettings, parent: &Entry, pupils: &[Entry]) -> Links {
    let me = norm(&parent.dn);
    let named: BTreeSet<String> = children_named(parent).iter().map(|d| norm(d)).collect();
    let by_dn: BTreeMap<String, &Entry> = pupils.iter().map(|p| (norm(&p.dn), p)).collect();
    let key_of = |e: &Entry| {
        e.first(&s.mapping.key)
            .or_else(|| Entry::rdn_value(&e.dn))
            .unwrap_or(&e.dn)
            .to_string()
    };
    let mut out = Links::default();
    for (dn, pupil) in &by_dn {
        let backs: BTreeSet<String> = BACK_LINK_ATTRS
            .iter()
            .flat_map(|a| pupil.all(a))
            .filter(|v| !v.trim().is_empty())
            .map(|v| norm(v))
            .collect();
        let parent_says = named.contains(dn);
        let child_says = backs.contains(&me);
        if !parent_says && !child_says {
            continue;
        }
        let key = key_of(pupil);
        if parent_says == child_says {
            out.children.insert(key);
        } else if parent_says && !backs.is_empty() {
            out.conflicts.push(format!(
                "{} lists {key} as a child, but {key}'s {} name other parents: link left as it is",
                parent.dn,
                BACK_LINK_ATTRS.join("/")
            ));
            out.disputed.insert(key);
        } else if child_says && !named.is_empty() {
            out.conflicts.push(format!(
                "{key} names {} as a parent, but its {CHILDREN_ATTR} does not list {key}: link left as it is",
                parent.dn
            ));
            out.disputed.insert(key);
        } else {
            // Only one side is filled in this directory: it is the authority.
            out.children.insert(key);
        }
    }
    // A child the parent names who is not in the directory (or outside the people base): the link
    // stands and waits for an account, keyed by the value of the child's first RDN.
    for dn in named.iter().filter(|dn| !by_dn.contains_key(*dn)) {
        if let Some(key) = children_named(parent)
            .into_iter()
            .find(|d| norm(d) == *dn)
            .and_then(Entry::rdn_value)
        {
            out.children.insert(key.to_string());
        }
    }
    out
}

/// Give the record its links as parent role assignments in the children's user contexts.
pub fn attach(s: &SyncSettings, r: &mut PersonRecord, links: Links) {
    let role = |child: String| RoleRef {
        role: s.parents.role.clone(),
        level: ContextLevel::User,
        context: child,
    };
    r.roles.extend(links.children.into_iter().map(role));
    r.held_roles.extend(links.disputed.into_iter().map(role));
    r.conflicts.extend(links.conflicts);
}
