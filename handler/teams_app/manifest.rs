//! The manifest (v1.30) and its French localization file, generated from the typed settings.
//! English is the manifest's own language; `fr.json` carries the same strings in French.

use super::TeamsAppError;
use crate::settings::Settings;
use serde_json::{json, Map, Value};

pub const SCHEMA_URL: &str =
    "https://developer.microsoft.com/json-schemas/teams/v1.30/MicrosoftTeams.schema.json";
pub const LOCALIZATION_SCHEMA_URL: &str =
    "https://developer.microsoft.com/json-schemas/teams/v1.30/MicrosoftTeams.Localization.schema.json";
pub const MANIFEST_VERSION: &str = "1.30";
pub const COLOR_ICON: &str = "color.png";
pub const OUTLINE_ICON: &str = "outline.png";
pub const FR_FILE: &str = "fr.json";
/// Entity id of the static "Moodle" tab.
pub const MOODLE_TAB: &str = "moodle";
/// Path of the channel tab's configuration page (the notifications configuration, issue 19).
pub const CONFIG_PATH: &str = "/connector/config";

/// One bot command: title and description in English, then French. The titles are words the
/// bot's intent recognizer understands in both languages (a user sends the localized title).
pub struct BotCommand {
    pub en: (&'static str, &'static str),
    pub fr: (&'static str, &'static str),
}

pub const PERSONAL_COMMANDS: &[BotCommand] = &[
    BotCommand {
        en: ("courses", "List the Moodle courses you are enrolled in"),
        fr: (
            "cours",
            "Lister les cours Moodle auxquels vous êtes inscrit",
        ),
    },
    BotCommand {
        en: ("assignments", "Show your open assignments"),
        fr: ("devoirs", "Afficher vos devoirs à rendre"),
    },
    BotCommand {
        en: ("due", "Show what is due in the next days"),
        fr: (
            "échéances",
            "Afficher ce qui est à rendre dans les prochains jours",
        ),
    },
    BotCommand {
        en: ("grades", "Show your latest grades"),
        fr: ("notes", "Afficher vos dernières notes"),
    },
    BotCommand {
        en: ("help", "Explain what the bot can do"),
        fr: ("aide", "Expliquer ce que sait faire le bot"),
    },
];

pub const TEAM_COMMANDS: &[BotCommand] = &[
    BotCommand {
        en: ("courses", "Show the Moodle courses linked to you"),
        fr: ("cours", "Afficher vos cours Moodle"),
    },
    BotCommand {
        en: ("due", "Show what is due in the next days"),
        fr: (
            "échéances",
            "Afficher ce qui est à rendre dans les prochains jours",
        ),
    },
    BotCommand {
        en: ("missing", "Teachers: who has not handed in an assignment"),
        fr: ("manquants", "Enseignants : qui n'a pas rendu un devoir"),
    },
    BotCommand {
        en: ("help", "Explain what the bot can do"),
        fr: ("aide", "Expliquer ce que sait faire le bot"),
    },
];

/// What the manifest is made of, checked and gathered from the settings.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub app_id: String,
    pub bot_id: String,
    pub public_url: url::Url,
    pub moodle_url: url::Url,
    pub name_short: String,
    pub name_full: String,
    pub developer_name: String,
    pub accent_color: String,
    pub sso_resource: String,
    pub privacy_url: String,
    pub terms_url: String,
}

