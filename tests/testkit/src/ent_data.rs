//! Generated SDET-style directory data (tests and benchmark): several schools and classes,
//! accented names, people without mail, duplicate logins and one hostile `*)(uid=*` value.

use base64::Engine;
use std::io::Write;

pub const SUFFIX: &str = "dc=ent,dc=example";
const FIRST: &[&str] = &[
    "Léa",
    "Hugo",
    "Chloé",
    "Noé",
    "Maëlys",
    "Éloïse",
    "Jean-Baptiste",
    "Inès",
    "Lucas",
    "Zoé",
    "Théo",
    "Anaïs",
];
const LAST: &[&str] = &[
    "Martin", "Lefèvre", "N'Diaye", "Le Goff", "Œillet", "Da Silva", "Château", "Dubois", "Nguyen",
    "Prévost", "Bernard", "Müller",
];
const CLASSES: &[&str] = &["6A", "6B", "6C", "5A", "5B", "5C", "4A", "4B", "3A", "3B"];

#[derive(Debug, Clone)]
pub struct Spec {
    pub people: usize,
    pub schools: usize,
    /// Every n-th person gets no mail.
    pub no_mail_every: usize,
    /// Every n-th person reuses the previous person's login.
    pub duplicate_login_every: usize,
    pub hostile: bool,
    /// Parents too (`ENTAuxPersRelEleve`): about one per pupil, see [`write_parents`].
    pub parents: bool,
}

impl Spec {
    pub fn new(people: usize) -> Self {
        Spec {
            people,
            schools: 4,
            no_mail_every: 7,
            duplicate_login_every: 500,
            hostile: true,
            parents: false,
        }
    }
}

pub fn siren(school: usize) -> String {
    format!("999{:05}00000", school + 1)
}

pub fn structure_dn(school: usize) -> String {
    format!("ENTStructureSIREN={},ou=structures,{SUFFIX}", siren(school))
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'é' | 'è' | 'ê' | 'ë' | 'É' => 'e',
            'à' | 'â' => 'a',
            'ï' | 'î' => 'i',
            'ô' | 'Œ' | 'œ' => 'o',
            'ü' => 'u',
            'ç' => 'c',
            c => c,
        })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect::<String>()
        .to_lowercase()
}

