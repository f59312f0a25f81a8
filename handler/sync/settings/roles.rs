//! Role assignments given from directory attributes, and the Moodle role ids they need.

use crate::config::Source;
use crate::ids::MoodleRoleId;
use crate::moodle::roles::ContextLevel;

/// `attribute|level|role|template`: each value of `attribute` (`<structure>$<code>[$…]`) gives
/// `role` in the context whose idnumber is `template` with `{school}` / `{code}` / `{value}` filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRule {
    pub attr: String,
    pub level: ContextLevel,
    pub role: String,
    pub template: String,
}

impl RoleRule {
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('|').map(str::trim).collect();
        let [attr, level, role, template] = parts.as_slice() else {
            return Err(format!(
                "{s:?}: expected attribute|course or coursecat|role shortname|idnumber template"
            ));
        };
        let level: ContextLevel = level.parse()?;
        Ok(RoleRule {
            attr: attr.to_string(),
            level,
            role: role.to_string(),
            template: template.to_string(),
        })
    }
}

pub(super) struct Roles {
    pub rules: Vec<RoleRule>,
    pub ids: Vec<(String, MoodleRoleId)>,
}

pub(super) fn load(src: &mut Source) -> Roles {
    let rules_raw = src.string(
        "SYNC_ROLE_RULES",
        "ENTAuxEnsClasses|course|editingteacher|{school}${code}",
        "role assignments: attribute|course or coursecat|role shortname|context idnumber template, separated by ;",
    );
    let mut rules = Vec::new();
    for r in rules_raw
        .split(';')
        .map(str::trim)
        .filter(|r| !r.is_empty() && *r != "-")
    {
        match RoleRule::parse(r) {
            Ok(r) => rules.push(r),
            Err(e) => src.problem(format!("SYNC_ROLE_RULES: {e}")),
        }
    }
    let ids_raw = src.string(
        "SYNC_ROLE_IDS",
        "manager=1,coursecreator=2,editingteacher=3,teacher=4,student=5",
        "Moodle role ids by shortname (Moodle's web services cannot list them)",
    );
    let mut ids = Vec::new();
    for pair in ids_raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=').and_then(|(k, v)| {
            v.trim()
                .parse::<MoodleRoleId>()
                .ok()
                .map(|v| (k.trim().to_string(), v))
        }) {
            Some(p) => ids.push(p),
            None => src.problem(format!("SYNC_ROLE_IDS: {pair:?} is not shortname=id")),
        }
    }
    for r in &rules {
        if !ids.iter().any(|(k, _)| k == &r.role) {
            src.problem(format!(
                "SYNC_ROLE_RULES: role {:?} has no id in SYNC_ROLE_IDS",
                r.role
            ));
        }
    }
    Roles { rules, ids }
}
