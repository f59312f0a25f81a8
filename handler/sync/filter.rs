//! RFC 4515 filters: escaping of every value that comes from the directory or a user before it
//! goes into a filter, and a small evaluator so file sources (LDIF, CSV) select people with the
//! same population filters as the LDAP server does.

use std::collections::BTreeMap;

/// Escape a value for use inside a filter assertion (`*`, `(`, `)`, `\`, NUL, non-ASCII kept as UTF-8).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// `(attr=value)` with the value escaped.
pub fn equals(attr: &str, value: &str) -> String {
    format!("({attr}={})", escape(value))
}

/// The population filter, optionally narrowed to entries changed since `since` (GeneralizedTime).
pub fn with_since(filter: &str, since: Option<&str>) -> String {
    match since {
        None => filter.to_string(),
        Some(ts) => format!("(&{filter}(modifyTimestamp>={}))", escape(ts)),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Present(String),
    Equal(String, String),
    /// initial, any…, final
    Substring(String, Option<String>, Vec<String>, Option<String>),
    GreaterOrEqual(String, String),
    LessOrEqual(String, String),
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, String> {
        let s = s.trim();
        let chars: Vec<char> = s.chars().collect();
        let (f, used) = parse_at(&chars, 0)?;
        if used != chars.len() {
            return Err(format!("trailing text after filter at {used}"));
        }
        Ok(f)
    }

    /// Evaluate against an entry's attributes (names compared case-insensitively, values too,
    /// like the usual caseIgnoreMatch of names and logins).
    pub fn matches(&self, attrs: &BTreeMap<String, Vec<String>>) -> bool {
        let values = |name: &str| -> Vec<&String> {
            attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.iter())
                .collect()
        };
        match self {
            Filter::And(v) => v.iter().all(|f| f.matches(attrs)),
            Filter::Or(v) => v.iter().any(|f| f.matches(attrs)),
            Filter::Not(f) => !f.matches(attrs),
            Filter::Present(a) => !values(a).is_empty(),
            Filter::Equal(a, want) => values(a)
                .iter()
                .any(|v| v.to_lowercase() == want.to_lowercase()),
            Filter::GreaterOrEqual(a, want) => {
                values(a).iter().any(|v| v.as_str() >= want.as_str())
            }
            Filter::LessOrEqual(a, want) => values(a).iter().any(|v| v.as_str() <= want.as_str()),
            Filter::Substring(a, initial, any, fin) => values(a).iter().any(|v| {
                let v = v.to_lowercase();
                let mut rest: &str = &v;
                if let Some(i) = initial {
                    let i = i.to_lowercase();
                    match rest.strip_prefix(i.as_str()) {
                        Some(r) => rest = r,
                        None => return false,
                    }
                }
                for part in any {
                    let p = part.to_lowercase();
                    match rest.find(p.as_str()) {
                        Some(pos) => rest = &rest[pos + p.len()..],
                        None => return false,
                    }
                }
                match fin {
                    Some(f) => rest.ends_with(f.to_lowercase().as_str()),
                    None => true,
                }
            }),
        }
    }
}

fn parse_at(c: &[char], mut i: usize) -> Result<(Filter, usize), String> {
    if c.get(i) != Some(&'(') {
        return Err(format!("expected '(' at {i}"));
    }
    i += 1;
    match c.get(i) {
        Some('&') | Some('|') => {
            let op = c[i];
            i += 1;
            let mut items = Vec::new();
            while c.get(i) == Some(&'(') {
                let (f, n) = parse_at(c, i)?;
                items.push(f);
                i = n;
            }
            if c.get(i) != Some(&')') {
                return Err(format!("expected ')' at {i}"));
            }
            Ok((
                if op == '&' {
                    Filter::And(items)
                } else {
                    Filter::Or(items)
                },
                i + 1,
            ))
        }
        Some('!') => {
            let (f, n) = parse_at(c, i + 1)?;
            if c.get(n) != Some(&')') {
                return Err(format!("expected ')' at {n}"));
            }
            Ok((Filter::Not(Box::new(f)), n + 1))
        }
        _ => {
            let start = i;
            while i < c.len() && c[i] != ')' {
                if c[i] == '(' {
                    return Err(format!("unescaped '(' in a value at {i}"));
                }
                i += 1;
            }
            if i >= c.len() {
                return Err("missing ')'".into());
            }
            let item: String = c[start..i].iter().collect();
            Ok((parse_item(&item)?, i + 1))
        }
    }
}

fn unescape(v: &str) -> Result<String, String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = v.get(i + 1..i + 3).ok_or("bad escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape \\{hex}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "escaped value is not UTF-8".to_string())
}

fn parse_item(item: &str) -> Result<Filter, String> {
    let (attr, op, value) = if let Some((a, v)) = item.split_once(">=") {
        (a, ">=", v)
    } else if let Some((a, v)) = item.split_once("<=") {
        (a, "<=", v)
    } else if let Some((a, v)) = item.split_once('=') {
        (a, "=", v)
    } else {
        return Err(format!("{item:?} has no operator"));
    };
    let attr = attr.trim().to_string();
    if attr.is_empty()
        || !attr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';' || c == '.')
    {
        return Err(format!("{attr:?} is not an attribute description"));
    }
    match op {
        ">=" => Ok(Filter::GreaterOrEqual(attr, unescape(value)?)),
        "<=" => Ok(Filter::LessOrEqual(attr, unescape(value)?)),
        _ if value == "*" => Ok(Filter::Present(attr)),
        _ if value.contains('*') => {
            let parts: Vec<&str> = value.split('*').collect();
            let initial = (!parts[0].is_empty())
                .then(|| unescape(parts[0]))
                .transpose()?;
            let last = parts[parts.len() - 1];
            let fin = (!last.is_empty()).then(|| unescape(last)).transpose()?;
            let any = parts[1..parts.len() - 1]
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| unescape(p))
                .collect::<Result<_, _>>()?;
            Ok(Filter::Substring(attr, initial, any, fin))
        }
        _ => Ok(Filter::Equal(attr, unescape(value)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    #[test]
    fn hostile_value_is_escaped_and_matches_only_itself() {
        let f = equals("sn", "Test*)(uid=*");
        assert_eq!(f, "(sn=Test\\2a\\29\\28uid=\\2a)");
        let parsed = Filter::parse(&f).unwrap();
        assert!(parsed.matches(&entry(&[("sn", "Test*)(uid=*")])));
        assert!(!parsed.matches(&entry(&[("sn", "Testeur")])));
        assert!(Filter::parse("(sn=Test*)(uid=*)").is_err());
    }

    #[test]
    fn evaluates_population_filters() {
        let e = entry(&[
            ("objectClass", "ENTEleve"),
            ("ENTEleveClasses", "ENTStructureSIREN=1,ou=s$6A"),
            ("modifyTimestamp", "20250102030405Z"),
        ]);
        assert!(Filter::parse("(objectClass=enteleve)").unwrap().matches(&e));
        assert!(
            Filter::parse("(&(objectClass=ENTEleve)(ENTEleveClasses=*=1,*))")
                .unwrap()
                .matches(&e)
        );
        assert!(!Filter::parse("(!(objectClass=ENTEleve))")
            .unwrap()
            .matches(&e));
        assert!(
            Filter::parse(&with_since("(objectClass=*)", Some("20250101000000Z")))
                .unwrap()
                .matches(&e)
        );
        assert!(
            !Filter::parse(&with_since("(objectClass=*)", Some("20250201000000Z")))
                .unwrap()
                .matches(&e)
        );
    }
}
