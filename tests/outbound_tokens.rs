//! The outbound token sources against doubles of the Entra endpoints: request shapes from
//! `../shared/fixtures/graph/token-client-credentials.json`, a client assertion checked by the
//! double with the TEST-ONLY fixture key, single-flight refresh counted by the double, and the
//! device-code flow with its pending / slow_down / declined / expired answers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bridge::config::Secret;
use bridge::outbound::token::client_credentials::ClientProof;
use bridge::outbound::token::{ClientCertificate, ClientCredentials, DeviceCode, DeviceCodePrompt};
use bridge::outbound::{TokenError, TokenSource};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

fn form_of(req: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect()
}

fn token_fixture() -> Value {
    testkit::fixture_json("graph/token-client-credentials.json")
}

fn http() -> reqwest::Client {
    bridge::outbound::http::shared().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_secret_request_matches_the_fixture_and_100_callers_share_one_request() {
    let fx = token_fixture();
    let server = MockServer::start().await;
    let expected: BTreeMap<String, String> =
        serde_json::from_value(fx["request"]["form"].clone()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let answer = fx["response"]["body"].clone();
    Mock::given(method("POST"))
        .and(path("/tenant/oauth2/v2.0/token"))
        .respond_with(move |req: &Request| {
            seen2.lock().unwrap().push(form_of(req));
            // Slow enough that all 100 callers arrive while the request is in flight.
            ResponseTemplate::new(200)
                .set_body_json(answer.clone())
                .set_delay(Duration::from_millis(200))
        })
        .expect(1)
        .mount(&server)
        .await;
    let endpoint = url::Url::parse(&format!("{}/tenant/oauth2/v2.0/token", server.uri())).unwrap();
    let source = Arc::new(
        ClientCredentials::new(
            http(),
            endpoint,
            expected["client_id"].clone(),
            ClientProof::Secret(Secret::new(expected["client_secret"].clone())),
        )
        .cached(),
    );
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let s = source.clone();
            tokio::spawn(async move { s.token(GRAPH_SCOPE).await })
        })
        .collect();
    for t in tasks {
        let token = t.await.unwrap().expect("token");
        assert_eq!(
            token.secret.expose(),
            fx["response"]["body"]["access_token"].as_str().unwrap()
        );
        let left = token.expires_at.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3599));
    }
    assert_eq!(seen.lock().unwrap().as_slice(), &[expected]);
    // `expect(1)` is verified when the server drops: the 100 callers cost one request.
}

#[tokio::test]
async fn a_refused_secret_names_the_aadsts_code_but_not_the_secret() {
    let fx = token_fixture();
    let bad = &fx["more_exchanges"][0]["response"];
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(bad["status"].as_u64().unwrap() as u16)
                .set_body_json(bad["body"].clone()),
        )
        .mount(&server)
        .await;
    let endpoint = url::Url::parse(&format!("{}/t/oauth2/v2.0/token", server.uri())).unwrap();
    let source = ClientCredentials::new(
        http(),
        endpoint,
        "client",
        ClientProof::Secret(Secret::new("PLACEHOLDER-CLIENT-SECRET-VALUE")),
    )
    .cached();
    let err = source.token(GRAPH_SCOPE).await.unwrap_err();
    assert!(matches!(err, TokenError::Refused { status: 401, .. }));
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("invalid_client") && text.contains("AADSTS7000215"),
        "{text}"
    );
    assert!(!text.contains("PLACEHOLDER-CLIENT-SECRET-VALUE"), "{text}");
    assert!(
        !text.contains("Trace ID"),
        "only the first line is kept: {text}"
    );
}

