//! Offline intent recognition in French and English: normalised words (lower case, accents
//! folded), keyword and synonym lists, and typo tolerance (Damerau–Levenshtein distance 1 for
//! words of 4–7 letters, 2 from 8). No model, no network: LUIS is retired.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Help,
    Courses,
    Assignments,
    Grades,
    /// Teacher: who has not submitted an assignment; `query` is what names the assignment.
    Missing {
        query: String,
    },
    /// Parent: "mes enfants", "my children".
    Children,
    Unknown,
}

/// Whom a question is about: the asker, "my children" / "my son", or someone named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum About {
    Me,
    MyChildren,
    /// Name words (normalised), e.g. "lea" for "les devoirs de Léa".
    Named(String),
}

/// Lower case, accents folded, punctuation to spaces.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        let folded = match c {
            'à' | 'â' | 'ä' | 'á' | 'ã' => "a",
            'é' | 'è' | 'ê' | 'ë' => "e",
            'î' | 'ï' | 'í' => "i",
            'ô' | 'ö' | 'ó' | 'õ' => "o",
            'ù' | 'û' | 'ü' | 'ú' => "u",
            'ÿ' => "y",
            'ç' => "c",
            'œ' => "oe",
            'æ' => "ae",
            '\'' | '’' => " ",
            c if c.is_alphanumeric() => {
                out.push(c);
                continue;
            }
            _ => " ",
        };
        out.push_str(folded);
    }
    out
}

