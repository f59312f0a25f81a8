//! `handler check-config` for Microsoft Graph: a token can be had with the configured credentials,
//! and it carries every application permission the configured features need (the fixtures
//! README's least-privilege table, "also accepted" permissions counting too). A missing one is
//! named with what needs it and the setting that turns that feature off.

use super::settings::{GraphAuth, GraphSettings};
use super::GraphClient;
use crate::app::{AppState, Check};

/// One permission a feature needs: the least-privileged one first, then those Graph also accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub accepted: &'static [&'static str],
    pub for_what: &'static str,
    /// The setting that turns the feature off (or changes what it needs).
    pub off: &'static str,
}

impl Need {
    pub fn permission(&self) -> &'static str {
        self.accepted[0]
    }

    fn met_by(&self, roles: &[String]) -> bool {
        self.accepted
            .iter()
            .any(|p| roles.iter().any(|r| r.eq_ignore_ascii_case(p)))
    }
}

const USERS: Need = Need {
    accepted: &[
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ],
    for_what: "GET /users/delta: the Entra → Moodle users sync (handler sync --entra)",
    off: "unset GRAPH_CLIENT_ID to turn Graph off",
};
const TEAM_CREATE: Need = Need {
    accepted: &[
        "Team.Create",
        "Group.ReadWrite.All",
        "Directory.ReadWrite.All",
    ],
    for_what: "POST /teams: one team per selected course",
    off: "TEAMS_COURSES=none",
};
const GROUP_CREATE: Need = Need {
    accepted: &["Group.ReadWrite.All", "Directory.ReadWrite.All"],
    for_what: "POST /groups: each course's group (with its mailNickname) before its team",
    off: "TEAMS_TEMPLATE=educationClass or TEAMS_COURSES=none",
};
const GROUP_READ: Need = Need {
    accepted: &[
        "GroupMember.Read.All",
        "Group.Read.All",
        "GroupMember.ReadWrite.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ],
    for_what: "GET /groups: finding a course's group again before creating another",
    off: "TEAMS_COURSES=none",
};
/// `GET /teams/{id}` (team-get.md: application Team.ReadBasic.All; TeamSettings.Read.Group, the
/// least one listed, is resource-specific consent, which a tenant-wide sync cannot use). Which
/// permission polling a creation's operation needs is unconfirmed (fixtures README): the team's
/// own read permission is assumed, as the Graph double does.
const TEAM_READ: Need = Need {
    accepted: &[
        "Team.ReadBasic.All",
        "TeamSettings.Read.All",
        "TeamSettings.ReadWrite.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ],
    for_what: "GET /teams/{id} and its creation's operation: whether a requested team is ready",
    off: "TEAMS_COURSES=none",
};
/// `GET /teams/{id}/members` (team-list-members.md: application TeamMember.Read.All or
/// TeamMember.ReadWrite.All; TeamMember.Read.Group is resource-specific consent).
const TEAM_MEMBERS_READ: Need = Need {
    accepted: &["TeamMember.Read.All", "TeamMember.ReadWrite.All"],
    for_what:
        "GET /teams/{id}/members: who is in each team before owners and members are kept in step",
    off: "TEAMS_COURSES=none",
};
const TEAM_MEMBERS: Need = Need {
    accepted: &["TeamMember.ReadWrite.All"],
    for_what: "POST /teams/{id}/members/add, removals, owner changes",
    off: "TEAMS_COURSES=none",
};
const TEAM_SETTINGS: Need = Need {
    accepted: &[
        "TeamSettings.ReadWrite.All",
        "Group.ReadWrite.All",
        "Directory.ReadWrite.All",
    ],
    for_what: "PATCH /teams/{id} (renamed course), POST /teams/{id}/archive and /unarchive",
    off: "TEAMS_COURSES=none",
};
const CATALOG: Need = Need {
    accepted: &["AppCatalog.Read.All", "AppCatalog.ReadWrite.All"],
    for_what: "GET /appCatalogs/teamsApps: finding the bot's app (handler teams-app install)",
    off: "unset BOT_APP_ID, or TEAMS_COURSES=none",
};
const INSTALL_TEAM: Need = Need {
    accepted: &["TeamsAppInstallation.ReadWriteForTeam.All"],
    for_what: "POST /teams/{id}/installedApps: the bot in each course's team",
    off: "unset BOT_APP_ID, or TEAMS_COURSES=none",
};

/// What the settings switch on, as permissions to hold.
pub fn needed(state: &AppState) -> Vec<Need> {
    let s = &state.settings;
    let mut v = vec![USERS];
    if s.teams.selects_courses() {
        v.push(TEAM_CREATE);
        if s.teams.template == crate::teams_sync::settings::TeamTemplate::Standard {
            v.push(GROUP_CREATE);
        }
        v.extend([
            GROUP_READ,
            TEAM_READ,
            TEAM_MEMBERS_READ,
            TEAM_MEMBERS,
            TEAM_SETTINGS,
        ]);
        if s.bot.is_some() {
            v.extend([CATALOG, INSTALL_TEAM]);
        }
    }
    v
}

/// Holds `roles` every need? The missing ones, each with what needs it and how to fix it.
pub fn missing(needs: &[Need], roles: &[String], app: &str) -> Vec<String> {
    needs
        .iter()
        .filter(|n| !n.met_by(roles))
        .map(|n| {
            format!(
                "{} (for {}): grant it as an application permission with admin consent to the app registration GRAPH_CLIENT_ID={app}, or {}",
                n.permission(),
                n.for_what,
                n.off
            )
        })
        .collect()
}

fn auth_name(s: &GraphSettings) -> &'static str {
    match s.auth {
        GraphAuth::Secret(_) => "client secret GRAPH_CLIENT_SECRET",
        GraphAuth::Certificate { .. } => "certificate GRAPH_CERTIFICATE",
        GraphAuth::ManagedIdentity { .. } => "managed identity",
    }
}

/// The Graph lines of `handler check-config` (none when Graph is not configured).
pub async fn reachability(state: &AppState) -> Vec<Check> {
    let (Some(settings), Some(client)) = (&state.settings.graph, &state.graph) else {
        return Vec::new();
    };
    vec![check(client, settings, &needed(state)).await]
}

/// Token, then permissions: one line ("graph").
pub async fn check(client: &GraphClient, s: &GraphSettings, needs: &[Need]) -> Check {
    let outcome = match client.app_roles().await {
        Err(e) => Err(format!(
            "no token for GRAPH_CLIENT_ID={} in GRAPH_TENANT_ID={} with the {}: {e}",
            s.client_id,
            s.tenant_id,
            auth_name(s)
        )),
        Ok(None) => Ok(format!(
            "token obtained ({}); its permissions cannot be read from it, so a missing one is named by the first call that needs it: {}",
            auth_name(s),
            needs.iter().map(Need::permission).collect::<Vec<_>>().join(", ")
        )),
        Ok(Some(roles)) => {
            let miss = missing(needs, &roles, &s.client_id);
            if miss.is_empty() {
                Ok(format!(
                    "token obtained ({}); application permissions present: {}",
                    auth_name(s),
                    needs.iter().map(Need::permission).collect::<Vec<_>>().join(", ")
                ))
            } else {
                Err(format!("missing application permission(s): {}", miss.join("; ")))
            }
        }
    };
    Check {
        service: "graph".into(),
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_broader_permission_graph_accepts_stands_in_for_the_least_one() {
        let needs = [USERS, TEAM_CREATE, GROUP_READ, TEAM_MEMBERS];
        let m = missing(
            &needs,
            &roles(&["Directory.Read.All", "Group.ReadWrite.All"]),
            "app",
        );
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].starts_with("TeamMember.ReadWrite.All (for POST /teams/{id}/members/add"));
        assert!(m[0].contains("GRAPH_CLIENT_ID=app") && m[0].ends_with("TEAMS_COURSES=none"));
        assert!(missing(
            &needs,
            &roles(&[
                "user.read.all",
                "Team.Create",
                "GroupMember.Read.All",
                "TeamMember.ReadWrite.All"
            ]),
            "a"
        )
        .is_empty());
    }

    #[test]
    fn reading_teams_and_their_members_is_checked_and_broader_grants_count() {
        let needs = [TEAM_READ, TEAM_MEMBERS_READ, TEAM_MEMBERS];
        let m = missing(&needs, &roles(&["Team.Create"]), "app");
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(
            m[0].starts_with("Team.ReadBasic.All (for GET /teams/{id}"),
            "{m:?}"
        );
        assert!(
            m[1].starts_with("TeamMember.Read.All (for GET /teams/{id}/members"),
            "{m:?}"
        );
        // What team-get.md and team-list-members.md list as higher privileged stands in.
        assert!(missing(
            &needs,
            &roles(&["TeamSettings.ReadWrite.All", "TeamMember.ReadWrite.All"]),
            "app"
        )
        .is_empty());
        assert!(missing(
            &needs,
            &roles(&[
                "Team.ReadBasic.All",
                "TeamMember.Read.All",
                "TeamMember.ReadWrite.All"
            ]),
            "app"
        )
        .is_empty());
    }
}
