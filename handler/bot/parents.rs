//! Answers for parents: "les devoirs de Léa", "mes enfants", "grades of my son". The children are
//! those Moodle links to the asker (`bot::children`, read on every question); the answer is the
//! one the child would get (courses, assignments due, grades), marked with the child's name, and
//! its buttons keep asking about that child. Several children and no name: a picker card. A name,
//! or a button's child id, that is not one of the asker's children is refused — so a pupil, who
//! has no children, never gets anyone else's answers.

use crate::bot::answers::{self, Action, Turn};
use crate::bot::cards::{self, Reply};
use crate::bot::children::{Child, ParentLinks};
use crate::bot::i18n::{t, Text};
use crate::bot::intents::{self, match_score, About};
use crate::ids::MoodleUserId;
use crate::moodle::{MoodleClient, MoodleError};
use serde_json::{json, Value};

/// Teams shows a handful of buttons on a card.
const MAX_BUTTONS: usize = 5;

/// Whom the question is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Me,
    MyChildren,
    /// Name words from the text.
    Named(String),
    /// A button's `childId` (not trusted: checked against the links like a name).
    Child(MoodleUserId),
}

impl Subject {
    pub fn of_text(text: &str) -> Subject {
        match intents::about(text) {
            About::Me => Subject::Me,
            About::MyChildren => Subject::MyChildren,
            About::Named(n) => Subject::Named(n),
        }
    }

    pub fn of_button(data: &Value) -> Subject {
        // Not a Moodle id (not a number, 0, negative): no child named, the parent's own view.
        let id = data.get("childId").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .and_then(|n| MoodleUserId::new(n).ok())
        });
        match id {
            Some(id) => Subject::Child(id),
            None => Subject::Me,
        }
    }

    /// Does this question go through the parent path at all?
    pub fn is_parent_question(&self, action: &Action) -> bool {
        match action {
            Action::Children | Action::ChildMenu => true,
            a if a.about_a_child() => *self != Subject::Me,
            _ => false,
        }
    }
}

/// The parent path's answer; `None` when the asker has no children and only named someone
/// (a course or a classmate): they get their own answer, exactly as before.
pub async fn answer(
    moodle: &MoodleClient,
    links: &ParentLinks,
    turn: &Turn,
    asker: MoodleUserId,
    subject: &Subject,
    action: &Action,
) -> Result<Option<Reply>, MoodleError> {
    let children = links.children_of(moodle, asker).await?;
    if children.is_empty() {
        return Ok(match subject {
            Subject::Named(_) if action.about_a_child() => None,
            _ => Some(Reply::Text(t(turn.lang, Text::NoChildLinked).into())),
        });
    }
    let chosen: Vec<&Child> = match subject {
        Subject::Child(id) => children.iter().filter(|c| c.id == *id).collect(),
        Subject::Named(q) => named(&children, q),
        Subject::Me | Subject::MyChildren => children.iter().collect(),
    };
    if chosen.is_empty() {
        tracing::info!("a parent asked about a pupil not linked to them; refused");
        return Ok(Some(not_your_child(turn, &children)));
    }
    if *action == Action::Children {
        return Ok(Some(children_card(turn, &chosen)));
    }
    if chosen.len() > 1 {
        return Ok(Some(picker(turn, &chosen, action)));
    }
    let child = chosen[0];
    if *action == Action::ChildMenu {
        return Ok(Some(child_menu(turn, child)));
    }
    let reply = answers::answer(moodle, turn, child.id, action).await?;
    Ok(Some(for_child(reply, turn, child)))
}

/// The children the name words fit best (every word found, typos allowed); several when the
/// name is shared ("Martin").
fn named<'a>(children: &'a [Child], query: &str) -> Vec<&'a Child> {
    let scored: Vec<(f64, &Child)> = children
        .iter()
        .map(|c| (match_score(query, &c.name), c))
        .collect();
    let best = scored.iter().map(|s| s.0).fold(0.0, f64::max);
    if best < 0.5 {
        return Vec::new();
    }
    scored
        .into_iter()
        .filter(|(s, _)| *s == best)
        .map(|(_, c)| c)
        .collect()
}

fn not_your_child(turn: &Turn, children: &[Child]) -> Reply {
    let names: Vec<&str> = children.iter().map(|c| c.name.as_str()).collect();
    Reply::Text(format!(
        "{} {}.",
        t(turn.lang, Text::NotYourChild),
        names.join(", ")
    ))
}

