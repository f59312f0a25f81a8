//! The admin pages as HTML strings: no template engine, no JavaScript needed (forms post,
//! a running run's page refreshes itself); with JavaScript the run page streams its progress.
//! French and English, from `Accept-Language` or `?lang=`.

use crate::sync::report::{Counts, EntityKind, RunReport, SyncOptions};
use crate::teams_sync::pending::{self, PendingCourse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    /// `?lang=` wins; else the first language of `Accept-Language` that is French or English.
    pub fn pick(query: Option<&str>, accept: Option<&str>) -> Lang {
        match query.map(|q| q.trim().to_ascii_lowercase()) {
            Some(q) if q.starts_with("fr") => return Lang::Fr,
            Some(q) if q.starts_with("en") => return Lang::En,
            _ => {}
        }
        for tag in accept.unwrap_or_default().split(',') {
            let tag = tag
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if tag.starts_with("fr") {
                return Lang::Fr;
            }
            if tag.starts_with("en") {
                return Lang::En;
            }
        }
        Lang::En
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    fn t(self, en: &'static str, fr: &'static str) -> &'static str {
        match self {
            Lang::Fr => fr,
            Lang::En => en,
        }
    }
}

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = r#"
:root{--fg:#1d2433;--muted:#5b6475;--line:#d9dde5;--bg:#f5f6f8;--card:#fff;--accent:#1f5fbf;--bad:#b3261e;--ok:#1e7b34;--warn:#8a5a00}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;align-items:center;gap:1rem;padding:.7rem 1.5rem;background:#17325e;color:#fff}
header h1{font-size:1.15rem;margin:0;flex:1}header a,header button{color:#fff}
header form{margin:0}header button{background:none;border:1px solid #fff8;border-radius:4px;padding:.2rem .6rem;cursor:pointer}
main{max-width:1100px;margin:0 auto;padding:1rem 1.5rem 3rem}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:1rem 1.2rem;margin:1rem 0}
h2{font-size:1.05rem;margin:0 0 .7rem}fieldset{border:1px solid var(--line);border-radius:6px;margin:0 0 .8rem;padding:.5rem .9rem}
legend{font-weight:600;padding:0 .3rem}label{display:block;margin:.25rem 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem}@media(max-width:800px){.grid{grid-template-columns:1fr}}
input[type=text],input[type=password]{padding:.35rem .5rem;border:1px solid var(--line);border-radius:4px;font:inherit;min-width:18rem}
.sub{margin-left:1.6rem}.hint{color:var(--muted);font-size:.88rem}
.warn{color:var(--warn);background:#fff6e0;border-left:3px solid #e0a400;padding:.3rem .6rem;font-size:.88rem;margin:.2rem 0 .2rem 1.6rem}
button.primary{background:var(--accent);color:#fff;border:0;border-radius:5px;padding:.55rem 1.4rem;font:inherit;font-weight:600;cursor:pointer}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}.muted{color:var(--muted)}
.tag{display:inline-block;border:1px solid var(--line);border-radius:10px;padding:0 .45rem;margin:0 .2rem .1rem 0;font-size:.8rem;background:#f0f3f8}
pre{background:#0f1622;color:#dfe6f1;padding:.8rem;border-radius:6px;overflow:auto;font-size:.85rem}
.progress{display:flex;gap:2rem;font-size:1.1rem}.progress b{font-size:1.6rem;display:block}
.box{max-width:440px;margin:4rem auto}td.when{white-space:nowrap}table+h2{margin-top:1.4rem}a.button{display:inline-block;text-decoration:none;background:var(--accent);color:#fff;border-radius:5px;padding:.55rem 1.4rem;font-weight:600}.error{color:var(--bad)}
"#;

fn head(lang: Lang, title: &str, extra: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title>{extra}<style>{STYLE}</style></head><body>",
        lang.code(),
        esc(title)
    )
}

fn lang_switch(lang: Lang, path: &str) -> String {
    let other = match lang {
        Lang::Fr => ("en", "English"),
        Lang::En => ("fr", "Français"),
    };
    format!(
        "<a href=\"{path}?lang={}\" lang=\"{}\">{}</a>",
        other.0, other.0, other.1
    )
}

/// Who is signed in, for the header.
pub struct Viewer<'a> {
    pub name: &'a str,
    pub csrf: &'a str,
    pub password_session: bool,
}

fn header(lang: Lang, viewer: &Viewer<'_>, path: &str) -> String {
    let logout = if viewer.password_session {
        format!(
            "<form method=\"post\" action=\"/manage/sync/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>{}</button></form>",
            esc(viewer.csrf),
            lang.t("Sign out", "Se déconnecter")
        )
    } else {
        String::new()
    };
    format!(
        "<header><h1><a href=\"/manage/sync?lang={}\" style=\"text-decoration:none\">{}</a></h1><span>{}</span>{}{logout}</header>",
        lang.code(),
        lang.t("moodle-teams-bridge · Synchronisation", "moodle-teams-bridge · Synchronisation"),
        esc(viewer.name),
        lang_switch(lang, path)
    )
}

pub struct TimerRow {
    pub function: &'static str,
    pub setting: &'static str,
    pub schedule: String,
    pub last: Option<String>,
    /// How the last run failed (`None`: it succeeded, or no run is recorded).
    pub failure: Option<String>,
    pub next: Option<String>,
}

pub struct ServiceRow {
    pub service: String,
    pub outcome: Result<String, String>,
    /// The setting(s) to look at when the check fails.
    pub fix: Option<&'static str>,
}

pub struct Overview<'a> {
    pub viewer: Viewer<'a>,
    /// Entra users are offered when Graph and Moodle are configured.
    pub entra: bool,
    /// Teams are offered when TEAMS_COURSES selects courses and Graph is configured.
    pub teams: bool,
    pub history: &'a [RunReport],
    /// Courses waiting for a team (the store's list, not one run's): `None` when the Teams sync
    /// is off and none is recorded.
    pub pending: Option<&'a [PendingCourse]>,
    pub timers: &'a [TimerRow],
    pub services: &'a [ServiceRow],
    /// The Teams app package and its last build / publish / install (ManifestPublish).
    pub teams_app: Option<TeamsAppView>,
    pub notice: Option<String>,
}

/// What the Teams app section shows; built from `teams_app::http::read_status`.
#[derive(Debug, Default)]
pub struct TeamsAppView {
    /// Latest built package: version and when.
    pub latest: Option<(String, String)>,
    /// Last action asked for: action, succeeded, detail, by whom, when.
    pub last_action: Option<(String, bool, String, String, String)>,
    /// Last publish: state and version.
    pub publish: Option<(String, String)>,
    /// A device sign-in the admin still has to complete: code and URL (only while unexpired).
    pub sign_in: Option<(String, String)>,
    /// Why the state could not be read, if it could not.
    pub unreadable: Option<String>,
}

fn teams_app_section(lang: Lang, v: &TeamsAppView, csrf: &str) -> String {
    let mut h = format!(
        "<section id=teams-app><h2>{}</h2>",
        lang.t("Teams app", "Application Teams")
    );
    if let Some(e) = &v.unreadable {
        h.push_str(&format!("<p class=bad>{}</p>", esc(e)));
    }
    match &v.latest {
        Some((version, at)) => h.push_str(&format!(
            "<p>{} <b>{}</b> <span class=when>{}</span> · <a href=\"/manage/teams-app/package\">{}</a></p>",
            lang.t("Latest package:", "Dernier paquet :"),
            esc(version),
            esc(at.get(..19).unwrap_or(at)).replace('T', " "),
            lang.t("download the zip", "télécharger le zip"),
        )),
        None => h.push_str(&format!(
            "<p class=muted>{}</p>",
            lang.t("No package built yet.", "Aucun paquet construit pour l'instant.")
        )),
    }
    if let Some((state, version)) = &v.publish {
        h.push_str(&format!(
            "<p>{} {} <b>{}</b></p>",
            lang.t("Org catalog:", "Catalogue de l'organisation :"),
            esc(version),
            esc(state)
        ));
    }
    if let Some((code, uri)) = &v.sign_in {
        h.push_str(&format!(
            "<p class=warn>{} <a href=\"{u}\" target=_blank rel=noopener>{u}</a> {} <code class=code>{}</code></p>",
            lang.t("To publish, sign in as a Teams admin at", "Pour publier, connectez-vous en administrateur Teams sur"),
            lang.t("and enter the code", "et saisissez le code"),
            esc(code),
            u = esc(uri),
        ));
    }
    if let Some((action, ok, detail, by, at)) = &v.last_action {
        h.push_str(&format!(
            "<p>{} <code>{}</code> {} {} <span class=when>{}</span>: {}</p>",
            lang.t("Last action:", "Dernière action :"),
            esc(action),
            lang.t("by", "par"),
            esc(by),
            esc(at),
            if *ok {
                format!(
                    "<span class=ok>OK</span> <span class=hint>{}</span>",
                    esc(detail)
                )
            } else {
                format!(
                    "<span class=bad>{}</span><div class=hint><pre>{}</pre></div>",
                    lang.t("failed", "échec"),
                    esc(detail)
                )
            }
        ));
    }
    h.push_str("<div class=actions>");
    for (action, en, fr) in [
        ("build", "Build the package", "Construire le paquet"),
        (
            "publish",
            "Publish to the org catalog",
            "Publier dans le catalogue",
        ),
        (
            "install",
            "Install in the synced teams",
            "Installer dans les équipes synchronisées",
        ),
    ] {
        h.push_str(&format!(
            "<form method=post action=\"/manage/teams-app/{action}\" style=\"display:inline\"><input type=hidden name=csrf value=\"{}\"><button type=submit>{}</button></form> ",
            esc(csrf),
            lang.t(en, fr)
        ));
    }
    h.push_str("</div></section>");
    h
}

fn checkbox(name: &str, label: &str, checked: bool) -> String {
    format!(
        "<label><input type=\"checkbox\" name=\"{name}\" value=\"1\"{}> {label}</label>",
        if checked { " checked" } else { "" }
    )
}

pub fn option_tags(lang: Lang, o: &SyncOptions) -> String {
    let mut tags = Vec::new();
    let entities = [
        EntityKind::Users,
        EntityKind::Cohorts,
        EntityKind::Roles,
        EntityKind::Teams,
        EntityKind::EntraUsers,
    ]
    .map(|e| (o.selects(e), e.label().0, e.label().1));
    for (on, en, fr) in entities.into_iter().chain([
        (o.force, "force all", "tout forcer"),
        (o.full, "full pass", "passe complète"),
        (o.update_only, "update only", "mise à jour seule"),
        (o.simulate, "simulation", "simulation"),
        (o.verbose, "trace", "trace"),
        (o.no_cohort_lock, "no cohort lock", "sans verrou de cohorte"),
    ]) {
        if on {
            tags.push(format!("<span class=\"tag\">{}</span>", lang.t(en, fr)));
        }
    }
    if let Some(u) = &o.user {
        tags.push(format!("<span class=\"tag\">{}</span>", esc(u)));
    }
    tags.join("")
}

fn trigger_label(lang: Lang, t: Option<&str>) -> &'static str {
    match t {
        Some("schedule") => lang.t("schedule", "planification"),
        Some("page") => lang.t("page", "page"),
        Some("cli") => lang.t("command line", "ligne de commande"),
        _ => "—",
    }
}

fn total(r: &RunReport) -> Counts {
    r.total()
}

pub fn overview(lang: Lang, o: &Overview<'_>) -> String {
    let mut h = head(lang, lang.t("Manual sync", "Synchronisation manuelle"), "");
    h.push_str(&header(lang, &o.viewer, "/manage/sync"));
    h.push_str("<main>");
    if let Some(n) = &o.notice {
        h.push_str(&format!("<section class=\"error\">{}</section>", esc(n)));
    }
    // Run form.
    h.push_str(&format!(
        "<section><h2>{}</h2><form method=\"post\" action=\"/manage/sync/run\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"lang\" value=\"{}\"><div class=\"grid\"><fieldset><legend>{}</legend>",
        lang.t("Run a sync", "Lancer une synchronisation"),
        esc(o.viewer.csrf),
        lang.code(),
        lang.t("Entities", "Entités")
    ));
    h.push_str(&checkbox(
        EntityKind::Users.as_str(),
        lang.t("User accounts", "Comptes utilisateurs"),
        true,
    ));
    h.push_str(&format!(
        "<div class=\"sub\"><label>{} <input type=\"text\" name=\"user\" placeholder=\"{}\"></label></div>",
        lang.t("Only this user:", "Seulement cet utilisateur :"),
        lang.t("login or uid (optional)", "identifiant ou uid (facultatif)")
    ));
    h.push_str(&checkbox(
        EntityKind::Cohorts.as_str(),
        lang.t("Cohorts", "Cohortes"),
        true,
    ));
    h.push_str(&checkbox(
        EntityKind::Roles.as_str(),
        lang.t("Role assignments", "Attributions de rôles"),
        true,
    ));
    if o.entra {
        h.push_str(&checkbox(
            "entra",
            lang.t(
                "Entra ID users (linked, created or suspended in Moodle)",
                "Utilisateurs Entra ID (liés, créés ou suspendus dans Moodle)",
            ),
            false,
        ));
    } else {
        h.push_str(&format!(
            "<p class=\"hint\">{}</p>",
            lang.t(
                "Entra ID users: set the GRAPH_* settings to offer them here.",
                "Utilisateurs Entra ID : renseignez les réglages GRAPH_* pour les proposer ici."
            )
        ));
    }
    if o.teams {
        h.push_str(&checkbox(
            EntityKind::Teams.as_str(),
            lang.t(
                "Teams (Moodle courses → Microsoft Teams)",
                "Équipes (cours Moodle → Microsoft Teams)",
            ),
            true,
        ));
    } else {
        h.push_str(&format!(
            "<p class=\"hint\">{}</p>",
            lang.t(
                "Teams: set TEAMS_COURSES and the GRAPH_* settings to offer it here.",
                "Équipes : renseignez TEAMS_COURSES et les réglages GRAPH_* pour la proposer ici."
            )
        ));
    }
    h.push_str(&format!(
        "</fieldset><fieldset><legend>{}</legend>",
        lang.t("Options", "Options")
    ));
    h.push_str(&checkbox(
        "force",
        lang.t(
            "Force all entries (not only those changed since the last run)",
            "Forcer toutes les entrées (pas seulement celles modifiées depuis le dernier passage)",
        ),
        false,
    ));
    h.push_str(&checkbox(
        "update_only",
        lang.t(
            "Update existing only (create nothing)",
            "Mettre à jour l'existant seulement (ne rien créer)",
        ),
        false,
    ));
    h.push_str(&checkbox(
        "simulate",
        lang.t(
            "Simulation (write nothing, report what would change)",
            "Simulation (ne rien écrire, montrer ce qui changerait)",
        ),
        false,
    ));
    h.push_str(&checkbox(
        "verbose",
        lang.t("More trace output", "Trace détaillée"),
        false,
    ));
    h.push_str(&checkbox(
        "no_cohort_lock",
        lang.t(
            "Disable the automatic cohort lock",
            "Désactiver le verrouillage automatique des cohortes",
        ),
        false,
    ));
    h.push_str(&format!(
        "<p class=\"warn\">{}</p>",
        lang.t(
            "Warning: without the lock, members added to synced cohorts by hand in Moodle are kept by this run but may be removed later, and a teacher can change a cohort the directory owns.",
            "Attention : sans le verrou, les membres ajoutés à la main dans Moodle aux cohortes synchronisées sont gardés par ce passage mais peuvent être retirés plus tard, et un enseignant peut modifier une cohorte gérée par l'annuaire."
        )
    ));
    h.push_str(&format!(
        "</fieldset></div><button class=\"primary\" type=\"submit\">{}</button></form></section>",
        lang.t("Run", "Lancer")
    ));
    // History.
    h.push_str(&format!(
        "<section><h2>{}</h2>",
        lang.t("Past runs", "Passages précédents")
    ));
    if o.history.is_empty() {
        h.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            lang.t("No run yet.", "Aucun passage pour l'instant.")
        ));
    } else {
        h.push_str(&format!(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th class=n>{}</th><th class=n>{}</th><th class=n>{}</th><th class=n>{}</th><th>{}</th><th></th></tr>",
            lang.t("Started", "Début"),
            lang.t("Trigger", "Déclencheur"),
            lang.t("Options", "Options"),
            lang.t("State", "État"),
            lang.t("created", "créés"),
            lang.t("updated", "modifiés"),
            lang.t("failed", "échecs"),
            lang.t("s", "s"),
            lang.t("Run", "Passage"),
        ));
        for r in o.history {
            let t = total(r);
            let state = if r.complete && r.errors.is_empty() {
                format!("<span class=ok>{}</span>", lang.t("complete", "terminé"))
            } else {
                format!(
                    "<span class=bad>{}</span>",
                    lang.t("incomplete", "incomplet")
                )
            };
            let id = esc(&r.run_id);
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{state}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{:.1}</td><td><a href=\"/manage/sync/runs/{id}?lang={l}\">{id}</a></td><td><a href=\"/manage/sync/runs/{id}/trace\">{}</a></td></tr>",
                esc(r.started_at.get(..19).unwrap_or(&r.started_at)).replace('T', " "),
                trigger_label(lang, r.options.trigger.as_deref()),
                option_tags(lang, &r.options),
                t.created,
                t.updated,
                t.failed,
                r.duration_ms as f64 / 1000.0,
                lang.t("trace", "trace"),
                l = lang.code(),
            ));
        }
        h.push_str("</table>");
    }
    // Schedules and services one above the other: the check texts need the width.
    h.push_str("</section>");
    if let Some(list) = o.pending {
        h.push_str(&pending_courses(lang, list));
    }
    // Timers.
    if let Some(v) = &o.teams_app {
        h.push_str(&teams_app_section(lang, v, o.viewer.csrf));
    }
    h.push_str(&format!(
        "<section><h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("Schedules", "Planifications"),
        lang.t("Function", "Fonction"),
        lang.t("Schedule", "Planification"),
        lang.t("Last run", "Dernier"),
        lang.t("Next run", "Prochain"),
    ));
    for t in o.timers {
        h.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code><div class=hint>{}</div></td><td class=when>{}</td><td class=when>{}</td></tr>",
            t.function,
            esc(&t.schedule),
            t.setting,
            match (&t.last, &t.failure) {
                (None, _) => lang.t("not recorded", "non enregistré").to_string(),
                (Some(l), None) => format!("{} <span class=ok>OK</span>", esc(l)),
                (Some(l), Some(f)) => format!(
                    "{} <span class=bad>{}</span><div class=hint>{}</div>",
                    esc(l),
                    lang.t("failed", "échec"),
                    esc(f)
                ),
            },
            t.next.as_deref().map(esc).unwrap_or_else(|| "—".into()),
        ));
    }
    h.push_str("</table></section>");
    // Services.
    h.push_str(&format!(
        "<section><h2>{}</h2><table><tr><th>{}</th><th>{}</th></tr>",
        lang.t("Services", "Services"),
        lang.t("Service", "Service"),
        lang.t("State", "État"),
    ));
    for s in o.services {
        match &s.outcome {
            Ok(d) => h.push_str(&format!(
                "<tr><td>{}</td><td><span class=ok>OK</span> <span class=hint>{}</span></td></tr>",
                esc(&s.service),
                esc(d)
            )),
            Err(e) => h.push_str(&format!(
                "<tr><td>{}</td><td><span class=bad>{}</span> {}{}</td></tr>",
                esc(&s.service),
                lang.t("failing", "en échec"),
                esc(e),
                s.fix
                    .map(|f| format!(
                        "<div class=hint>{} <code>{}</code></div>",
                        lang.t("Setting to check:", "Réglage à vérifier :"),
                        esc(f)
                    ))
                    .unwrap_or_default()
            )),
        }
    }
    h.push_str("</table></section></main></body></html>");
    h
}

