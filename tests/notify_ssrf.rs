//! Channel posts cannot be turned against the inside (issue 19 item 2, SSRF): http, IP literals
//! (loopback, cloud metadata), a Workflows-looking host that resolves to a private address, and
//! redirects are all refused — before any connection where possible, at connection time by the
//! client's resolver otherwise.

use bridge::notify::webhook_send::{PostError, WebhookSender};
use bridge::notify::webhook_url::UrlRefusal;
use bridge::outbound::public_dns::PublicResolver;
use serde_json::json;
use std::net::IpAddr;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HOST: &str = "prod-27.westus.logic.azure.com";

fn url(host: &str) -> String {
    format!("https://{host}/workflows/abc/triggers/manual/paths/invoke?sig=s")
}

/// A resolver that says every name is at `ip` (and records that it was asked).
fn resolving_to(ip: &'static str) -> PublicResolver {
    PublicResolver::with_lookup(move |_| Some(vec![ip.parse::<IpAddr>().unwrap()]))
}

#[tokio::test]
async fn http_ip_literals_and_metadata_addresses_are_refused_before_any_connection() {
    // If a request got out, it would go to this public-looking address; none must.
    let sender = WebhookSender::new(resolving_to("52.1.2.3"), None).unwrap();
    let body = json!({"type": "message"});
    let cases = [
        (format!("http://{HOST}/workflows/abc"), UrlRefusal::NotHttps),
        (
            "https://127.0.0.1/workflows/abc".to_string(),
            UrlRefusal::IpLiteral,
        ),
        (
            "https://169.254.169.254/metadata/instance".to_string(),
            UrlRefusal::IpLiteral,
        ),
        (
            "https://[::1]/workflows/abc".to_string(),
            UrlRefusal::IpLiteral,
        ),
        (
            "https://2130706433/workflows/abc".to_string(),
            UrlRefusal::IpLiteral,
        ),
        (
            "https://localhost/workflows/abc".to_string(),
            UrlRefusal::HostNotAllowed,
        ),
    ];
    for (u, want) in cases {
        assert_eq!(
            sender.post("k", &u, &body).await,
            Err(PostError::Refused(want)),
            "{u}"
        );
    }
}

#[tokio::test]
async fn an_allowed_host_resolving_to_a_private_or_link_local_address_is_refused() {
    for ip in [
        "10.0.0.5",
        "127.0.0.1",
        "169.254.169.254",
        "192.168.1.10",
        "fd00::1",
    ] {
        let r = PublicResolver::with_lookup(move |_| Some(vec![ip.parse::<IpAddr>().unwrap()]));
        let sender = WebhookSender::new(r, None).unwrap();
        let e = sender.post("k", &url(HOST), &json!({})).await.unwrap_err();
        assert!(
            matches!(&e, PostError::Address(m) if m.contains("non-public")),
            "{ip}: {e}"
        );
        assert!(e.disables(), "the configuration is disabled, not retried");
    }
}

#[tokio::test]
async fn the_client_itself_refuses_a_private_address_at_connection_time() {
    // A name that passes the pre-check but resolves inside when connecting (rebinding) is
    // stopped by the client's resolver: here a double on loopback that must see no request.
    let inside = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&inside)
        .await;
    let client = bridge::outbound::http::untrusted(resolving_to("127.0.0.1")).unwrap();
    let port = inside.address().port();
    let e = client
        .post(format!("http://rebind.example:{port}/"))
        .send()
        .await
        .unwrap_err();
    assert!(
        bridge::redact::error_chain(&e).contains("non-public"),
        "{}",
        bridge::redact::error_chain(&e)
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/workflows/abc/triggers/manual/paths/invoke"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/stolen", server.uri())),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/stolen"))
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&server)
        .await;
    let double = url::Url::parse(&server.uri()).unwrap();
    let sender = WebhookSender::new(PublicResolver::default(), Some(double)).unwrap();
    let e = sender.post("k", &url(HOST), &json!({})).await.unwrap_err();
    assert_eq!(e, PostError::Redirect(302));
    assert!(e.disables());
    let hits = server.received_requests().await.unwrap();
    assert_eq!(hits.len(), 1, "one POST, the redirect not followed");
}
