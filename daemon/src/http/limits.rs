//! What one request may bring (SPEC §10): a URI of at most 8 KiB (414) and a body of
//! at most 1 MiB (413) on every endpoint. The body is read here, before routing, so
//! an endpoint that reads none (a GET, the reload) refuses an oversized one too, and
//! a chunked body is held to the same limit as an announced one; one announced over
//! the limit is refused without reading it. A body must arrive within
//! `http.body_timeout` of the headers (408), so a slow client holds its connection
//! that long at most.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::http::errors::error;

/// The largest body of any request.
pub const MAX_BODY: usize = 1024 * 1024;
/// The longest URI (path and query) of any request: hyper's own limit is 64 KiB,
/// and it answers that one without a body.
pub const MAX_URI: usize = 8 * 1024;

/// Refuses an over-long URI, reads the body within `body_timeout` (408) and at most
/// [`MAX_BODY`] (413), then routes the request.
pub async fn limits(
    State(body_timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let uri = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri > MAX_URI {
        return error(
            StatusCode::URI_TOO_LONG,
            format!("the URI is {uri} bytes long, over the limit of {MAX_URI}"),
        );
    }
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(body_timeout, Limited::new(body, MAX_BODY).collect());
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Ok(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            );
        }
        Err(_) => {
            let within = humantime::format_duration(body_timeout);
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {within}"),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(body))).await
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over the limit of {MAX_BODY} bytes (1 MiB)"),
    )
}