/// Rows shown at most; the rest are counted (the store keeps them all).
const PENDING_SHOWN: usize = 500;

/// Every course waiting for its team, longest waiting first, as the store has them: an admin sees
/// them even after a run that had nothing to do (the run report lists only that run's).
fn pending_courses(lang: Lang, list: &[PendingCourse]) -> String {
    let mut h = format!(
        "<section id=\"pending\"><h2>{} ({})</h2>",
        lang.t(
            "Courses waiting for their team",
            "Cours en attente de leur équipe"
        ),
        list.len()
    );
    if list.is_empty() {
        h.push_str(&format!(
            "<p class=\"muted\">{}</p></section>",
            lang.t(
                "No course is waiting: every selected course with a teacher linked to Entra has its team.",
                "Aucun cours en attente : chaque cours sélectionné dont un enseignant est lié à Entra a son équipe."
            )
        ));
        return h;
    }
    h.push_str(&format!(
        "<p class=\"hint\">{}</p><table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t(
            "A course's team is created on the first run after one of its teachers is linked to an Entra account.",
            "L'équipe d'un cours est créée au premier passage après qu'un de ses enseignants a été lié à un compte Entra."
        ),
        lang.t("Course", "Cours"),
        lang.t("Reason", "Raison"),
        lang.t("Waiting since", "En attente depuis"),
    ));
    for p in list.iter().take(PENDING_SHOWN) {
        let reason = match lang {
            Lang::Fr => pending::reason_fr(&p.reason).unwrap_or_else(|| p.reason.clone()),
            Lang::En => p.reason.clone(),
        };
        // Stored as RFC 3339 UTC (`2027-01-15T08:00:00Z`): shown as the history shows times.
        let since = match chrono::DateTime::parse_from_rfc3339(&p.since) {
            Ok(t) => t
                .with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string(),
            Err(_) => p.since.clone(),
        };
        h.push_str(&format!(
            "<tr><td>{} <span class=hint>(id {})</span></td><td>{}</td><td class=when>{}</td></tr>",
            esc(&p.course),
            p.course_id,
            esc(&reason),
            esc(&since)
        ));
    }
    h.push_str("</table>");
    if list.len() > PENDING_SHOWN {
        h.push_str(&format!(
            "<p class=\"hint\">{} {}</p>",
            list.len() - PENDING_SHOWN,
            lang.t("more not shown", "autres non affichés")
        ));
    }
    h.push_str("</section>");
    h
}