impl Inputs {
    /// Every missing or unusable setting is named at once.
    pub fn from_settings(s: &Settings) -> Result<Inputs, TeamsAppError> {
        let t = &s.teams_app;
        let mut problems = Vec::new();
        let bot_id = s.bot.as_ref().map(|b| b.app_id.clone());
        match &bot_id {
            None => problems.push("BOT_APP_ID: required (the bot of the Teams app)".to_string()),
            Some(id) if !is_guid(id) => problems.push(format!(
                "BOT_APP_ID: {id:?} is not a GUID (an Entra app id)"
            )),
            _ => {}
        }
        let public_url = s.core.public_url.clone();
        match &public_url {
            None => problems.push("PUBLIC_URL: required (tabs and validDomains)".to_string()),
            Some(u) if u.scheme() != "https" => {
                problems.push("PUBLIC_URL: Teams only loads https:// pages in tabs".to_string())
            }
            _ => {}
        }
        let moodle_url = s.moodle.as_ref().map(|m| m.url.clone());
        match &moodle_url {
            None => problems.push("MOODLE_URL: required (the Moodle tab)".to_string()),
            Some(u) if u.scheme() != "https" => {
                problems.push("MOODLE_URL: Teams only loads https:// pages in tabs".to_string())
            }
            _ => {}
        }
        if !problems.is_empty() {
            return Err(TeamsAppError::Settings(problems));
        }
        let (bot_id, public_url, moodle_url) = (
            bot_id.expect("checked"),
            public_url.expect("checked"),
            moodle_url.expect("checked"),
        );
        let app_id = t.app_id.clone().unwrap_or_else(|| derived_app_id(&bot_id));
        let host = public_url.host_str().unwrap_or_default().to_string();
        let sso_resource = t
            .sso_resource
            .clone()
            .unwrap_or_else(|| format!("api://{host}/{bot_id}"));
        let moodle_page = |path: &str| join(&moodle_url, path);
        Ok(Inputs {
            privacy_url: t
                .privacy_url
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_else(|| moodle_page("admin/tool/dataprivacy/summary.php")),
            terms_url: t
                .terms_url
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_else(|| moodle_page("admin/tool/policy/viewall.php")),
            app_id,
            bot_id,
            public_url,
            moodle_url,
            name_short: t.name_short.clone(),
            name_full: t.name_full.clone(),
            developer_name: t.developer_name.clone(),
            accent_color: t.accent_color.to_ascii_uppercase(),
            sso_resource,
        })
    }

    /// Hosts Teams may load: this app and Moodle, host names only.
    pub fn valid_domains(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for u in [&self.public_url, &self.moodle_url] {
            if let Some(h) = u.host_str() {
                let h = h.to_ascii_lowercase();
                if !out.contains(&h) {
                    out.push(h);
                }
            }
        }
        out
    }
}

/// `base` + relative `path`, keeping a base path such as `/moodle/`.
fn join(base: &url::Url, path: &str) -> String {
    let mut b = base.clone();
    if !b.path().ends_with('/') {
        b.set_path(&format!("{}/", b.path()));
    }
    b.join(path)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| base.to_string())
}

