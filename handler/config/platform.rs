//! What the hosting platform tells the process, as opposed to the app settings an operator sets:
//! the Functions host's port (custom-handler mode), the Lambda runtime, the settings file to
//! layer. Read through `Source::platform` like every other environment read, from the
//! environment only, and not listed by `handler settings`.

use super::Source;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    /// Port the Functions host gives a custom handler (the older name is still set by some hosts).
    pub custom_handler_port: Option<u16>,
    /// `AWS_LAMBDA_RUNTIME_API` is set: the binary runs as a Lambda function.
    pub lambda_runtime: bool,
}

impl Platform {
    pub fn from_process() -> Self {
        Self::read(&Source::from_process())
    }

    pub fn read(src: &Source) -> Self {
        Platform {
            custom_handler_port: ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"]
                .iter()
                .find_map(|k| src.platform(k))
                .and_then(|v| v.parse().ok()),
            lambda_runtime: src.platform("AWS_LAMBDA_RUNTIME_API").is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_host_port_comes_from_the_environment_never_from_the_settings_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("local.settings.json");
        std::fs::write(
            &file,
            r#"{"Values":{"FUNCTIONS_CUSTOMHANDLER_PORT":"7777","AWS_LAMBDA_RUNTIME_API":"x"}}"#,
        )
        .unwrap();
        let from_file = Source::from_map(BTreeMap::new()).with_local_settings(&file);
        assert_eq!(Platform::read(&from_file), Platform::default());
        let env = |pairs: &[(&str, &str)]| {
            Source::from_map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(
            Platform::read(&env(&[("FUNCTIONS_HTTPWORKER_PORT", "7072")])).custom_handler_port,
            Some(7072)
        );
        let both = env(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "7071"),
            ("FUNCTIONS_HTTPWORKER_PORT", "7072"),
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ]);
        assert_eq!(
            Platform::read(&both),
            Platform {
                custom_handler_port: Some(7071),
                lambda_runtime: true
            }
        );
        // Platform values are not app settings: `handler settings` does not list them.
        assert!(both.documented().is_empty());
    }
}
