//! Typed ids, so a Moodle user id can never be passed where a course id is expected, and an id
//! that exists is a valid one: the fields are private, values come in through `new` / `FromStr` /
//! serde (`try_from`), which refuse what the service could never have issued.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A value refused as an id, naming the id type and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {why}")]
pub struct IdError {
    pub kind: &'static str,
    pub why: String,
}

macro_rules! numeric_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "i64", into = "i64")]
        pub struct $name(i64);

        impl $name {
            /// Moodle numbers its rows from 1: zero or a negative value is no id.
            pub fn new(id: i64) -> Result<Self, IdError> {
                if id > 0 {
                    Ok($name(id))
                } else {
                    Err(IdError {
                        kind: stringify!($name),
                        why: format!("{id} is not a positive id"),
                    })
                }
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = IdError;
            fn try_from(id: i64) -> Result<Self, IdError> {
                $name::new(id)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let n = s.trim().parse::<i64>().map_err(|_| IdError {
                    kind: stringify!($name),
                    why: format!("{s:?} is not a number"),
                })?;
                $name::new(n)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident, $check:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                let check: fn(&str) -> Result<(), String> = $check;
                check(&id).map_err(|why| IdError {
                    kind: stringify!($name),
                    why,
                })?;
                Ok($name(id))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(id: String) -> Result<Self, IdError> {
                $name::new(id)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// Present, without surrounding spaces or control characters (ids that go into URLs and keys).
fn opaque(id: &str) -> Result<(), String> {
    if id.is_empty() {
        Err("empty".into())
    } else if id.trim() != id || id.chars().any(char::is_control) {
        Err(format!(
            "{id:?} has spaces or control characters around or in it"
        ))
    } else {
        Ok(())
    }
}

/// Entra object and tenant ids are GUIDs (`8-4-4-4-12` hex digits).
fn guid(id: &str) -> Result<(), String> {
    uuid::Uuid::try_parse(id)
        .map(|_| ())
        .map_err(|_| format!("{id:?} is not a GUID"))
        .and_then(|_| {
            if id.len() == 36 {
                Ok(())
            } else {
                Err(format!("{id:?} is not a GUID in its 8-4-4-4-12 form"))
            }
        })
}

numeric_id!(MoodleUserId);
numeric_id!(MoodleCourseId);
numeric_id!(MoodleCohortId);
numeric_id!(MoodleCategoryId);
numeric_id!(MoodleRoleId);
numeric_id!(MoodleAssignmentId);
string_id!(
    /// Microsoft Entra object id of a user.
    EntraObjectId,
    guid
);
string_id!(
    /// A team's id: the GUID of its Microsoft 365 group.
    TeamId,
    guid
);
string_id!(
    /// `19:…@thread.tacv2`, opaque to us.
    ChannelId,
    opaque
);
string_id!(ConversationId, opaque);
string_id!(TenantId, guid);
string_id!(
    /// The Functions host's invocation id (or one we mint in `serve` mode).
    InvocationId,
    opaque
);

impl InvocationId {
    /// A fresh id, for invocations the host did not name (`serve` mode, timers we run ourselves).
    pub fn mint() -> Self {
        InvocationId(uuid::Uuid::new_v4().to_string())
    }
}

/// Serde `deserialize_with` for a Moodle field where 0 means "none" (the front page's category):
/// 0 or null becomes `None`, a negative value is refused.
pub fn zero_is_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64, Error = IdError>,
{
    match Option::<i64>::deserialize(d)? {
        None | Some(0) => Ok(None),
        Some(n) => T::try_from(n).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moodle_ids_are_positive() {
        assert_eq!(MoodleUserId::new(7).map(MoodleUserId::get), Ok(7));
        for bad in [0, -1, i64::MIN] {
            let err = MoodleCourseId::new(bad).unwrap_err();
            assert_eq!(err.kind, "MoodleCourseId");
        }
        assert_eq!("42".parse::<MoodleCohortId>().map(|c| c.get()), Ok(42));
        assert!("4x".parse::<MoodleCohortId>().is_err());
        assert!("0".parse::<MoodleCohortId>().is_err());
    }

    #[test]
    fn ids_are_checked_when_deserialized() {
        let ok: Vec<MoodleUserId> = serde_json::from_str("[1, 2]").unwrap();
        assert_eq!(ok.iter().map(|i| i.get()).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(serde_json::to_string(&ok).unwrap(), "[1,2]");
        let err = serde_json::from_str::<MoodleUserId>("0").unwrap_err();
        assert!(err.to_string().contains("not a positive id"), "{err}");
        let err = serde_json::from_str::<EntraObjectId>("\"not-a-guid\"").unwrap_err();
        assert!(err.to_string().contains("not a GUID"), "{err}");
    }

    #[test]
    fn a_zero_category_is_no_category() {
        #[derive(Deserialize)]
        struct C {
            #[serde(default, deserialize_with = "zero_is_none")]
            categoryid: Option<MoodleCategoryId>,
        }
        let c = |j: &str| serde_json::from_str::<C>(j).map(|c| c.categoryid.map(|i| i.get()));
        assert_eq!(c(r#"{"categoryid": 0}"#).unwrap(), None);
        assert_eq!(c(r#"{}"#).unwrap(), None);
        assert_eq!(c(r#"{"categoryid": 3}"#).unwrap(), Some(3));
        assert!(c(r#"{"categoryid": -3}"#).is_err());
    }

    #[test]
    fn entra_ids_are_guids_and_others_are_present() {
        let oid = "00aa00aa-bb11-cc22-dd33-44ee44ee44ee";
        assert_eq!(EntraObjectId::new(oid).unwrap().as_str(), oid);
        assert_eq!(
            serde_json::to_string(&TenantId::new(oid).unwrap()).unwrap(),
            format!("\"{oid}\"")
        );
        for bad in [
            "",
            "x",
            "00aa00aabb11cc22dd3344ee44ee44ee",
            " 00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
        ] {
            assert!(EntraObjectId::new(bad).is_err(), "{bad:?}");
            assert!(TenantId::new(bad).is_err(), "{bad:?}");
        }
        assert!(ConversationId::new("a:1x").is_ok());
        for bad in ["", " a", "a\n"] {
            assert!(ConversationId::new(bad).is_err(), "{bad:?}");
            assert!(InvocationId::new(bad).is_err(), "{bad:?}");
        }
        assert_ne!(InvocationId::mint(), InvocationId::mint());
    }
}
