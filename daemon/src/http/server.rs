//! The HTTP server of `forgewatch run` (SPEC §10, end): serves the API's [`Router`]
//! on a listener with hyper's HTTP/1 connections, bounding what one client can
//! hold, so that a flood of slow clients never stops polling, deliveries or
//! `/healthz` for others ([`HttpLimits`]):
//!
//! - headers: hyper's header read timeout, whose timer starts whenever the
//!   connection waits for a request (a new connection, or after a response on a
//!   kept-alive one), so it is the idle timeout too; the connection is closed;
//! - bodies: read within `body_timeout` of the headers, else 408 (by the router's
//!   [`limits`](crate::http::limits) layer, which holds every request's sizes);
//! - connections: at most `max_connections` open (each holds a descriptor); one more
//!   is closed as soon as it is accepted, so it costs nothing and is never queued
//!   behind slow ones; once those time out, their slots serve others. The soft
//!   open-file limit is raised to the hard one at start, and the cap keeps half of
//!   it for everything else (forge and CI connections, SQLite, update processes).
//!
//! On shutdown the server stops accepting and lets each connection finish the
//! request it is serving (hyper's graceful shutdown).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::HttpLimits;

/// Serves `router` on `listener` within `limits` until `shutdown`, then waits for the
/// open connections to finish their requests.
pub async fn serve(
    mut listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let cap = connection_cap(limits.max_connections, raise_open_file_limit());
    let service = TowerToHyperService::new(router);
    let slots = Arc::new(Semaphore::new(cap));
    // Connections closed since the cap was reached; logged when half the slots are
    // free again, so a cap held by a flood is logged once, not per connection.
    let mut refused: Option<u64> = None;
    loop {
        // `Listener::accept` retries failed accepts itself.
        let (stream, peer) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let count = refused.get_or_insert_with(|| {
                tracing::warn!(cap, "HTTP connections at their cap: new ones are closed");
                0
            });
            *count += 1;
            continue;
        };
        if let Some(count) = refused.filter(|_| slots.available_permits() >= cap / 2) {
            tracing::info!(
                cap,
                refused = count,
                "HTTP connections well below their cap again"
            );
            refused = None;
        }
        let connection = Connection {
            service: service.clone(),
            header_timeout: limits.header_timeout,
            shutdown: shutdown.clone(),
            _slot: slot,
        };
        tokio::spawn(connection.serve(stream, peer));
    }
    drop(listener);
    // Every slot back: every connection is closed.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// What serving one accepted connection needs; its slot is freed when it ends.
struct Connection {
    service: TowerToHyperService<Router>,
    header_timeout: Duration,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        let connection = builder.serve_connection(TokioIo::new(stream), self.service);
        let mut connection = std::pin::pin!(connection);
        let served = tokio::select! {
            served = connection.as_mut() => served,
            () = self.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = served {
            tracing::debug!(%peer, "HTTP connection closed: {e}");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::connection_cap;

    #[test]
    fn the_cap_keeps_half_the_open_file_limit_for_the_rest() {
        assert_eq!(connection_cap(2048, 1_048_576), 2048);
        assert_eq!(connection_cap(2048, 1024), 512);
        assert_eq!(connection_cap(600, 1024), 512);
        assert_eq!(connection_cap(8, 1), 1);
    }
}
