//! The HTTP listener of `serve` and of the custom-handler mode, with the limits `axum::serve`
//! does not set: a client gets `read_timeout` to send its headers (hyper's header-read timer)
//! and at most `read_timeout` between two pieces of its body, and at most `max_connections`
//! are served at once. Without them every half-open connection was held until the client gave
//! up (1,500 of them for 40 s), each one costing a task and a file descriptor.

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutBody};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub read_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_settings(core: &crate::config::CoreSettings) -> Self {
        Limits {
            read_timeout: Duration::from_secs(core.read_timeout_secs),
            max_connections: core.max_connections,
        }
    }
}

/// How long open connections get to finish after the shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// Serve `router` until `shutdown` resolves, then let open requests finish (up to `DRAIN`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let service = ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.read_timeout))
        .map_request(|r: http::Request<TimeoutBody<Incoming>>| r.map(axum::body::Body::new))
        .service(router);
    // HTTP/1.1 only (what the Functions host, Teams, Moodle and proxies speak): hyper's header
    // timer runs from the moment a connection waits for a request, so a client that never sends
    // a byte is closed too. The auto (h1/h2) builder sniffs the protocol first, with no timer.
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: at the cap, new connections wait in the kernel's backlog, not in memory.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; exiting anyway");
    }
    Ok(())
}
