//! A Moodle stand-in that reflects the request, as a proxy, WAF or debug page might: every POST
//! to the web-service endpoint is answered 200 with its own form body as HTML, so whatever the
//! bridge copies from a non-JSON answer is exactly what it sent, token included.

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

struct Echo;

impl Respond for Echo {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut page = req.body.clone();
        page.extend_from_slice(b"\n<html><body>request logged</body></html>");
        ResponseTemplate::new(200).set_body_raw(page, "text/html")
    }
}

pub async fn start() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/webservice/rest/server.php"))
        .respond_with(Echo)
        .mount(&server)
        .await;
    server
}
