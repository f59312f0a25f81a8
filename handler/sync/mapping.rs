//! Directory entry → typed record, following the configured attribute mapping. Values are
//! trimmed; composite SDET values (`<structure>$<code>$…`) are split on `$`.

use super::record::{CohortRef, PersonRecord, RoleRef};
use super::settings::{CohortSourceKind, FieldSource, Part, SyncSettings};
use super::source::Entry;
use crate::moodle::users::{column_chars, cut_chars, UserFields};
use std::collections::BTreeSet;

fn pick(entry: &Entry, f: &FieldSource) -> Option<String> {
    let v = entry.first(&f.attr)?.trim();
    let out = match &f.part {
        Part::Whole => v.to_string(),
        Part::Last => v.rsplit('$').next().unwrap_or(v).to_string(),
        Part::Index(n) => v.split('$').nth(*n)?.to_string(),
        Part::AfterFirst => match v.split_once('$') {
            // local_ent_installer keeps the part after the first `$` (and drops a third part)
            Some((_, rest)) => rest.split('$').next().unwrap_or(rest).to_string(),
            None => v.to_string(),
        },
    };
    let out = out.trim().to_string();
    (!out.is_empty()).then_some(out)
}

/// Structure part of a composite value: the first RDN's value of a DN, else the raw id.
pub fn structure_id(s: &str) -> String {
    if s.contains('=') {
        Entry::rdn_value(s).unwrap_or(s).to_string()
    } else {
        s.trim().to_string()
    }
}

/// `<structure>$<code>[$…]` → (structure id, code). The structure part is opaque (DN or id).
pub fn split_composite(value: &str) -> Option<(String, String)> {
    let (s, rest) = value.split_once('$')?;
    let code = rest.split('$').next().unwrap_or(rest).trim();
    if s.trim().is_empty() || code.is_empty() {
        return None;
    }
    Some((structure_id(s), code.to_string()))
}

/// Moodle's PARAM_USERNAME: lowercase ASCII letters, digits and `_ - . @`.
pub fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 100
        && u.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.@".contains(c))
}

pub fn plausible_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((l, d)) => {
            !l.is_empty()
                && d.contains('.')
                && !d.starts_with('.')
                && !d.ends_with('.')
                && !e.contains(char::is_whitespace)
                && !d.contains('@')
        }
        None => false,
    }
}

/// A planned deletion date as ENT directories write it: `dd/mm/yyyy` (AAF feeds), ISO
/// `yyyy-mm-dd`, or LDAP GeneralizedTime (`yyyymmdd[HHMMSS[Z]]`).
pub fn parse_date(v: &str) -> Option<chrono::NaiveDate> {
    use chrono::NaiveDate;
    let v = v.trim();
    NaiveDate::parse_from_str(v, "%d/%m/%Y")
        .or_else(|_| NaiveDate::parse_from_str(v, "%Y-%m-%d"))
        .ok()
        .or_else(|| {
            let digits = v
                .get(..8)
                .filter(|d| d.chars().all(|c| c.is_ascii_digit()))?;
            NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
        })
}