fn line(out: &mut impl Write, attr: &str, value: &str) -> std::io::Result<()> {
    if value.is_ascii() && !value.starts_with([' ', ':', '<']) {
        writeln!(out, "{attr}: {value}")
    } else {
        writeln!(
            out,
            "{attr}:: {}",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// What kind of person index `i` is.
pub fn role_of(i: usize) -> &'static str {
    match i % 20 {
        0 | 1 => "teacher",
        2 => "staff",
        _ => "student",
    }
}

pub fn uid(i: usize) -> String {
    format!("U{i:07}")
}

/// Login of person `i` as the directory holds it (before duplicates are applied).
pub fn login(i: usize) -> String {
    format!(
        "{}.{}{i}",
        ascii(FIRST[i % FIRST.len()]),
        ascii(LAST[(i / FIRST.len()) % LAST.len()])
    )
}

/// First name of person `i`.
pub fn first_name(i: usize) -> &'static str {
    FIRST[i % FIRST.len()]
}

pub fn class_of(i: usize) -> (usize, &'static str) {
    (i % 4, CLASSES[(i / 4) % CLASSES.len()])
}

/// Write the base entries (organisation, branches, schools).
pub fn write_base(out: &mut impl Write, spec: &Spec) -> std::io::Result<()> {
    writeln!(out, "dn: {SUFFIX}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\ndc: ent\no: ENT\n")?;
    for ou in ["people", "structures", "groups"] {
        writeln!(
            out,
            "dn: ou={ou},{SUFFIX}\nobjectClass: top\nobjectClass: organizationalUnit\nou: {ou}\n"
        )?;
    }
    for s in 0..spec.schools {
        writeln!(out, "dn: {}\nobjectClass: top\nobjectClass: ENTStructure\nobjectClass: ENTEtablissement\nENTStructureSIREN: {}\nENTStructureUAI: 999{:04}X\nENTStructureNomCourant: COLLEGE {s}\n", structure_dn(s), siren(s), s)?;
    }
    Ok(())
}

/// Write person `i`.
pub fn write_person(out: &mut impl Write, spec: &Spec, i: usize) -> std::io::Result<()> {
    let school = i % spec.schools.max(1);
    let (_, class) = class_of(i);
    let first = FIRST[i % FIRST.len()];
    let mut last = LAST[(i / FIRST.len()) % LAST.len()].to_string();
    if spec.hostile && i == 3 {
        last = "Test*)(uid=*".into();
    }
    let login = if spec.duplicate_login_every > 0 && i > 0 && i % spec.duplicate_login_every == 0 {
        login(i - 1)
    } else {
        login(i)
    };
    let role = role_of(i);
    writeln!(out, "dn: uid={},ou=people,{SUFFIX}", uid(i))?;
    writeln!(out, "objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\nobjectClass: ENTPerson")?;
    writeln!(
        out,
        "objectClass: {}",
        match role {
            "teacher" => "ENTAuxEnseignant",
            "staff" => "ENTAuxNonEnsEtab",
            _ => "ENTEleve",
        }
    )?;
    writeln!(out, "uid: {}", uid(i))?;
    line(out, "cn", &format!("{last} {first}"))?;
    line(out, "sn", &last)?;
    line(out, "givenName", first)?;
    writeln!(out, "ENTPersonLogin: {login}")?;
    writeln!(out, "ENTPersonJointure: AC-TEST${}", 4_000_000 + i)?;
    if spec.no_mail_every == 0 || i % spec.no_mail_every != 0 {
        writeln!(out, "mail: {login}@ent.example")?;
    }
    let s = structure_dn(school);
    match role {
        "teacher" => {
            writeln!(out, "ENTPersonProfils: National_ENS")?;
            writeln!(
                out,
                "ENTPersonFonctions: {s}$ENS$ENSEIGNEMENT$L1600$SCIENCES"
            )?;
            writeln!(out, "ENTAuxEnsClasses: {s}${class}")?;
            writeln!(
                out,
                "ENTAuxEnsClasses: {s}${}",
                CLASSES[(i / 7) % CLASSES.len()]
            )?;
        }
        "staff" => {
            writeln!(out, "ENTPersonProfils: National_EVS")?;
            writeln!(out, "ENTPersonFonctions: {s}$EDU$EDUCATION$-$VIE SCOLAIRE")?;
        }
        _ => {
            writeln!(out, "ENTPersonProfils: National_ELV")?;
            writeln!(out, "ENTEleveClasses: {s}${class}")?;
        }
    }
    writeln!(out)
}

/// The whole directory as one LDIF.
pub fn write_ldif(out: &mut impl Write, spec: &Spec) -> std::io::Result<()> {
    write_base(out, spec)?;
    for i in 0..spec.people {
        write_person(out, spec, i)?;
    }
    if spec.parents {
        write_parents(out, spec)?;
    }
    Ok(())
}

/// Person indices of the pupils, in order.
pub fn pupils(spec: &Spec) -> Vec<usize> {
    (0..spec.people)
        .filter(|i| role_of(*i) == "student")
        .collect()
}

/// Children of parent `j`: 1 to 3 consecutive pupils (siblings), so most pupils have two parents.
pub fn children_of_parent(pupils: &[usize], j: usize) -> Vec<usize> {
    (0..1 + j % 3)
        .map(|k| pupils[(j + k) % pupils.len()])
        .collect()
}

/// One parent per pupil (`National_TUT`, uid `P<j>`), listing their children in
/// `ENTAuxPersRelEleveEleve`; two in three have no mail, as in real directories.
pub fn write_parents(out: &mut impl Write, spec: &Spec) -> std::io::Result<()> {
    let pupils = pupils(spec);
    for j in 0..pupils.len() {
        let last = LAST[(j / FIRST.len()) % LAST.len()];
        writeln!(out, "dn: uid=P{j:07},ou=people,{SUFFIX}")?;
        writeln!(out, "objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\nobjectClass: ENTPerson\nobjectClass: ENTAuxPersRelEleve")?;
        writeln!(out, "uid: P{j:07}")?;
        line(out, "sn", last)?;
        line(out, "givenName", FIRST[(j * 7) % FIRST.len()])?;
        writeln!(out, "ENTPersonLogin: parent.{}{j}", ascii(last))?;
        writeln!(out, "ENTPersonJointure: AC-TEST${}", 8_000_000 + j)?;
        writeln!(out, "ENTPersonProfils: National_TUT")?;
        if j % 3 == 0 {
            writeln!(out, "mail: parent.{}{j}@famille.example", ascii(last))?;
        }
        for c in children_of_parent(&pupils, j) {
            writeln!(
                out,
                "ENTAuxPersRelEleveEleve: uid={},ou=people,{SUFFIX}",
                uid(c)
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Parent ↔ child links [`write_parents`] writes.
pub fn parent_links(spec: &Spec) -> usize {
    let n = pupils(spec).len();
    (0..n).map(|j| 1 + j % 3).sum()
}

/// People the sync should create: everyone but the duplicate logins.
pub fn expected_users(spec: &Spec) -> usize {
    let dups = if spec.duplicate_login_every == 0 {
        0
    } else {
        (1..spec.people)
            .filter(|i| i % spec.duplicate_login_every == 0)
            .count()
    };
    spec.people - dups
}

/// The sample school (`ent/sample-school.ldif`) with every login, mail and join key prefixed,
/// so each real-Moodle test brings people new to the shared lab.
pub fn prefixed_sample(prefix: &str) -> String {
    let text = crate::fixture("ent/sample-school.ldif");
    text.lines()
        .map(|l| {
            if let Some(v) = l.strip_prefix("ENTPersonLogin: ") {
                format!("ENTPersonLogin: {prefix}{v}")
            } else if let Some(v) = l.strip_prefix("mail: ") {
                format!("mail: {prefix}{v}")
            } else if let Some(v) = l.strip_prefix("ENTPersonJointure: ") {
                let (src, id) = v.split_once('$').unwrap();
                format!("ENTPersonJointure: {src}${prefix}{id}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