fn with_child(mut data: Value, child: &Child) -> Value {
    if let Value::Object(m) = &mut data {
        m.insert("childId".into(), json!(child.id.get()));
    }
    data
}

fn children_card(turn: &Turn, children: &[&Child]) -> Reply {
    let title = t(turn.lang, Text::ChildrenTitle);
    let mut body = vec![cards::title(title)];
    for c in children {
        body.push(cards::text(&format!("- {}", c.name)));
    }
    let actions = children
        .iter()
        .take(MAX_BUTTONS)
        .map(|c| cards::execute(&c.name, "child.menu", with_child(json!({}), c)))
        .collect();
    Reply::Card {
        summary: title.into(),
        card: cards::card(body, actions),
    }
}

fn picker(turn: &Turn, children: &[&Child], action: &Action) -> Reply {
    let (verb, data) = action.verb_and_data().unwrap_or(("child.menu", json!({})));
    let title = t(turn.lang, Text::ChildPick);
    let actions = children
        .iter()
        .take(MAX_BUTTONS)
        .map(|c| cards::execute(&c.name, verb, with_child(data.clone(), c)))
        .collect();
    Reply::Card {
        summary: title.into(),
        card: cards::card(vec![cards::title(title)], actions),
    }
}

fn child_menu(turn: &Turn, child: &Child) -> Reply {
    let card = cards::card(
        vec![cards::title(&child.name)],
        cards::menu_actions(turn.lang),
    );
    for_child(
        Reply::Card {
            summary: t(turn.lang, Text::ChildrenTitle).into(),
            card,
        },
        turn,
        child,
    )
}

/// The child's answer, saying whose it is; its buttons keep the child.
fn for_child(reply: Reply, turn: &Turn, child: &Child) -> Reply {
    let label = format!("{} {}", t(turn.lang, Text::AboutChild), child.name);
    match reply {
        Reply::Text(s) => Reply::Text(format!("{} — {s}", child.name)),
        Reply::Card { summary, mut card } => {
            if let Some(body) = card["body"].as_array_mut() {
                let at = usize::from(!body.is_empty());
                body.insert(at, cards::subtle(&label));
            }
            if let Some(actions) = card["actions"].as_array_mut() {
                for a in actions.iter_mut() {
                    if a["type"] == "Action.Execute" {
                        a["data"] = with_child(a["data"].take(), child);
                        a["fallback"]["data"] = with_child(a["fallback"]["data"].take(), child);
                    }
                }
            }
            Reply::Card {
                summary: format!("{summary} — {}", child.name),
                card,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::i18n::Lang;

    fn kids() -> Vec<Child> {
        vec![
            Child {
                id: MoodleUserId::new(8).unwrap(),
                name: "Hugo Bernard".into(),
            },
            Child {
                id: MoodleUserId::new(7).unwrap(),
                name: "Léa Martin".into(),
            },
            Child {
                id: MoodleUserId::new(9).unwrap(),
                name: "Léo Martin".into(),
            },
        ]
    }

    #[test]
    fn names_pick_the_children_they_fit() {
        let k = kids();
        assert_eq!(named(&k, "lea"), vec![&k[1]]);
        assert_eq!(named(&k, "hugo"), vec![&k[0]]);
        assert_eq!(named(&k, "martin"), vec![&k[1], &k[2]]);
        assert!(named(&k, "nguyen").is_empty());
    }

    #[test]
    fn a_childs_card_keeps_the_child_on_every_button() {
        let turn = Turn {
            lang: Lang::En,
            utc_offset_minutes: 0,
            now: 0,
            moodle_url: "https://m".into(),
            due_soon_days: 7,
        };
        let k = kids();
        let Reply::Card { card, summary } = child_menu(&turn, &k[1]) else {
            panic!("a card")
        };
        assert_eq!(summary, "Your children — Léa Martin");
        assert_eq!(card["body"][1]["text"], "For Léa Martin");
        for a in card["actions"].as_array().unwrap() {
            assert_eq!(a["data"]["childId"], 7, "{a}");
            assert_eq!(a["fallback"]["data"]["childId"], 7, "{a}");
        }
        assert_eq!(
            Subject::of_button(&card["actions"][0]["data"]),
            Subject::Child(MoodleUserId::new(7).unwrap())
        );
    }
}