/// Map one entry; `Err(reason)` means skip it.
pub fn map_person(s: &SyncSettings, entry: &Entry) -> Result<PersonRecord, String> {
    let m = &s.mapping;
    let key = entry
        .first(&m.key)
        .map(str::to_string)
        .or_else(|| Entry::rdn_value(&entry.dn).map(str::to_string))
        .ok_or_else(|| format!("no {} value", m.key))?;
    if s.skip_declared_duplicates {
        if let Some(dn) = entry.first("seeAlso") {
            // The ENT's marker of a merged account: syncing it would fight the real person
            // over one Moodle account (local_ent_installer skips it too).
            return Err(format!(
                "declared duplicate (seeAlso {dn}): not synced (SYNC_DECLARED_DUPLICATES=skip)"
            ));
        }
    }
    let mut notes = Vec::new();
    let username_raw = pick(entry, &m.username)
        .ok_or_else(|| format!("no {} (username)", m.username.describe()))?;
    let username = username_raw.to_lowercase();
    if username.chars().count() > 100 {
        // Cutting a login would make it someone else's: refuse it instead.
        return Err(format!(
            "username {username_raw:?} is longer than Moodle's 100 characters"
        ));
    }
    if !valid_username(&username) {
        return Err(format!(
            "username {username_raw:?} has characters Moodle refuses (allowed: a-z 0-9 _ - . @)"
        ));
    }
    let firstname = pick(entry, &m.firstname)
        .ok_or_else(|| format!("no {} (first name)", m.firstname.describe()))?;
    let lastname = pick(entry, &m.lastname)
        .ok_or_else(|| format!("no {} (last name)", m.lastname.describe()))?;
    let mut shortened = Vec::new();
    let placeholder = |notes: &mut Vec<String>| {
        let mut local = username.clone();
        let room = 100usize.saturating_sub(m.fake_email_domain.chars().count() + 1);
        if let Some(c) = cut_chars(&local, room) {
            local = c;
        }
        let e = format!("{local}@{}", m.fake_email_domain);
        notes.push(format!("no mail: placeholder {e}"));
        e
    };
    let email = match m.email.as_ref().and_then(|f| pick(entry, f)) {
        Some(e) if !plausible_email(&e) => {
            return Err(format!("e-mail {e:?} is not a valid address"))
        }
        // A cut address would reach someone else (or no one): use the placeholder instead.
        Some(e) if e.chars().count() > 100 => {
            shortened.push(format!(
                "email: {} characters, over Moodle's 100: placeholder used instead",
                e.chars().count()
            ));
            placeholder(&mut notes)
        }
        Some(e) => e,
        None => placeholder(&mut notes),
    };
    let mut fit = |field: &str, value: String| -> String {
        let max = column_chars(field).unwrap_or(usize::MAX);
        match cut_chars(&value, max) {
            Some(c) => {
                shortened.push(format!(
                    "{field}: cut from {} to {max} characters (Moodle's column width)",
                    value.chars().count()
                ));
                c
            }
            None => value,
        }
    };
    let firstname = fit("firstname", firstname);
    let lastname = fit("lastname", lastname);
    let opt = |f: &Option<FieldSource>| f.as_ref().and_then(|f| pick(entry, f)).unwrap_or_default();
    let idnumber = fit("idnumber", opt(&m.idnumber));
    let institution = fit("institution", opt(&m.institution));
    let department = fit("department", opt(&m.department));
    let fields = UserFields {
        username,
        firstname,
        lastname,
        email,
        idnumber,
        institution,
        department,
        auth: m.auth.clone(),
        custom: m
            .custom
            .iter()
            .map(|(name, f)| (name.clone(), pick(entry, f).unwrap_or_default()))
            .collect(),
    };
    let mut cohorts = BTreeSet::new();
    if let CohortSourceKind::Attribute(attr) = &s.cohorts.kind {
        for v in entry.all(attr) {
            match split_composite(v) {
                Some((school, class)) => {
                    let name = format!("{class} ({school})");
                    cohorts.insert(CohortRef {
                        key: format!("{school}${class}"),
                        // mdl_cohort.name is 254 characters wide.
                        name: cut_chars(&name, 254).unwrap_or(name),
                    });
                }
                None => notes.push(format!(
                    "{attr} value {v:?} is not <structure>$<class>: ignored"
                )),
            }
        }
    }
    let mut roles = BTreeSet::new();
    for rule in &s.role_rules {
        for v in entry.all(&rule.attr) {
            let Some((school, code)) = split_composite(v) else {
                notes.push(format!(
                    "{} value {v:?} is not <structure>$<code>: ignored",
                    rule.attr
                ));
                continue;
            };
            let context = rule
                .template
                .replace("{school}", &school)
                .replace("{code}", &code)
                .replace("{value}", v);
            roles.insert(RoleRef {
                role: rule.role.clone(),
                level: rule.level,
                context,
            });
        }
    }
    let leaves_on = match s.leavers.date_attr.as_ref().and_then(|a| entry.first(a)) {
        Some(v) => {
            let d = parse_date(v);
            if d.is_none() {
                notes.push(format!(
                    "planned deletion date {v:?} is not a date: ignored"
                ));
            }
            d
        }
        None => None,
    };
    Ok(PersonRecord {
        key,
        dn: entry.dn.clone(),
        fields,
        cohorts,
        roles,
        held_roles: BTreeSet::new(),
        leaves_on,
        notes,
        shortened,
        conflicts: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut e = Entry::new("uid=F0100001,ou=people,dc=ent,dc=example");
        e.push("uid", "F0100001");
        e.push("ENTPersonLogin", "Lea.Martin");
        e.push("givenName", "Léa");
        e.push("sn", "Martin");
        e.push("ENTPersonJointure", "AC-TEST$1234567");
        e.push(
            "ENTEleveClasses",
            "ENTStructureSIREN=99900100000016,ou=structures,dc=ent,dc=example$6A",
        );
        e.push("ENTEleveClasses", "4567$ULIS-A");
        e
    }

    #[test]
    fn maps_sdet_values() {
        let s = SyncSettings::default();
        let r = map_person(&s, &entry()).unwrap();
        assert_eq!(r.key, "F0100001");
        assert_eq!(r.fields.username, "lea.martin");
        assert_eq!(r.fields.idnumber, "1234567");
        assert_eq!(r.fields.email, "lea.martin@no-mail.invalid");
        let keys: Vec<_> = r.cohorts.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["4567$ULIS-A", "99900100000016$6A"]);
    }

    #[test]
    fn planned_deletion_dates_in_the_formats_ent_directories_use() {
        let d = chrono::NaiveDate::from_ymd_opt(2025, 8, 31).unwrap();
        for v in ["31/08/2025", "2025-08-31", "20250831", "20250831000000Z"] {
            assert_eq!(parse_date(v), Some(d), "{v}");
        }
        assert_eq!(parse_date("31/13/2025"), None);
        assert_eq!(parse_date("bientôt"), None);
        let s = SyncSettings::default();
        let mut e = entry();
        e.push("ENTPersonDateSuppression", "31/08/2025");
        let r = map_person(&s, &e).unwrap();
        assert!(r.has_left(d));
        assert!(!r.has_left(d.pred_opt().unwrap()));
        assert_eq!(map_person(&s, &entry()).unwrap().leaves_on, None);
    }

    #[test]
    fn refuses_bad_usernames_and_missing_names() {
        let s = SyncSettings::default();
        let mut e = entry();
        e.attrs
            .insert("entpersonlogin".into(), vec!["léa.martin".into()]);
        assert!(map_person(&s, &e).unwrap_err().contains("characters"));
        let mut e = entry();
        e.attrs.remove("sn");
        assert!(map_person(&s, &e).unwrap_err().contains("last name"));
    }

    #[test]
    fn long_values_are_cut_in_characters_and_long_addresses_replaced() {
        let s = SyncSettings::default();
        let mut e = entry();
        e.attrs.insert("givenname".into(), vec!["é".repeat(100)]);
        e.attrs.insert("sn".into(), vec!["Ä".repeat(101)]);
        e.attrs.insert(
            "mail".into(),
            vec![format!("{}@ent.example", "x".repeat(95))],
        );
        let r = map_person(&s, &e).unwrap();
        assert_eq!(
            r.fields.firstname,
            "é".repeat(100),
            "200 bytes, 100 characters: kept"
        );
        assert_eq!(r.fields.lastname, "Ä".repeat(100));
        assert_eq!(r.fields.email, "lea.martin@no-mail.invalid");
        assert_eq!(r.shortened.len(), 2, "{:?}", r.shortened);
        let mut e = entry();
        e.push("seeAlso", "uid=F0100099,ou=people,dc=ent,dc=example");
        assert!(map_person(&s, &e)
            .unwrap_err()
            .contains("declared duplicate"));
    }
}
