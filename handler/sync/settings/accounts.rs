//! Which accounts the sync creates and manages: declared duplicates, password mail, protected users.

use crate::config::Source;

pub(super) struct Accounts {
    pub password_mail: bool,
    pub skip_declared_duplicates: bool,
    pub protected_users: Vec<String>,
}

pub(super) fn load(src: &mut Source) -> Accounts {
    let password_mail = src.flag(
        "SYNC_MANUAL_PASSWORD_MAIL",
        false,
        "accounts with an internal auth (SYNC_USER_AUTH=manual…): let Moodle create a password and e-mail it (otherwise a random password nobody knows; SSO accounts never get one)",
    );
    let skip_declared_duplicates = src
        .choice(
            "SYNC_DECLARED_DUPLICATES",
            "skip",
            &[("skip", true), ("sync", false)],
            "entries carrying seeAlso (the ENT's declared duplicate accounts): skip, or sync them like any entry",
        )
        .unwrap_or(true);
    let protected_users = src
        .string(
            "SYNC_PROTECTED_USERS",
            "",
            "extra Moodle usernames the sync never manages (other site administrators), comma-separated",
        )
        .split(',')
        .map(|u| u.trim().to_lowercase())
        .filter(|u| !u.is_empty())
        .collect();
    Accounts {
        password_mail,
        skip_declared_duplicates,
        protected_users,
    }
}