/// What the double saw of one client assertion.
fn verify_assertion(form: &BTreeMap<String, String>, audience: &str) -> Value {
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert!(!form.contains_key("client_secret"));
    let jwt = &form["client_assertion"];
    let header = jsonwebtoken::decode_header(jwt).expect("JWT header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    // Thumbprints of the certificate, computed here from its DER bytes; the SHA-1 one must also
    // equal the `x5t` that mint.py wrote into the fixture key set for the same certificate.
    let cert_pem = testkit::fixture("botframework/keys/endorsed-msteams.crt.pem");
    let der = pem_der(&cert_pem);
    use sha2::Digest;
    let s256 = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der));
    assert_eq!(header.x5t_s256.as_deref(), Some(s256.as_str()));
    let jwks = testkit::fixture_json("botframework/jwks.json");
    let x5t = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "test-kid-endorsed-msteams")
        .unwrap()["x5t"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(header.x5t.as_deref(), Some(x5t.as_str()));
    let public = testkit::fixture("botframework/keys/endorsed-msteams.pub.pem");
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[audience]);
    v.set_issuer(&["bot-app-id"]);
    v.validate_nbf = true;
    v.leeway = 0;
    v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &v)
        .expect("signature and claims verify with the certificate's public key")
        .claims;
    assert_eq!(claims["sub"], "bot-app-id");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (nbf, exp) = (
        claims["nbf"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(nbf <= now && now < exp && exp - nbf <= 600, "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    claims
}

fn pem_der(pem_text: &str) -> Vec<u8> {
    let b64: String = pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[tokio::test]
async fn client_certificate_assertion_is_verified_by_the_double() {
    let server = MockServer::start().await;
    let forms = Arc::new(Mutex::new(Vec::new()));
    let forms2 = forms.clone();
    Mock::given(method("POST"))
        .and(path("/tenant/oauth2/v2.0/token"))
        .respond_with(move |req: &Request| {
            forms2.lock().unwrap().push(form_of(req));
            ResponseTemplate::new(200).set_body_json(
                json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "cert-token"}),
            )
        })
        .expect(2)
        .mount(&server)
        .await;
    let endpoint = format!("{}/tenant/oauth2/v2.0/token", server.uri());
    let cert = ClientCertificate::from_pem(
        &testkit::fixture("botframework/keys/endorsed-msteams.crt.pem"),
        &Secret::new(testkit::fixture("botframework/keys/endorsed-msteams.pem")),
    )
    .expect("certificate");
    assert!(!format!("{cert:?}").contains("PRIVATE"));
    let source = ClientCredentials::new(
        http(),
        url::Url::parse(&endpoint).unwrap(),
        "bot-app-id",
        ClientProof::Certificate(cert),
    )
    .cached();
    let t = source.token(GRAPH_SCOPE).await.expect("token");
    assert_eq!(t.secret.expose(), "cert-token");
    source
        .token("https://api.botframework.com/.default")
        .await
        .expect("token for a second scope");
    let forms = forms.lock().unwrap().clone();
    assert_eq!(forms[0]["scope"], GRAPH_SCOPE);
    assert_eq!(forms[1]["scope"], "https://api.botframework.com/.default");
    let a = verify_assertion(&forms[0], &endpoint);
    let b = verify_assertion(&forms[1], &endpoint);
    assert_ne!(a["jti"], b["jti"], "every assertion has its own jti");

    // A wrong key for the certificate is caught by the double's signature check.
    let wrong = ClientCertificate::from_pem(
        &testkit::fixture("botframework/keys/endorsed-msteams.crt.pem"),
        &Secret::new(testkit::fixture("botframework/keys/other-issuer.pem")),
    )
    .unwrap();
    let jwt = wrong.assertion("bot-app-id", &endpoint).unwrap();
    let public = testkit::fixture("botframework/keys/endorsed-msteams.pub.pem");
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[&endpoint]);
    assert!(jsonwebtoken::decode::<Value>(jwt.expose(), &key, &v).is_err());
    assert!(ClientCertificate::from_pem("not a pem", &Secret::new("x")).is_err());
}

/// When each request came, with its form.
type Polls = Arc<Mutex<Vec<(Instant, BTreeMap<String, String>)>>>;

/// Answers a sequence of responses (the last one repeats) and records when each request came.
struct Sequence {
    answers: Mutex<VecDeque<ResponseTemplate>>,
    at: Polls,
}

impl Respond for Sequence {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.at.lock().unwrap().push((Instant::now(), form_of(req)));
        let mut a = self.answers.lock().unwrap();
        if a.len() > 1 {
            a.pop_front().unwrap()
        } else {
            a.front().unwrap().clone()
        }
    }
}

fn oauth_error(code: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "error": code,
        "error_description": format!("AADSTS70016: {code}"),
        "error_codes": [70016]
    }))
}

