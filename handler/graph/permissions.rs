//! The least-privileged application permission each call needs (fixtures README, "Permissions"),
//! so a 403 names what the admin must grant instead of a bare "Forbidden".

/// Path segments of a Graph path relative to the version root, lower-cased, without the query:
/// `/teams/{id}/members/add?x` → `["teams", "{id}", "members", "add"]`.
fn segments(path: &str) -> Vec<String> {
    let path = path.split('?').next().unwrap_or("");
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
        .collect()
}

/// The application permission to grant for `method path` (a path below the version root).
pub fn required_permission(method: &str, path: &str) -> &'static str {
    let s = segments(path);
    let s: Vec<&str> = s.iter().map(String::as_str).collect();
    let get = method.eq_ignore_ascii_case("GET");
    match s.as_slice() {
        ["users", ..] if get && s.get(2) == Some(&"teamwork") => {
            "TeamsAppInstallation.ReadForUser.All"
        }
        // Directory membership checks (the admin sign-in's group overage).
        ["users", _, "checkmembergroups"] => "GroupMember.Read.All",
        ["users", _, "teamwork", "installedapps", ..] => {
            "TeamsAppInstallation.ReadWriteSelfForUser.All"
        }
        ["users", ..] if get => "User.Read.All",
        ["users", ..] => "User.ReadWrite.All",
        ["groups", _, "team"] => "Group.ReadWrite.All",
        ["groups", _, "owners" | "members", ..] if get => "GroupMember.Read.All",
        ["groups", ..] if get => "GroupMember.Read.All",
        ["groups", ..] => "Group.ReadWrite.All",
        ["teams"] if !get => "Team.Create",
        ["teams", _, "members", ..] if get => "TeamMember.Read.All",
        ["teams", _, "members", ..] => "TeamMember.ReadWrite.All",
        ["teams", _, "archive" | "unarchive"] => "TeamSettings.ReadWrite.All",
        ["teams", _, "installedapps", ..] if get => "TeamsAppInstallation.ReadForTeam.All",
        ["teams", _, "installedapps", ..] => "TeamsAppInstallation.ReadWriteForTeam.All",
        ["teams", ..] if get => "Team.ReadBasic.All",
        ["teams", ..] => "TeamSettings.ReadWrite.All",
        ["appcatalogs", ..] if get => "AppCatalog.Read.All",
        // Not available app-only at all (fixtures README, key finding 1).
        ["appcatalogs", ..] => "AppCatalog.ReadWrite.All (delegated only)",
        _ => "see the README's Graph permission table",
    }
}

#[cfg(test)]
mod tests {
    use super::required_permission as p;

    #[test]
    fn each_call_of_the_readme_table_names_its_permission() {
        assert_eq!(p("GET", "/users/delta?$select=id"), "User.Read.All");
        assert_eq!(p("GET", "/users"), "User.Read.All");
        assert_eq!(p("POST", "/teams"), "Team.Create");
        assert_eq!(p("PUT", "/groups/g/team"), "Group.ReadWrite.All");
        assert_eq!(
            p("POST", "/teams/t/members/add"),
            "TeamMember.ReadWrite.All"
        );
        assert_eq!(p("GET", "/teams/t/members"), "TeamMember.Read.All");
        assert_eq!(p("GET", "/groups/g/owners"), "GroupMember.Read.All");
        assert_eq!(p("POST", "/teams/t/archive"), "TeamSettings.ReadWrite.All");
        assert_eq!(
            p("GET", "/appCatalogs/teamsApps?$filter=x"),
            "AppCatalog.Read.All"
        );
        assert_eq!(
            p("POST", "/teams/t/installedApps"),
            "TeamsAppInstallation.ReadWriteForTeam.All"
        );
        assert_eq!(
            p("POST", "/users/u/teamwork/installedApps"),
            "TeamsAppInstallation.ReadWriteSelfForUser.All"
        );
        assert_eq!(
            p("GET", "/users/u/teamwork/installedApps/i/chat"),
            "TeamsAppInstallation.ReadForUser.All"
        );
    }
}
