//! Entra → Moodle users into the real Moodle of `../shared/moodle-lab` (started by the test
//! script): Entra users served by the Graph double, synced through the sync run, then read back
//! through Moodle's own web service — an account created for the new user (auth oauth2), an
//! existing account linked by e-mail and updated, a change in Entra written, the account of a
//! user removed from Entra suspended, and no "New user account" password mail for anyone; with
//! `ENTRA_SYNC_PHOTO`, an Entra photo becomes the user's Moodle picture (the lab prepared by
//! `tests/moodle-lab/photo.php`: the picture function, uploads on the service, editprofile).
//! Every username and address carries the test's own prefix (`testkit::moodle_lab`).

use bridge::config::Source;
use bridge::graph::GraphClient;
use bridge::ids::MoodleUserId;
use bridge::moodle::users::{self, MoodleUser, UserField, UserFields};
use bridge::store::sqlite::SqliteStore;
use bridge::store::{tables, SharedStore};
use bridge::sync::entra::{EntraEnv, EntraSettings, ENTITY};
use bridge::sync::run::{run_inline, SyncEnv};
use bridge::sync::{RunReport, SyncOptions, SyncSettings};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use testkit::graph_double::GraphDouble;
use testkit::moodle_lab::{lab, mails_to, smtp_sink, unique_prefix};

const CLAIRE: &str = "22222222-2222-4222-8222-000000000001";
const LOUIS: &str = "22222222-2222-4222-8222-000000000002";
const NATHAN: &str = "22222222-2222-4222-8222-000000000003";

struct World {
    graph: GraphDouble,
    env: SyncEnv,
    _dir: tempfile::TempDir,
}

async fn world(p: &str) -> World {
    world_with(p, &[]).await
}