/// The answer to "Run": where the run can be followed (the refresh takes a browser there).
pub fn started(lang: Lang, run_id: &str) -> String {
    let url = format!("/manage/sync/runs/{}?lang={}", esc(run_id), lang.code());
    let mut h = head(
        lang,
        lang.t("Run started", "Passage lancé"),
        &format!("<meta http-equiv=\"refresh\" content=\"0;url={url}\">"),
    );
    h.push_str(&format!(
        "<main><section><h2>{}</h2><p><a href=\"{url}\">{}</a></p></section></main></body></html>",
        lang.t("Run started", "Passage lancé"),
        esc(run_id)
    ));
    h
}

pub enum RunState<'a> {
    Running(super::live::Snapshot),
    Done(&'a RunReport),
    Failed(&'a str),
}

pub fn run_page(lang: Lang, viewer: &Viewer<'_>, run_id: &str, state: &RunState<'_>) -> String {
    let path = format!("/manage/sync/runs/{}", esc(run_id));
    // Without JavaScript the page reloads itself while the run goes on.
    let refresh = match state {
        RunState::Running(_) => "<noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>",
        _ => "",
    };
    let mut h = head(lang, run_id, refresh);
    h.push_str(&header(lang, viewer, &path));
    h.push_str(&format!(
        "<main><p><a href=\"/manage/sync?lang={}\">← {}</a></p><section><h2>{} {}</h2>",
        lang.code(),
        lang.t("Manual sync", "Synchronisation manuelle"),
        lang.t("Run", "Passage"),
        esc(run_id)
    ));
    match state {
        RunState::Running(s) => {
            h.push_str(&format!(
                "<p id=\"status\">{}</p><div class=\"progress\"><div><b id=\"read\">{}</b>{}</div><div><b id=\"planned\">{}</b>{}</div><div><b id=\"written\">{}</b>{}</div></div>",
                lang.t("Running…", "En cours…"),
                s.read,
                lang.t("entries read", "entrées lues"),
                s.planned,
                lang.t("planned", "planifiées"),
                s.written,
                lang.t("written", "écrites"),
            ));
            h.push_str(&format!(
                "<script>(function(){{var es=new EventSource('{path}/events');es.addEventListener('progress',function(e){{var p=JSON.parse(e.data);['read','planned','written'].forEach(function(k){{document.getElementById(k).textContent=p[k];}});}});es.addEventListener('report',function(){{es.close();location.reload();}});es.onerror=function(){{es.close();setTimeout(function(){{location.reload();}},2000);}};}})();</script>"
            ));
        }
        RunState::Failed(e) => {
            h.push_str(&format!(
                "<p class=bad>{}</p><p>{}</p>",
                lang.t("The run did not start.", "Le passage n'a pas démarré."),
                esc(e)
            ));
        }
        RunState::Done(r) => h.push_str(&report(lang, r)),
    }
    h.push_str("</section></main></body></html>");
    h
}

fn report(lang: Lang, r: &RunReport) -> String {
    let mut h = String::new();
    let state = if r.complete && r.errors.is_empty() {
        format!("<span class=ok>{}</span>", lang.t("complete", "terminé"))
    } else {
        format!(
            "<span class=bad>{}</span>",
            lang.t("incomplete", "incomplet")
        )
    };
    h.push_str(&format!(
        "<p>{state} · {:.1} s · {} {} · {} {}{}</p><p>{}</p>",
        r.duration_ms as f64 / 1000.0,
        r.entries_read,
        lang.t("entries read", "entrées lues"),
        r.moodle_calls.values().sum::<u64>(),
        lang.t("Moodle calls", "appels Moodle"),
        if r.options.simulate {
            lang.t(
                " · simulation: nothing written",
                " · simulation : rien n'a été écrit",
            )
        } else {
            ""
        },
        option_tags(lang, &r.options)
    ));
    h.push_str(&format!(
        "<table><tr><th>{}</th><th class=n>{}</th><th class=n>{}</th><th class=n>{}</th><th class=n>{}</th><th class=n>{}</th><th class=n>{}</th></tr>",
        lang.t("entity", "entité"),
        lang.t("created", "créés"),
        lang.t("updated", "modifiés"),
        lang.t("unchanged", "inchangés"),
        lang.t("skipped", "ignorés"),
        lang.t("failed", "échecs"),
        lang.t("removed", "retirés"),
    ));
    for (k, c) in &r.counts {
        h.push_str(&format!(
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(k.as_str()), c.created, c.updated, c.unchanged, c.skipped, c.failed, c.removed
        ));
    }
    h.push_str("</table>");
    for e in &r.errors {
        h.push_str(&format!("<p class=bad>{}</p>", esc(e)));
    }
    for w in &r.warnings {
        h.push_str(&format!("<p class=warn>{}</p>", esc(w)));
    }
    let (pending, other): (Vec<_>, Vec<_>) = r.issues.iter().partition(|i| i.outcome == "pending");
    for (title, list) in [
        (
            lang.t("Failures and skipped entries", "Échecs et entrées ignorées"),
            &other,
        ),
        (lang.t("Pending teams", "Équipes en attente"), &pending),
    ] {
        if list.is_empty() {
            continue;
        }
        h.push_str(&format!(
            "<h2>{title}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            lang.t("entity", "entité"),
            lang.t("key", "clé"),
            lang.t("outcome", "résultat"),
            lang.t("reason", "raison"),
        ));
        for i in list.iter().take(200) {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(i.entity.as_str()),
                esc(&i.key),
                esc(&i.outcome),
                esc(&i.reason)
            ));
        }
        h.push_str("</table>");
    }
    h.push_str(&format!(
        "<p><a href=\"/manage/sync/runs/{}/trace\">{}</a></p><pre>{}</pre>",
        esc(&r.run_id),
        lang.t("Full trace", "Trace complète"),
        esc(&r.render())
    ));
    h
}