pub fn is_guid(s: &str) -> bool {
    !s.starts_with('{') && uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// A GUID that only depends on the bot id: the manifest id must never change between builds,
/// and a new deployment of the same bot is the same app.
pub fn derived_app_id(bot_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("moodle-teams-bridge/teams-app/{bot_id}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn command_list(scopes: &[&str], commands: &[BotCommand]) -> Value {
    let commands: Vec<Value> = commands
        .iter()
        .map(|c| json!({"title": c.en.0, "description": c.en.1}))
        .collect();
    json!({"scopes": scopes, "commands": commands})
}

/// The manifest for `version` (English strings).
pub fn manifest(i: &Inputs, version: &str) -> Value {
    let public = |path: &str| join(&i.public_url, path.trim_start_matches('/'));
    json!({
        "$schema": SCHEMA_URL,
        "manifestVersion": MANIFEST_VERSION,
        "version": version,
        "id": i.app_id,
        "developer": {
            "name": i.developer_name,
            "websiteUrl": i.public_url.to_string(),
            "privacyUrl": i.privacy_url,
            "termsOfUseUrl": i.terms_url,
        },
        "localizationInfo": {
            "defaultLanguageTag": "en",
            "additionalLanguages": [{"languageTag": "fr", "file": FR_FILE}],
        },
        "name": {"short": i.name_short, "full": i.name_full},
        "description": {
            "short": DESCRIPTION_SHORT_EN,
            "full": DESCRIPTION_FULL_EN,
        },
        "icons": {"color": COLOR_ICON, "outline": OUTLINE_ICON},
        "accentColor": i.accent_color,
        "bots": [{
            "botId": i.bot_id,
            "scopes": ["personal", "team", "groupChat"],
            "supportsFiles": false,
            "isNotificationOnly": false,
            "commandLists": [
                command_list(&["personal"], PERSONAL_COMMANDS),
                command_list(&["team", "groupChat"], TEAM_COMMANDS),
            ],
        }],
        "staticTabs": [
            {
                "entityId": MOODLE_TAB,
                "name": "Moodle",
                "contentUrl": join(&i.moodle_url, "my/courses.php"),
                "websiteUrl": join(&i.moodle_url, "my/courses.php"),
                "scopes": ["personal"],
            },
            {"entityId": "conversations", "scopes": ["personal"]},
        ],
        "configurableTabs": [{
            "configurationUrl": public(CONFIG_PATH),
            "canUpdateConfiguration": true,
            "scopes": ["team", "groupChat"],
            "context": ["channelTab", "privateChatTab"],
        }],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": i.valid_domains(),
        "webApplicationInfo": {"id": i.bot_id, "resource": i.sso_resource},
    })
}

const DESCRIPTION_SHORT_EN: &str = "Your Moodle courses, assignments and grades inside Teams.";
const DESCRIPTION_FULL_EN: &str = "Keeps class teams in step with Moodle courses, answers questions about courses, assignments, due dates and grades, and posts Moodle notifications to the right chat or channel.";
const DESCRIPTION_SHORT_FR: &str = "Vos cours, devoirs et notes Moodle dans Teams.";
const DESCRIPTION_FULL_FR: &str = "Synchronise les équipes de classe avec les cours Moodle, répond aux questions sur les cours, les devoirs, les échéances et les notes, et publie les notifications Moodle dans la bonne conversation ou le bon canal.";

/// `fr.json`: the French strings, keyed as the localization schema wants.
pub fn french(i: &Inputs) -> Value {
    let mut m = Map::new();
    m.insert("$schema".into(), LOCALIZATION_SCHEMA_URL.into());
    // The names are the school's own words; keep them, Teams shows them as configured.
    m.insert("name.short".into(), i.name_short.clone().into());
    m.insert("name.full".into(), french_full_name(&i.name_full).into());
    m.insert("description.short".into(), DESCRIPTION_SHORT_FR.into());
    m.insert("description.full".into(), DESCRIPTION_FULL_FR.into());
    m.insert("staticTabs[0].name".into(), "Moodle".into());
    for (list, commands) in [(0, PERSONAL_COMMANDS), (1, TEAM_COMMANDS)] {
        for (n, c) in commands.iter().enumerate() {
            let key = format!("bots[0].commandLists[{list}].commands[{n}]");
            m.insert(format!("{key}.title"), c.fr.0.into());
            m.insert(format!("{key}.description"), c.fr.1.into());
        }
    }
    Value::Object(m)
}

fn french_full_name(en: &str) -> String {
    if en == "Moodle for Microsoft Teams" {
        "Moodle pour Microsoft Teams".into()
    } else {
        en.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::intents::{recognize, Intent};

    /// A user sends the localized title: the bot must understand both languages' titles.
    #[test]
    fn every_command_title_is_understood_by_the_bot_in_both_languages() {
        let want = |en: &str| match en {
            "courses" => Intent::Courses,
            "assignments" | "due" => Intent::Assignments,
            "grades" => Intent::Grades,
            "help" => Intent::Help,
            "missing" => Intent::Missing {
                query: String::new(),
            },
            other => panic!("no intent for {other}"),
        };
        for c in PERSONAL_COMMANDS.iter().chain(TEAM_COMMANDS) {
            for title in [c.en.0, c.fr.0] {
                assert_eq!(recognize(title), want(c.en.0), "{title}");
            }
        }
    }

    #[test]
    fn the_derived_app_id_is_a_stable_guid_per_bot() {
        let a = derived_app_id("00000000-0000-4000-8000-00000000b001");
        assert!(is_guid(&a), "{a}");
        assert_eq!(a, derived_app_id("00000000-0000-4000-8000-00000000b001"));
        assert_ne!(a, derived_app_id("00000000-0000-4000-8000-00000000b002"));
    }
}
