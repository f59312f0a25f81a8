//! French and English texts. One `match` per message keeps both languages side by side.

use chrono::{FixedOffset, TimeZone};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    /// `fr`, `fr-FR`, `fr-CA`… → French; `en-*` → English; anything else → None (use the fallback).
    pub fn from_locale(locale: &str) -> Option<Lang> {
        let primary = locale
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match primary.as_str() {
            "fr" => Some(Lang::Fr),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            Lang::Fr => "fr-FR",
            Lang::En => "en-US",
        }
    }
}

/// Every user-visible text.
#[derive(Debug, Clone, Copy)]
pub enum Text {
    HelpTitle,
    HelpBody,
    NotUnderstood,
    UnknownUser,
    MoodleDown,
    NotConfigured,
    CoursesTitle,
    NoCourses,
    AssignmentsTitle,
    NoAssignmentsDue,
    Overdue,
    DueOn,
    GradesTitle,
    NoGrades,
    NotGradedYet,
    GradeItemsTitle,
    MissingTitle,
    MissingNone,
    MissingPick,
    NoAssignmentFound,
    NotTeacher,
    OpenInMoodle,
    OpenGradebook,
    Refresh,
    Details,
    UpdatedAt,
    BtnCourses,
    BtnAssignments,
    BtnGrades,
    BtnHelp,
    UnknownAction,
    ChildrenTitle,
    ChildPick,
    AboutChild,
    NoChildLinked,
    NotYourChild,
    ParentsOff,
}