/// The sign-in page: Entra (OpenID Connect) and/or the password, whichever is configured.
pub fn login(lang: Lang, csrf: &str, error: Option<&str>, password: bool, oidc: bool) -> String {
    let mut h = head(lang, lang.t("Sign in", "Connexion"), "");
    h.push_str(&format!(
        "<main class=\"box\"><section><h2>{}</h2>{}",
        lang.t(
            "Sign in to the admin page",
            "Connexion à la page d'administration"
        ),
        error
            .map(|e| format!("<p class=error>{}</p>", esc(e)))
            .unwrap_or_default(),
    ));
    if oidc {
        h.push_str(&format!(
            "<p><a class=\"button primary\" href=\"/manage/sync/login/oidc\">{}</a></p><p class=hint>{}</p>",
            lang.t("Sign in with Microsoft", "Se connecter avec Microsoft"),
            lang.t("Members of an admin group (ADMIN_GROUP_IDS) of the school's Entra tenant.", "Membres d'un groupe d'administration (ADMIN_GROUP_IDS) du tenant Entra de l'établissement."),
        ));
    }
    if password {
        h.push_str(&format!(
            "<form method=\"post\" action=\"/manage/sync/login\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"lang\" value=\"{}\"><label>{}<br><input type=\"password\" name=\"password\" autocomplete=\"current-password\" autofocus required></label><p><button class=\"primary\" type=\"submit\">{}</button></p></form><p class=hint>{}</p>",
            esc(csrf),
            lang.code(),
            lang.t("Admin password", "Mot de passe administrateur"),
            lang.t("Sign in", "Se connecter"),
            lang.t("The password is set with ADMIN_PASSWORD_HASH", "Le mot de passe se règle avec ADMIN_PASSWORD_HASH"),
        ));
    }
    h.push_str(&format!(
        "<p class=hint>{}</p></section></main></body></html>",
        lang_switch(lang, "/manage/sync/login"),
    ));
    h
}

