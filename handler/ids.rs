//! Typed ids, so a Moodle user id can never be passed where a course id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! numeric_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

numeric_id!(MoodleUserId);
numeric_id!(MoodleCourseId);
numeric_id!(MoodleCohortId);
numeric_id!(MoodleCategoryId);
numeric_id!(MoodleRoleId);
numeric_id!(MoodleAssignmentId);
string_id!(
    /// Microsoft Entra object id of a user.
    EntraObjectId
);
string_id!(TeamId);
string_id!(ChannelId);
string_id!(ConversationId);
string_id!(TenantId);
string_id!(
    /// The Functions host's invocation id (or one we mint in `serve` mode).
    InvocationId
);