pub fn t(lang: Lang, text: Text) -> &'static str {
    use Lang::*;
    use Text::*;
    match (text, lang) {
        (HelpTitle, Fr) => "Bonjour ! Je suis l'assistant Moodle.",
        (HelpTitle, En) => "Hello! I am the Moodle assistant.",
        (HelpBody, Fr) => "Demandez-moi : « mes cours », « mes devoirs » (ce qui est à rendre dans les 7 jours et les retards), « mes notes ». Enseignants : « qui n'a pas rendu <devoir> ».",
        (HelpBody, En) => "Ask me: \"my courses\", \"my assignments\" (what is due in the next 7 days and what is overdue), \"my grades\". Teachers: \"who has not submitted <assignment>\".",
        (NotUnderstood, Fr) => "Je n'ai pas compris. Choisissez une option ci-dessous :",
        (NotUnderstood, En) => "Sorry, I did not understand. Pick one of the options below:",
        (UnknownUser, Fr) => "Je ne trouve pas votre compte Moodle. Si vous venez d'arriver, il sera créé lors de la prochaine synchronisation ; sinon, contactez le référent numérique de l'établissement.",
        (UnknownUser, En) => "I cannot find your Moodle account. If you are new, it will be created at the next sync; otherwise please contact your school's IT contact.",
        (MoodleDown, Fr) => "Moodle ne répond pas pour le moment. Réessayez dans quelques minutes.",
        (MoodleDown, En) => "Moodle is not answering right now. Please try again in a few minutes.",
        (NotConfigured, Fr) => "Le lien avec Moodle n'est pas encore configuré.",
        (NotConfigured, En) => "The link to Moodle is not configured yet.",
        (CoursesTitle, Fr) => "Vos cours",
        (CoursesTitle, En) => "Your courses",
        (NoCourses, Fr) => "Vous n'êtes inscrit(e) à aucun cours.",
        (NoCourses, En) => "You are not enrolled in any course.",
        (AssignmentsTitle, Fr) => "Devoirs à rendre",
        (AssignmentsTitle, En) => "Assignments due",
        (NoAssignmentsDue, Fr) => "Rien à rendre dans les 7 prochains jours, et aucun retard.",
        (NoAssignmentsDue, En) => "Nothing due in the next 7 days, and nothing overdue.",
        (Overdue, Fr) => "⚠ EN RETARD",
        (Overdue, En) => "⚠ OVERDUE",
        (DueOn, Fr) => "à rendre le",
        (DueOn, En) => "due",
        (GradesTitle, Fr) => "Vos notes",
        (GradesTitle, En) => "Your grades",
        (NoGrades, Fr) => "Aucune note pour le moment.",
        (NoGrades, En) => "No grades yet.",
        (NotGradedYet, Fr) => "pas encore noté",
        (NotGradedYet, En) => "not graded yet",
        (GradeItemsTitle, Fr) => "Détail des notes",
        (GradeItemsTitle, En) => "Grade details",
        (MissingTitle, Fr) => "N'ont pas rendu",
        (MissingTitle, En) => "Not submitted",
        (MissingNone, Fr) => "Tous les élèves ont rendu ce devoir.",
        (MissingNone, En) => "Every student has submitted this assignment.",
        (MissingPick, Fr) => "Pour quel devoir ?",
        (MissingPick, En) => "Which assignment?",
        (NoAssignmentFound, Fr) => "Je ne trouve aucun devoir dans vos cours.",
        (NoAssignmentFound, En) => "I cannot find any assignment in your courses.",
        (NotTeacher, Fr) => "Cette liste est réservée aux enseignants du cours.",
        (NotTeacher, En) => "Only the course's teachers can see this list.",
        (OpenInMoodle, Fr) => "Ouvrir dans Moodle",
        (OpenInMoodle, En) => "Open in Moodle",
        (OpenGradebook, Fr) => "Ouvrir le carnet de notes",
        (OpenGradebook, En) => "Open the gradebook",
        (Refresh, Fr) => "Actualiser",
        (Refresh, En) => "Refresh",
        (Details, Fr) => "Détail",
        (Details, En) => "Details",
        (UpdatedAt, Fr) => "Mis à jour le",
        (UpdatedAt, En) => "Updated",
        (BtnCourses, Fr) => "Mes cours",
        (BtnCourses, En) => "My courses",
        (BtnAssignments, Fr) => "Mes devoirs",
        (BtnAssignments, En) => "My assignments",
        (BtnGrades, Fr) => "Mes notes",
        (BtnGrades, En) => "My grades",
        (BtnHelp, Fr) => "Aide",
        (BtnHelp, En) => "Help",
        (UnknownAction, Fr) => "Action inconnue.",
        (UnknownAction, En) => "Unknown action.",
        (ChildrenTitle, Fr) => "Vos enfants",
        (ChildrenTitle, En) => "Your children",
        (ChildPick, Fr) => "Pour lequel de vos enfants ?",
        (ChildPick, En) => "For which of your children?",
        (AboutChild, Fr) => "Pour",
        (AboutChild, En) => "For",
        (NoChildLinked, Fr) => "Aucun enfant n'est rattaché à votre compte Moodle. Si c'est une erreur, contactez l'établissement.",
        (NoChildLinked, En) => "No child is linked to your Moodle account. If this is a mistake, please contact the school.",
        (NotYourChild, Fr) => "Je ne trouve pas cet élève parmi les enfants rattachés à votre compte. Vos enfants :",
        (NotYourChild, En) => "I cannot find this pupil among the children linked to your account. Your children:",
        (ParentsOff, Fr) => "Les réponses aux parents ne sont pas activées dans cet établissement.",
        (ParentsOff, En) => "Answers for parents are not turned on at this school.",
    }
}

/// A Unix time in the user's offset: "28/11/2026 à 18:00" / "28 Nov 2026, 18:00".
pub fn format_time(lang: Lang, unix: i64, offset_minutes: i32) -> String {
    let offset = FixedOffset::east_opt(offset_minutes * 60)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
    let Some(dt) = offset.timestamp_opt(unix, 0).single() else {
        return unix.to_string();
    };
    match lang {
        Lang::Fr => dt.format("%d/%m/%Y à %H:%M").to_string(),
        Lang::En => dt.format("%d %b %Y, %H:%M").to_string(),
    }
}

/// A grade as people write it: "15,5" in French, "15.5" in English; trailing zeros dropped.
pub fn format_number(lang: Lang, v: f64) -> String {
    let s = format!("{:.2}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    match lang {
        Lang::Fr => s.replace('.', ","),
        Lang::En => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_and_formats() {
        assert_eq!(Lang::from_locale("fr-FR"), Some(Lang::Fr));
        assert_eq!(Lang::from_locale("en-GB"), Some(Lang::En));
        assert_eq!(Lang::from_locale("de-DE"), None);
        assert_eq!(format_number(Lang::Fr, 15.5), "15,5");
        assert_eq!(format_number(Lang::En, 87.5), "87.5");
        assert_eq!(format_number(Lang::En, 12.0), "12");
        assert_eq!(format_time(Lang::Fr, 1796266083, 60), "03/12/2026 à 03:48");
    }
}
