//! [`GraphSend`] over the Graph client (`crate::graph`: token cache, retries, pacing by the
//! throttling table, typed errors). Creations are repeated only after a 429 — after a 5xx or a
//! lost answer the course code looks the group or team up before asking again.

use super::api::{GraphReply, GraphRequest, GraphSend, Method, TeamsError};
use crate::graph::{GraphClient, GraphError, Repeat};
use async_trait::async_trait;
use serde_json::json;

fn repeat_of(req: &GraphRequest) -> Repeat {
    let path = req.path.split('?').next().unwrap_or_default();
    let creates = req.method == Method::Post
        && (path == "/groups" || path == "/teams" || path.ends_with("/archive"));
    if creates {
        Repeat::OnlyIfThrottled
    } else {
        Repeat::Idempotent
    }
}

#[async_trait]
impl GraphSend for GraphClient {
    async fn send(&self, req: GraphRequest) -> Result<GraphReply, TeamsError> {
        let method = match req.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let repeat = repeat_of(&req);
        match GraphClient::send(self, method, &req.path, req.body.as_ref(), &[], repeat).await {
            Ok(r) => {
                let mut headers = Vec::new();
                if let Some(l) = r.location {
                    headers.push(("location".to_string(), l));
                }
                if let Some(l) = r.content_location {
                    headers.push(("content-location".to_string(), l));
                }
                Ok(GraphReply {
                    status: r.status,
                    headers,
                    body: (!r.body.is_null()).then_some(r.body),
                })
            }
            Err(e) if e.is_fatal() => Err(TeamsError::Fatal(e.to_string())),
            Err(e @ GraphError::NotFound { .. }) => Err(TeamsError::NotFound(e.to_string())),
            // A refused request is an answer the course code reads (409: the team exists).
            Err(GraphError::Status {
                status,
                code,
                message,
                ..
            }) => Ok(GraphReply {
                status,
                headers: Vec::new(),
                body: Some(json!({"error": {"code": code, "message": message}})),
            }),
            Err(e) => Err(TeamsError::Failed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_creations_wait_for_a_429_to_be_repeated() {
        let r = |method, path: &str| GraphRequest {
            method,
            path: path.into(),
            body: None,
        };
        assert_eq!(
            repeat_of(&r(Method::Post, "/teams")),
            Repeat::OnlyIfThrottled
        );
        assert_eq!(
            repeat_of(&r(Method::Post, "/groups")),
            Repeat::OnlyIfThrottled
        );
        assert_eq!(
            repeat_of(&r(Method::Post, "/teams/x/archive")),
            Repeat::OnlyIfThrottled
        );
        assert_eq!(
            repeat_of(&r(Method::Post, "/teams/x/members/add")),
            Repeat::Idempotent
        );
        assert_eq!(
            repeat_of(&r(Method::Delete, "/teams/x/members/m")),
            Repeat::Idempotent
        );
    }
}