/// Entra double: `/devicecode` hands out a code (interval 1), `/token` answers `token_answers`.
async fn entra_double(token_answers: Vec<ResponseTemplate>) -> (MockServer, Polls, Polls) {
    let server = MockServer::start().await;
    let codes: Polls = Arc::default();
    let polls: Polls = Arc::default();
    Mock::given(method("POST"))
        .and(path("/tenant/oauth2/v2.0/devicecode"))
        .respond_with(Sequence {
            answers: Mutex::new(VecDeque::from([ResponseTemplate::new(200).set_body_json(json!({
                "user_code": "GBZ4Q7QLX",
                "device_code": "DAQABAAEAAAD-device-code",
                "verification_uri": "https://microsoft.com/devicelogin",
                "expires_in": 900,
                "interval": 1,
                "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code GBZ4Q7QLX to authenticate."
            }))])),
            at: codes.clone(),
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/tenant/oauth2/v2.0/token"))
        .respond_with(Sequence {
            answers: Mutex::new(token_answers.into()),
            at: polls.clone(),
        })
        .mount(&server)
        .await;
    (server, codes, polls)
}

const UNIT: Duration = Duration::from_millis(40);

fn device_source(server: &MockServer, prompts: Arc<Mutex<Vec<DeviceCodePrompt>>>) -> DeviceCode {
    let authority = url::Url::parse(&format!("{}/tenant/", server.uri())).unwrap();
    DeviceCode::new(
        http(),
        &authority,
        "admin-client",
        move |p: &DeviceCodePrompt| prompts.lock().unwrap().push(p.clone()),
    )
    .unwrap()
    .with_second(UNIT)
}

#[tokio::test]
async fn device_code_polls_at_the_interval_slows_down_and_then_refreshes() {
    let success = ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "scope": "AppCatalog.ReadWrite.All",
        "expires_in": 3599,
        "access_token": "delegated-token",
        "refresh_token": "refresh-1"
    }));
    let refreshed = ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "access_token": "delegated-token-2",
        "refresh_token": "refresh-2"
    }));
    let (server, codes, polls) = entra_double(vec![
        oauth_error("authorization_pending"),
        oauth_error("slow_down"),
        oauth_error("authorization_pending"),
        success,
        refreshed,
    ])
    .await;
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let source = device_source(&server, prompts.clone()).cached();
    let scope = "https://graph.microsoft.com/AppCatalog.ReadWrite.All";
    let started = Instant::now();
    let t = source.token(scope).await.expect("signed in");
    assert_eq!(t.secret.expose(), "delegated-token");

    let prompt = prompts.lock().unwrap()[0].clone();
    assert_eq!(prompt.user_code, "GBZ4Q7QLX");
    assert_eq!(prompt.verification_uri, "https://microsoft.com/devicelogin");
    assert!(prompt.message.contains("GBZ4Q7QLX"));
    let code_form = codes.lock().unwrap()[0].1.clone();
    assert_eq!(code_form["client_id"], "admin-client");
    assert_eq!(code_form["scope"], format!("{scope} offline_access"));

    let polls_now = polls.lock().unwrap().clone();
    assert_eq!(polls_now.len(), 4);
    for (_, form) in &polls_now {
        assert_eq!(
            form["grant_type"],
            "urn:ietf:params:oauth:grant-type:device_code"
        );
        assert_eq!(form["device_code"], "DAQABAAEAAAD-device-code");
    }
    // Interval 1 before each poll; after slow_down 1 + 5.
    let gaps: Vec<Duration> = std::iter::once(polls_now[0].0 - started)
        .chain(polls_now.windows(2).map(|w| w[1].0 - w[0].0))
        .collect();
    assert!(gaps[0] >= UNIT && gaps[1] >= UNIT, "{gaps:?}");
    assert!(gaps[2] >= UNIT * 6 && gaps[3] >= UNIT * 6, "{gaps:?}");

    // Cached for the scope; once dropped, the refresh token renews it without a new sign-in.
    source.token(scope).await.unwrap();
    assert_eq!(polls.lock().unwrap().len(), 4);
    source.clear();
    let t = source.token(scope).await.expect("refreshed");
    assert_eq!(t.secret.expose(), "delegated-token-2");
    let last = polls.lock().unwrap().last().unwrap().1.clone();
    assert_eq!(last["grant_type"], "refresh_token");
    assert_eq!(last["refresh_token"], "refresh-1");
    assert_eq!(codes.lock().unwrap().len(), 1, "no second sign-in");
    assert_eq!(prompts.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn device_code_stops_when_declined_or_expired() {
    for (code, words) in [
        ("authorization_declined", "declined"),
        ("expired_token", "expired"),
        ("bad_verification_code", "bad_verification_code"),
    ] {
        let (server, _codes, polls) = entra_double(vec![
            oauth_error("authorization_pending"),
            oauth_error(code),
        ])
        .await;
        let source = device_source(&server, Arc::default()).cached();
        let err = source.token("User.Read").await.unwrap_err();
        assert!(err.to_string().contains(words), "{code}: {err}");
        assert_eq!(
            polls.lock().unwrap().len(),
            2,
            "{code}: no poll after the final answer"
        );
    }
}
