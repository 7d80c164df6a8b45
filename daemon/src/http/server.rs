//! The HTTP server of `forgewatch run` (SPEC §10, end): serves the API's [`Router`]
//! on a listener with hyper's HTTP/1 connections, bounding what one client can
//! hold, so that a flood of slow clients never stops polling, deliveries or
//! `/healthz` for others ([`HttpLimits`]):
//!
//! - headers: hyper's header read timeout, whose timer starts whenever the
//!   connection waits for a request (a new connection, or after a response on a
//!   kept-alive one), so it is the idle timeout too; the connection is closed;
//! - bodies: read within `body_timeout` of the headers, else 408;
//! - connections: at most `max_connections` open (each holds a descriptor); one more
//!   is closed as soon as it is accepted, so it costs nothing and is never queued
//!   behind slow ones; once those time out, their slots serve others. The soft
//!   open-file limit is raised to the hard one at start, and the cap keeps half of
//!   it for everything else (forge and CI connections, SQLite, update processes).
//!
//! On shutdown the server stops accepting and lets each connection finish the
//! request it is serving (hyper's graceful shutdown).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::Listener;
use http_body_util::LengthLimitError;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::HttpLimits;
use crate::http::api::{MAX_BODY, error};

/// Serves `router` on `listener` within `limits` until `shutdown`, then waits for the
/// open connections to finish their requests.
pub async fn serve(
    mut listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let cap = connection_cap(limits.max_connections, raise_open_file_limit());
    let body_timeout = limits.body_timeout;
    let router = router.layer(axum::middleware::from_fn(move |request, next| {
        read_body_within(body_timeout, request, next)
    }));
    let service = TowerToHyperService::new(router);
    let slots = Arc::new(Semaphore::new(cap));
    let mut at_cap = false;
    loop {
        // `Listener::accept` retries failed accepts itself.
        let (stream, peer) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !at_cap {
                tracing::warn!(cap, "HTTP connections at their cap: new ones are closed");
                at_cap = true;
            }
            continue;
        };
        if at_cap {
            tracing::info!(cap, "HTTP connections below their cap again");
            at_cap = false;
        }
        let service = service.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let mut connection =
                std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "HTTP connection closed: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    // Every slot back: every connection is closed.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// At most `configured`, and at most half the open-file limit `fds`.
fn connection_cap(configured: usize, fds: u64) -> usize {
    let half = usize::try_from(fds / 2).unwrap_or(usize::MAX).max(1);
    if configured > half {
        tracing::warn!(
            configured,
            open_file_limit = fds,
            "`http.max_connections` lowered to half the open-file limit: {half}"
        );
    }
    configured.min(half)
}

/// Raises the soft open-file limit to the hard one (a service usually starts with
/// 1,024); returns the soft limit in force.
fn raise_open_file_limit() -> u64 {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!("cannot read the open-file limit: {e}");
            return 1024;
        }
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(e) => {
            tracing::warn!(soft, hard, "cannot raise the open-file limit: {e}");
            soft
        }
    }
}

/// Reads the request's body within `timeout` (408 otherwise), at most
/// [`MAX_BODY`] (413), before the handler sees it.
async fn read_body_within(timeout: Duration, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => {
            let e = e.into_inner();
            if e.is::<LengthLimitError>() {
                let message = format!("the request body is over {MAX_BODY} bytes");
                error(StatusCode::PAYLOAD_TOO_LARGE, message)
            } else {
                let message = format!("cannot read the request body: {e}");
                error(StatusCode::BAD_REQUEST, message)
            }
        }
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {}",
                humantime::format_duration(timeout)
            ),
        ),
    }
}
