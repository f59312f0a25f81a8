//! A course's team names: the display name from the configured template, and a mailNickname
//! that Graph accepts and no other course can have (the course id is part of it).

use super::settings::{NameField, TeamsSettings};
use crate::moodle::courses::Course;

/// Teams' limit on a team's display name.
pub const MAX_DISPLAY_NAME: usize = 256;
/// Exchange's limit on a group alias.
pub const MAX_NICKNAME: usize = 64;

pub fn display_name(s: &TeamsSettings, c: &Course) -> String {
    let base = match s.name_field {
        NameField::Fullname if !c.fullname.trim().is_empty() => c.fullname.trim(),
        NameField::Idnumber if !c.idnumber.trim().is_empty() => c.idnumber.trim(),
        _ => c.shortname.trim(),
    };
    let name = format!("{}{}{}", s.name_prefix, base, s.name_suffix);
    let name = name.trim();
    name.chars().take(MAX_DISPLAY_NAME).collect()
}

/// `<prefix><course id>-<shortname letters>`: only ASCII letters, digits, `-`, `_`, `.`
/// (accents folded, everything else dropped), at most 64 characters, never ending with a dot.
pub fn mail_nickname(s: &TeamsSettings, c: &Course) -> String {
    let mut slug = String::new();
    for ch in c.shortname.chars() {
        match fold(ch) {
            Some(f) => slug.push(f),
            None if !slug.ends_with('-') => slug.push('-'),
            None => {}
        }
    }
    let slug = slug.trim_matches(|c| c == '-' || c == '.');
    let mut out = format!("{}{}", s.nickname_prefix, c.id);
    if !slug.is_empty() {
        out.push('-');
        out.push_str(slug);
    }
    let mut out: String = out.chars().take(MAX_NICKNAME).collect();
    while out.ends_with(['.', '-']) {
        out.pop();
    }
    out
}

/// Description of the team: also the course marker that tells our team from a namesake.
pub fn description(c: &Course) -> String {
    format!("{} {}", c.shortname.trim(), course_marker(c.id.get()))
}

pub fn course_marker(course_id: i64) -> String {
    format!("(Moodle course {course_id})")
}

fn fold(c: char) -> Option<char> {
    if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
        return Some(c);
    }
    let base = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => 'A',
        'ç' => 'c',
        'Ç' => 'C',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'È' | 'É' | 'Ê' | 'Ë' => 'E',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'Ì' | 'Í' | 'Î' | 'Ï' => 'I',
        'ñ' => 'n',
        'Ñ' => 'N',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => 'O',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'Ù' | 'Ú' | 'Û' | 'Ü' => 'U',
        'ý' | 'ÿ' => 'y',
        _ => return None,
    };
    Some(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MoodleCourseId;

    fn course(id: i64, short: &str, full: &str, idnumber: &str) -> Course {
        Course {
            id: MoodleCourseId::new(id).unwrap(),
            shortname: short.into(),
            fullname: full.into(),
            idnumber: idnumber.into(),
            categoryid: None,
            visible: Some(1),
            enddate: Some(0),
            format: "topics".into(),
        }
    }

    #[test]
    fn the_display_name_follows_the_template_and_falls_back_to_the_shortname() {
        let mut s = TeamsSettings::default();
        let c = course(2, "MATH-TG1", "Mathématiques — Terminale", "");
        assert_eq!(display_name(&s, &c), "Mathématiques — Terminale");
        s.name_prefix = "2026 ".into();
        s.name_suffix = " (Moodle)".into();
        s.name_field = NameField::Idnumber;
        assert_eq!(display_name(&s, &c), "2026 MATH-TG1 (Moodle)");
        s.name_field = NameField::Shortname;
        let long = course(3, &"x".repeat(300), "", "");
        assert_eq!(display_name(&s, &long).chars().count(), MAX_DISPLAY_NAME);
    }

    #[test]
    fn the_mail_nickname_is_valid_and_unique_per_course() {
        let s = TeamsSettings::default();
        let a = mail_nickname(&s, &course(12, "Maths 2nde B (été)", "", ""));
        assert_eq!(a, "moodle-12-Maths-2nde-B-ete");
        let b = mail_nickname(&s, &course(13, "Maths 2nde B (été)", "", ""));
        assert_ne!(a, b, "same shortname, two courses");
        let long = mail_nickname(&s, &course(99, &"é@ .".repeat(40), "", ""));
        assert!(long.len() <= MAX_NICKNAME && !long.ends_with('.'), "{long}");
        for n in [a, b, long] {
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{n}"
            );
        }
    }
}