pub fn words(text: &str) -> Vec<String> {
    normalize(text)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

const COURSES: &[&str] = &[
    "cours",
    "course",
    "courses",
    "class",
    "classes",
    "matiere",
    "matieres",
    "subject",
    "subjects",
    "enrolled",
    "inscrit",
    "inscrite",
    "inscriptions",
    "enrolments",
    "enrollments",
];
const ASSIGNMENTS: &[&str] = &[
    "devoir",
    "devoirs",
    "dm",
    "rendre",
    "echeance",
    "echeances",
    "travail",
    "travaux",
    "exercice",
    "exercices",
    "deadline",
    "deadlines",
    "assignment",
    "assignments",
    "homework",
    "homeworks",
    "due",
    "todo",
    "task",
    "tasks",
    "soon",
    "bientot",
    "semaine",
    "week",
    "retard",
    "retards",
    "overdue",
    "late",
    "rendu",
    "rendus",
];
const GRADES: &[&str] = &[
    "note",
    "notes",
    "resultat",
    "resultats",
    "moyenne",
    "moyennes",
    "bulletin",
    "evaluation",
    "evaluations",
    "grade",
    "grades",
    "mark",
    "marks",
    "score",
    "scores",
    "result",
    "results",
    "gradebook",
    "average",
];
const HELP: &[&str] = &[
    "aide",
    "aider",
    "help",
    "bonjour",
    "salut",
    "hello",
    "hi",
    "hey",
    "menu",
    "start",
    "commencer",
    "commandes",
    "commands",
    "options",
    "coucou",
];
/// Words that say "my child".
const CHILD_WORDS: &[&str] = &[
    "enfant",
    "enfants",
    "fils",
    "fille",
    "filles",
    "son",
    "sons",
    "daughter",
    "daughters",
    "child",
    "children",
    "childs",
    "kid",
    "kids",
];
/// Words around a name that are not one (both languages).
const NOT_NAMES: &[&str] = &[
    "le",
    "la",
    "les",
    "l",
    "de",
    "du",
    "des",
    "d",
    "un",
    "une",
    "mon",
    "ma",
    "mes",
    "ton",
    "ta",
    "tes",
    "sa",
    "ses",
    "leur",
    "leurs",
    "notre",
    "nos",
    "votre",
    "vos",
    "et",
    "ou",
    "a",
    "au",
    "aux",
    "en",
    "pour",
    "par",
    "sur",
    "dans",
    "avec",
    "est",
    "sont",
    "quel",
    "quels",
    "quelle",
    "quelles",
    "que",
    "qui",
    "quoi",
    "comment",
    "ce",
    "cette",
    "ces",
    "cet",
    "moi",
    "je",
    "j",
    "tu",
    "il",
    "elle",
    "nous",
    "vous",
    "ils",
    "elles",
    "voir",
    "montre",
    "montrer",
    "donne",
    "affiche",
    "liste",
    "tous",
    "toutes",
    "tout",
    "svp",
    "stp",
    "merci",
    "prochain",
    "prochains",
    "prochaine",
    "prochaines",
    "aujourd",
    "hui",
    "demain",
    "my",
    "his",
    "her",
    "their",
    "our",
    "your",
    "the",
    "an",
    "of",
    "for",
    "to",
    "in",
    "on",
    "at",
    "is",
    "are",
    "what",
    "which",
    "when",
    "how",
    "show",
    "me",
    "please",
    "thanks",
    "and",
    "or",
    "s",
    "t",
    "i",
    "am",
    "do",
    "does",
    "have",
    "has",
    "any",
    "all",
    "see",
    "list",
    "next",
    "this",
    "today",
    "tomorrow",
    "moodle",
    "teams",
    "what",
    "whats",
    "give",
    "get",
    "tell",
    "about",
    "sur",
    "concernant",
];
/// Words after which a name comes ("les devoirs de Léa", "grades for Hugo").
const NAME_BEFORE: &[&str] = &["de", "d", "of", "for", "pour"];

/// Words that say "who" / "not submitted": removed from the assignment query.
const MISSING_NOISE: &[&str] = &[
    "qui",
    "n",
    "ont",
    "a",
    "pas",
    "non",
    "rendu",
    "rendus",
    "remis",
    "manquant",
    "manquants",
    "manque",
    "eleves",
    "etudiants",
    "le",
    "la",
    "les",
    "du",
    "de",
    "des",
    "devoir",
    "who",
    "has",
    "have",
    "not",
    "hasn",
    "haven",
    "didn",
    "t",
    "submitted",
    "submit",
    "handed",
    "in",
    "missing",
    "students",
    "the",
    "for",
    "assignment",
    "yet",
    "s",
    "pour",
    "encore",
    "l",
    "d",
    "mon",
    "my",
];

fn distance(a: &str, b: &str) -> usize {
    // Optimal string alignment distance (Levenshtein + adjacent transposition).
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[n][m]
}

/// Does `word` mean `keyword`, allowing a typo or two on longer words?
pub fn close(word: &str, keyword: &str) -> bool {
    if word == keyword {
        return true;
    }
    let len = word.chars().count().min(keyword.chars().count());
    let allowed = match len {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    };
    allowed > 0
        && word.chars().count().abs_diff(keyword.chars().count()) <= allowed
        && distance(word, keyword) <= allowed
}

fn hits(words: &[String], list: &[&str]) -> usize {
    words
        .iter()
        .filter(|w| list.iter().any(|k| close(w, k)))
        .count()
}

fn is_missing_question(w: &[String]) -> bool {
    let has = |k: &str| w.iter().any(|x| close(x, k));
    let negated = has("pas")
        || has("non")
        || w.iter()
            .any(|x| x == "not" || x == "hasn" || x == "haven" || x == "didn");
    let handed = has("rendu")
        || has("rendus")
        || has("remis")
        || has("submitted")
        || has("submit")
        || has("handed");
    (negated && handed) || has("manquant") || has("manquants") || has("missing")
}

pub fn recognize(text: &str) -> Intent {
    let w = words(text);
    if w.is_empty() {
        return Intent::Help;
    }
    if is_missing_question(&w) {
        let query: Vec<&str> = w
            .iter()
            .map(String::as_str)
            .filter(|x| !MISSING_NOISE.iter().any(|n| n == x))
            .collect();
        return Intent::Missing {
            query: query.join(" "),
        };
    }
    let scores = [
        (hits(&w, GRADES), Intent::Grades),
        (hits(&w, ASSIGNMENTS), Intent::Assignments),
        (hits(&w, COURSES), Intent::Courses),
        (hits(&w, HELP), Intent::Help),
    ];
    // Highest score wins; on a tie the earlier (more specific) intent wins.
    let mut best: Option<&(usize, Intent)> = None;
    for s in &scores {
        if s.0 > 0 && best.is_none_or(|b| s.0 > b.0) {
            best = Some(s);
        }
    }
    match best.map(|b| b.1.clone()) {
        None | Some(Intent::Help) if hits(&w, CHILD_WORDS) > 0 => Intent::Children,
        Some(i) => i,
        None => Intent::Unknown,
    }
}

fn is_keyword(word: &str) -> bool {
    [COURSES, ASSIGNMENTS, GRADES, HELP, CHILD_WORDS, NOT_NAMES]
        .iter()
        .any(|list| list.contains(&word))
}

/// Whom `text` asks about. A name is a word that is no keyword and comes after "de" / "of" /
/// "for"…, before an English "'s", or capitalised after the first word; "mes enfants", "my son"…
/// without a name are [`About::MyChildren`].
pub fn about(text: &str) -> About {
    // Original words (case kept) beside their normalised forms, split the same way.
    let original: Vec<String> = text
        .replace(['\'', '’'], " ")
        .split(|c: char| !c.is_alphanumeric())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let w: Vec<String> = original.iter().map(|o| normalize(o)).collect();
    let mut names: Vec<&str> = Vec::new();
    for (i, word) in w.iter().enumerate() {
        if word.chars().count() < 2 || word.chars().all(|c| c.is_ascii_digit()) || is_keyword(word)
        {
            continue;
        }
        let after_preposition = i > 0 && NAME_BEFORE.contains(&w[i - 1].as_str());
        let before_possessive = w.get(i + 1).is_some_and(|n| n == "s");
        let capitalised = i > 0 && original[i].chars().next().is_some_and(char::is_uppercase);
        if after_preposition || before_possessive || capitalised {
            names.push(word);
        }
    }
    if !names.is_empty() {
        return About::Named(names.join(" "));
    }
    if hits(&w, CHILD_WORDS) > 0 {
        About::MyChildren
    } else {
        About::Me
    }
}

/// How well a free-text query names `candidate` (share of query words found in it, typos allowed).
pub fn match_score(query: &str, candidate: &str) -> f64 {
    let q = words(query);
    if q.is_empty() {
        return 0.0;
    }
    let c = words(candidate);
    let found = q
        .iter()
        .filter(|qw| c.iter().any(|cw| close(qw, cw)))
        .count();
    found as f64 / q.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_synonyms_and_typos() {
        assert_eq!(recognize("mes notes"), Intent::Grades);
        assert_eq!(recognize("My grades please"), Intent::Grades);
        assert_eq!(recognize("mes résultats"), Intent::Grades);
        assert_eq!(recognize("mes ntoes"), Intent::Grades);
        assert_eq!(recognize("devoirs de la semaine"), Intent::Assignments);
        assert_eq!(recognize("what is due soon?"), Intent::Assignments);
        assert_eq!(recognize("homwork"), Intent::Assignments);
        assert_eq!(recognize("Mes cours"), Intent::Courses);
        assert_eq!(recognize("which classes am I enrolled in"), Intent::Courses);
        assert_eq!(recognize("aide"), Intent::Help);
        assert_eq!(recognize("Bonjour"), Intent::Help);
        assert_eq!(recognize("blorp"), Intent::Unknown);
        assert_eq!(
            recognize("Qui n'a pas rendu le devoir 1 Fonctions ?"),
            Intent::Missing {
                query: "1 fonctions".into()
            }
        );
        assert_eq!(
            recognize("who has not submitted Lab report 0"),
            Intent::Missing {
                query: "lab report 0".into()
            }
        );
    }

    #[test]
    fn who_a_parent_asks_about() {
        assert_eq!(recognize("mes enfants"), Intent::Children);
        assert_eq!(recognize("my children"), Intent::Children);
        assert_eq!(recognize("les devoirs de Léa"), Intent::Assignments);
        assert_eq!(recognize("grades of my son"), Intent::Grades);
        assert_eq!(recognize("notes de mon fils"), Intent::Grades);
        assert_eq!(about("les devoirs de Léa"), About::Named("lea".into()));
        assert_eq!(about("Les notes d'Hugo"), About::Named("hugo".into()));
        assert_eq!(about("What is Léa's homework?"), About::Named("lea".into()));
        assert_eq!(
            about("homework for Hugo Bernard"),
            About::Named("hugo bernard".into())
        );
        assert_eq!(about("grades of my son"), About::MyChildren);
        assert_eq!(about("notes de mon fils"), About::MyChildren);
        assert_eq!(about("Mes enfants"), About::MyChildren);
        assert_eq!(about("mes devoirs de la semaine"), About::Me);
        assert_eq!(about("Mes notes"), About::Me);
        assert_eq!(about("what is due for the next 7 days"), About::Me);
    }

    #[test]
    fn query_matching_tolerates_accents_and_typos() {
        assert!(match_score("probabilites", "Devoir 2 — Probabilités") > 0.99);
        assert!(match_score("fonctons", "Devoir 1 — Fonctions") > 0.99);
        assert!(match_score("kinematics", "Devoir 1 — Fonctions") < 0.01);
    }
}
