//! How a directory entry becomes a Moodle user record: the key, the fields and their sources,
//! the auth plugin and the placeholder e-mail domain.

use crate::config::Source;

/// Where a Moodle field comes from: `attr`, `attr:last` (last `$`-part), `attr:N` (N-th `$`-part, from 0),
/// `attr:after$` (everything after the first `$`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldSource {
    pub attr: String,
    pub part: Part,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    Whole,
    Last,
    Index(usize),
    AfterFirst,
}

impl FieldSource {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (attr, part) =
            match s.split_once(':') {
                None => (s, Part::Whole),
                Some((a, "last")) => (a, Part::Last),
                Some((a, "after$")) => (a, Part::AfterFirst),
                Some((a, n)) => (
                    a,
                    Part::Index(n.parse().map_err(|_| {
                        format!("{s:?}: use attr, attr:last, attr:after$ or attr:N")
                    })?),
                ),
            };
        if attr.is_empty()
            || !attr
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';')
        {
            return Err(format!("{s:?} is not an attribute name"));
        }
        Ok(FieldSource {
            attr: attr.to_string(),
            part,
        })
    }

    pub fn describe(&self) -> String {
        match &self.part {
            Part::Whole => self.attr.clone(),
            Part::Last => format!("{}:last", self.attr),
            Part::Index(n) => format!("{}:{n}", self.attr),
            Part::AfterFirst => format!("{}:after$", self.attr),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldMapping {
    pub key: String,
    pub username: FieldSource,
    pub idnumber: Option<FieldSource>,
    pub firstname: FieldSource,
    pub lastname: FieldSource,
    pub email: Option<FieldSource>,
    pub institution: Option<FieldSource>,
    pub department: Option<FieldSource>,
    /// Moodle profile field shortname → source.
    pub custom: Vec<(String, FieldSource)>,
    pub auth: String,
    /// Domain of the placeholder address given to entries without mail (Moodle requires one).
    pub fake_email_domain: String,
}

/// A field's source; `-` (or empty) for none, a parse failure is a named problem.
fn field(src: &mut Source, name: &str, default: &str, what: &str) -> Option<FieldSource> {
    let raw = src.string(
        name,
        default,
        &format!("{what} (attribute, attr:last, attr:after$ or attr:N; `-` for none)"),
    );
    if raw == "-" || raw.is_empty() {
        return None;
    }
    match FieldSource::parse(&raw) {
        Ok(f) => Some(f),
        Err(e) => {
            src.problem(format!("{name}: {e}"));
            None
        }
    }
}

/// None when a field every Moodle user needs is switched off (the problem is recorded).
pub(super) fn load(src: &mut Source) -> Option<FieldMapping> {
    let key = src.string(
        "SYNC_MAP_KEY",
        "uid",
        "stable source key of a person (RDN attribute)",
    );
    let username = field(
        src,
        "SYNC_MAP_USERNAME",
        "ENTPersonLogin",
        "Moodle username (lowercased)",
    );
    let idnumber = field(
        src,
        "SYNC_MAP_IDNUMBER",
        "ENTPersonJointure:after$",
        "Moodle idnumber",
    );
    let firstname = field(src, "SYNC_MAP_FIRSTNAME", "givenName", "Moodle first name");
    let lastname = field(src, "SYNC_MAP_LASTNAME", "sn", "Moodle last name");
    let email = field(src, "SYNC_MAP_EMAIL", "mail", "Moodle e-mail");
    let institution = field(src, "SYNC_MAP_INSTITUTION", "-", "Moodle institution");
    let department = field(
        src,
        "SYNC_MAP_DEPARTMENT",
        "ENTPersonFonctions:last",
        "Moodle department",
    );
    let custom_raw = src.string(
        "SYNC_MAP_CUSTOM",
        "",
        "custom profile fields: shortname=attribute[,shortname=attribute…]",
    );
    let mut custom = Vec::new();
    for pair in custom_raw
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match pair
            .split_once('=')
            .map(|(k, v)| (k.trim(), FieldSource::parse(v)))
        {
            Some((k, Ok(f))) if !k.is_empty() => custom.push((k.to_string(), f)),
            Some((_, Err(e))) => src.problem(format!("SYNC_MAP_CUSTOM: {e}")),
            _ => src.problem(format!(
                "SYNC_MAP_CUSTOM: {pair:?} is not shortname=attribute"
            )),
        }
    }
    let auth = src.string(
        "SYNC_USER_AUTH",
        "cas",
        "Moodle auth plugin of created users (cas, ldap, shibboleth, manual…)",
    );
    let fake_email_domain = src.string(
        "SYNC_FAKE_EMAIL_DOMAIN",
        "no-mail.invalid",
        "domain of the placeholder e-mail of people without mail",
    );
    let (Some(username), Some(firstname), Some(lastname)) = (username, firstname, lastname) else {
        src.problem("SYNC_MAP_USERNAME, SYNC_MAP_FIRSTNAME and SYNC_MAP_LASTNAME cannot be `-`");
        return None;
    };
    Some(FieldMapping {
        key,
        username,
        idnumber,
        firstname,
        lastname,
        email,
        institution,
        department,
        custom,
        auth,
        fake_email_domain,
    })
}