async fn world_with(p: &str, settings: &[(&str, &str)]) -> World {
    let graph = GraphDouble::start().await;
    {
        let mut s = graph.lock();
        s.users.delta_page_size = 2;
        for (id, name, first, last, dept, enabled) in [
            (CLAIRE, "claire", "Claire", "Martin", "Maths", true),
            (LOUIS, "louis", "Louis", "Bernard", "2nde B", true),
            (NATHAN, "nathan", "Nathan", "Fournier", "2nde B", false),
        ] {
            s.users.upsert(json!({
                "id": id,
                "userPrincipalName": format!("{p}{name}@ecole.example"),
                "mail": format!("{p}{name}@ecole.example"),
                "givenName": first,
                "surname": last,
                "department": dept,
                "accountEnabled": enabled,
            }));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
    store.ensure_tables().await.unwrap();
    let env: BTreeMap<String, String> = [("SYNC_REMOVAL_MAX_SHARE", "1")]
        .iter()
        .chain(settings)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut src = Source::from_map(env);
    let entra = EntraSettings::load(&mut src);
    let sync = SyncSettings::load(&mut src);
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    let client = GraphClient::from_settings(reqwest::Client::new(), &graph.settings()).unwrap();
    World {
        env: SyncEnv {
            settings: Arc::new(sync),
            store,
            blobs: None,
            moodle: lab().client(),
            teams: None,
            entra: Some(EntraEnv {
                graph: Arc::new(client),
                settings: Arc::new(entra),
            }),
        },
        graph,
        _dir: dir,
    }
}

impl World {
    async fn run(&self) -> RunReport {
        let opts = SyncOptions {
            entra: true,
            ..Default::default()
        };
        let r = run_inline(&self.env, &opts, None).await.expect("run");
        assert!(r.complete && r.errors.is_empty(), "{}", r.render());
        r
    }

    async fn linked_id(&self, entra_id: &str) -> Option<i64> {
        self.env
            .store
            .get(tables::MAPPINGS, "entra-user", entra_id)
            .await
            .unwrap()
            .and_then(|e| e.int("moodle_user_id"))
    }
}

/// What Moodle's web service says about `username` (None: no such account).
async fn read_back(username: &str) -> Option<MoodleUser> {
    users::get_by_field(
        &lab().client(),
        UserField::Username,
        &[username.to_string()],
    )
    .await
    .expect("core_user_get_users_by_field")
    .into_iter()
    .next()
}

async fn cleanup(prefix: &str) {
    let ids: Vec<MoodleUserId> = lab()
        .sql(&format!(
            "select id from mdl_user where deleted = 0 and username like '{prefix}%'"
        ))
        .into_iter()
        .filter_map(|r| r[0].parse::<MoodleUserId>().ok())
        .collect();
    let _ = users::delete(&lab().client(), &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_users_land_in_the_real_moodle_linked_updated_and_suspended_without_mail() {
    smtp_sink();
    let p = unique_prefix("entra");
    // Claire already has an account under another username: the sync links it by e-mail.
    let existing = UserFields {
        username: format!("{p}cmartin"),
        firstname: "Claire".into(),
        lastname: "Martin".into(),
        email: format!("{p}claire@ecole.example"),
        department: "Old".into(),
        auth: "nologin".into(),
        ..Default::default()
    };
    let made = users::create(&lab().client(), &[existing.create_item(false)])
        .await
        .expect("the lab takes the existing account");
    let claire_id = made[0].id.get();
    let w = world(&p).await;

    let r = w.run().await;
    let c = &r.counts[&ENTITY];
    let e = r.entra.as_ref().unwrap();
    assert_eq!((c.created, e.linked, c.failed), (1, 1, 0), "{}", r.render());
    assert!(
        r.issues
            .iter()
            .any(|i| i.key == NATHAN && i.outcome == "skipped"),
        "disabled in Entra: no account: {}",
        r.render()
    );
    let louis = read_back(&format!("{p}louis@ecole.example"))
        .await
        .expect("louis created in Moodle");
    assert_eq!(
        (
            louis.firstname.as_str(),
            louis.lastname.as_str(),
            louis.department.as_str(),
            louis.auth.as_str()
        ),
        ("Louis", "Bernard", "2nde B", "oauth2")
    );
    assert_eq!(louis.email, format!("{p}louis@ecole.example"));
    assert!(!louis.suspended);
    let claire = read_back(&format!("{p}cmartin")).await.unwrap();
    assert_eq!(claire.id.get(), claire_id, "linked, not duplicated");
    assert_eq!(claire.department, "Maths", "mapped field written on link");
    assert!(read_back(&format!("{p}claire@ecole.example"))
        .await
        .is_none());
    assert!(read_back(&format!("{p}nathan@ecole.example"))
        .await
        .is_none());
    assert_eq!(w.linked_id(CLAIRE).await, Some(claire_id));
    assert_eq!(w.linked_id(LOUIS).await, Some(louis.id.get()));

    // A change in Entra is written, and only it.
    w.graph.lock().users.patch(
        LOUIS,
        json!({"department": "1ere C", "surname": "Bernard-Roy"}),
    );
    let r = w.run().await;
    assert_eq!(r.counts[&ENTITY].updated, 1, "{}", r.render());
    let louis = read_back(&format!("{p}louis@ecole.example")).await.unwrap();
    assert_eq!(
        (louis.department.as_str(), louis.lastname.as_str()),
        ("1ere C", "Bernard-Roy")
    );

    // Removed from Entra (to the deleted items): the account is suspended, not deleted.
    w.graph.lock().users.remove(LOUIS, false);
    let r = w.run().await;
    assert_eq!(r.entra.as_ref().unwrap().suspended, 1, "{}", r.render());
    let louis = read_back(&format!("{p}louis@ecole.example")).await.unwrap();
    assert!(louis.suspended, "suspended in Moodle");
    assert!(!read_back(&format!("{p}cmartin")).await.unwrap().suspended);

    // A run with nothing new changes nothing in Moodle.
    let r = w.run().await;
    assert_eq!(r.moodle_writes(), 0, "{}", r.render());

    // Nobody got a "New user account" mail (oauth2 accounts have no password).
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(mails_to(&p).is_empty(), "password mails were sent");
    cleanup(&p).await;
}

/// A 16×16 JPEG made with PHP's GD (`imagejpeg`, quality 80): an image Moodle can process.
const JPEG_16: &str = "/9j/4AAQSkZJRgABAQEAYABgAAD//gA7Q1JFQVRPUjogZ2QtanBlZyB2MS4wICh1c2luZyBJSkcgSlBFRyB2NjIpLCBxdWFsaXR5ID0gODAK/9sAQwAGBAUGBQQGBgUGBwcGCAoQCgoJCQoUDg8MEBcUGBgXFBYWGh0lHxobIxwWFiAsICMmJykqKRkfLTAtKDAlKCko/9sAQwEHBwcKCAoTCgoTKBoWGigoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgo/8AAEQgAEAAQAwEiAAIRAQMRAf/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/EAB8BAAMBAQEBAQEBAQEAAAAAAAABAgMEBQYHCAkKC//EALURAAIBAgQEAwQHBQQEAAECdwABAgMRBAUhMQYSQVEHYXETIjKBCBRCkaGxwQkjM1LwFWJy0QoWJDThJfEXGBkaJicoKSo1Njc4OTpDREVGR0hJSlNUVVZXWFlaY2RlZmdoaWpzdHV2d3h5eoKDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uLj5OXm5+jp6vLz9PX29/j5+v/aAAwDAQACEQMRAD8A4SiiivPP18//2Q==";

/// `picture` of the account in the lab's database (0 = Moodle's default picture).
fn picture_field(username: &str) -> i64 {
    assert!(username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "@.".contains(c)));
    lab().sql(&format!(
        "select picture from mdl_user where deleted = 0 and username = '{username}'"
    ))[0][0]
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_photo_becomes_the_users_picture_in_the_real_moodle() {
    use base64::Engine as _;
    smtp_sink();
    let prepared = lab().php_json("photo.php", &[]);
    assert!(prepared["serviceid"].as_i64().is_some(), "{prepared}");
    let p = unique_prefix("photo");
    let w = world_with(&p, &[("ENTRA_SYNC_PHOTO", "true")]).await;
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(JPEG_16)
        .unwrap();
    w.graph.lock().users.photos.insert(
        LOUIS.to_string(),
        testkit::graph_double::Photo {
            bytes: jpeg,
            content_type: "image/jpeg".into(),
            etag: Some("W/\"louis-1\"".into()),
            width: 16,
            height: 16,
        },
    );
    let louis = format!("{p}louis@ecole.example");
    let claire = format!("{p}claire@ecole.example");

    let r = w.run().await;
    assert_eq!(r.counts[&ENTITY].created, 2, "{}", r.render());
    let photos = r.entra.as_ref().unwrap().photos.clone().unwrap_or_default();
    assert_eq!(
        (photos.updated, photos.none, photos.failed, photos.refused),
        (1, 1, 0, 0),
        "Louis's photo set, Claire has none: {}",
        r.render()
    );
    assert!(
        r.issues
            .iter()
            .all(|i| i.entity != bridge::sync::entra::photo::ENTITY),
        "{}",
        r.render()
    );
    assert_ne!(
        picture_field(&louis),
        0,
        "Moodle stored a picture for Louis"
    );
    assert_eq!(
        picture_field(&claire),
        0,
        "no photo: Moodle's default picture"
    );
    // What Moodle's web service shows: Louis's picture is his own file, not the theme's default.
    let answer = lab()
        .client()
        .call_value(
            "core_user_get_users_by_field",
            &bridge::moodle::Form::new()
                .field("field", "username")
                .field("values[0]", &louis)
                .field("values[1]", &claire),
        )
        .await
        .unwrap();
    let url_of = |name: &str| {
        answer
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .and_then(|u| u["profileimageurl"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        url_of(&louis).contains("/pluginfile.php/") && url_of(&louis).contains("/user/icon/"),
        "{}",
        url_of(&louis)
    );
    assert!(
        !url_of(&claire).contains("/user/icon/"),
        "{}",
        url_of(&claire)
    );

    // Nothing changed, nothing due: no photo read, no Moodle write.
    let r = w.run().await;
    assert_eq!(r.moodle_writes(), 0, "{}", r.render());
    assert!(
        r.graph_calls.keys().all(|k| !k.contains("photo")),
        "{}",
        r.render()
    );
    cleanup(&p).await;
}