/// A refusal or an error, for a browser: what happened and where to go.
pub fn error(lang: Lang, status: u16, message: &str) -> String {
    let title = match status {
        401 | 403 => lang.t("Access refused", "Accès refusé"),
        404 => lang.t("Not found", "Introuvable"),
        429 => lang.t("Too many attempts", "Trop de tentatives"),
        _ => lang.t("Something went wrong", "Une erreur est survenue"),
    };
    let mut h = head(lang, title, "");
    h.push_str(&format!(
        "<main class=\"box\"><section><h2>{title}</h2><p class=error>{}</p><p class=hint>HTTP {status}</p><p><a href=\"/manage/sync/login?lang={l}\">{}</a> · <a href=\"/manage/sync?lang={l}\">{}</a></p></section></main></body></html>",
        esc(message),
        lang.t("Sign in", "Se connecter"),
        lang.t("Manual sync", "Synchronisation manuelle"),
        l = lang.code(),
    ));
    h
}

/// After the Entra sign-in: a same-site step to the page (the Strict session cookie is not sent
/// on the cross-site redirect chain that brought the browser back).
pub fn signed_in(name: &str) -> String {
    let mut h = head(
        Lang::En,
        "Signed in",
        "<meta http-equiv=\"refresh\" content=\"0;url=/manage/sync\">",
    );
    h.push_str(&format!(
        "<main class=\"box\"><section><h2>{}</h2><p><a href=\"/manage/sync\">/manage/sync</a></p></section></main></body></html>",
        esc(name)
    ));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_from_query_then_browser_then_english() {
        assert_eq!(Lang::pick(Some("fr"), Some("en-GB")), Lang::Fr);
        assert_eq!(Lang::pick(Some("EN"), Some("fr-FR")), Lang::En);
        assert_eq!(Lang::pick(None, Some("de-DE,fr;q=0.8,en;q=0.5")), Lang::Fr);
        assert_eq!(Lang::pick(None, Some("de")), Lang::En);
        assert_eq!(Lang::pick(Some("xx"), None), Lang::En);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
