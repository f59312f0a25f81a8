//! The token's access check (`check-config`): the functions the sync and the bot call, against
//! the list of the token's web service. Moved out of `handler/moodle/access.rs` with the Moodle
//! double (tests/testkit).

use bridge::moodle::access::{check, BOT_FUNCTIONS, SYNC_FUNCTIONS};
use testkit::fake_moodle::FakeMoodle;

#[tokio::test]
async fn functions_missing_from_the_service_are_named() {
    // The double's service lists the sync's functions, not the bot's.
    let fake = FakeMoodle::start().await;
    let ok = check(&fake.client(), SYNC_FUNCTIONS).await;
    assert!(ok.is_ok(), "{ok:?}");
    let err = check(&fake.client(), BOT_FUNCTIONS).await.unwrap_err();
    assert!(
        err.contains("lacks core_enrol_get_users_courses")
            && err.contains("mod_assign_get_assignments"),
        "{err}"
    );
}
