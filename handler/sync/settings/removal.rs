//! People who left: what a full pass does to those gone from the directory (off, suspend,
//! delete; bounded by a share), and what happens from a planned deletion date on.

use crate::config::Source;

/// What a suspended leaver keeps of what the bridge gave them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaverMemberships {
    /// Cohorts and role assignments stay: suspension alone blocks the account, and a cohort
    /// enrolment (which may unenrol and drop course data when a member leaves) is left alone.
    Keep,
    /// The bridge's cohort memberships and role assignments are taken away (others untouched).
    Remove,
}

/// People whose directory entry carries a planned deletion date.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaverSettings {
    /// Attribute holding the planned deletion date (`ENTPersonDateSuppression`); None: ignored.
    pub date_attr: Option<String>,
    /// Suspend the Moodle account from that date on.
    pub suspend_on_date: bool,
    pub memberships: LeaverMemberships,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalMode {
    Off,
    Suspend,
    Delete,
}

pub(super) struct Removal {
    pub mode: RemovalMode,
    pub max_share: f64,
    pub leavers: LeaverSettings,
}

pub(super) fn load(src: &mut Source) -> Removal {
    let mode = src
        .choice(
            "SYNC_REMOVAL",
            "off",
            &[
                ("off", RemovalMode::Off),
                ("suspend", RemovalMode::Suspend),
                ("delete", RemovalMode::Delete),
            ],
            "people who left the directory: off, suspend or delete (only on full passes: --force or SYNC_FULL_SCHEDULE)",
        )
        .unwrap_or(RemovalMode::Off);
    let max_share = src.parse(
        "SYNC_REMOVAL_MAX_SHARE",
        0.05f64,
        "refuse removals touching more than this share of synced users unless forced",
    );
    if !(0.0..=1.0).contains(&max_share) {
        src.problem("SYNC_REMOVAL_MAX_SHARE: between 0 and 1");
    }
    let date_attr = src.string(
        "SYNC_DELETION_DATE_ATTRIBUTE",
        "ENTPersonDateSuppression",
        "attribute with a person's planned deletion date (dd/mm/yyyy, yyyy-mm-dd or GeneralizedTime); `-` ignores it",
    );
    let suspend_on_date = src.flag(
        "SYNC_SUSPEND_ON_DELETION_DATE",
        true,
        "suspend the Moodle account of a person whose planned deletion date has come (not created if it has none)",
    );
    let memberships = src
        .choice(
            "SYNC_LEAVER_MEMBERSHIPS",
            "keep",
            &[
                ("keep", LeaverMemberships::Keep),
                ("remove", LeaverMemberships::Remove),
            ],
            "a suspended leaver's cohorts and role assignments given by the bridge: keep or remove",
        )
        .unwrap_or(LeaverMemberships::Keep);
    Removal {
        mode,
        max_share,
        leavers: LeaverSettings {
            date_attr: (!date_attr.is_empty() && date_attr != "-").then_some(date_attr),
            suspend_on_date,
            memberships,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::problems;

    #[test]
    fn a_removal_mode_outside_the_set_is_a_problem_listing_the_allowed_values() {
        let p = problems(&[
            ("SYNC_REMOVAL", "purge"),
            ("SYNC_LEAVER_MEMBERSHIPS", "drop"),
        ]);
        assert_eq!(
            p,
            [
                "SYNC_REMOVAL: \"purge\" is not off, suspend or delete",
                "SYNC_LEAVER_MEMBERSHIPS: \"drop\" is not keep or remove",
            ]
        );
    }
}
