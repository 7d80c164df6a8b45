//! Every error the HTTP API answers is JSON `{"error": "…"}` (SPEC §10), whatever
//! refused the request. Handlers answer with [`error`]; what axum refuses before a
//! handler runs (an unknown route, a wrong method, a path or query that does not
//! parse) comes as plain text or an empty body, and [`json_errors`], the router's
//! outermost layer, rewrites it.
//!
//! hyper answers a request it cannot parse before the router sees it (a URI over
//! 64 KiB: 414, a head over its buffer: 431, bad syntax: 400), with an empty body:
//! nothing above hyper can reach those, so `http::limits` refuses URIs long before
//! hyper's limit, with JSON.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The longest text of a refusal carried over into its JSON message.
const MAX_MESSAGE: usize = 4096;

/// A JSON error answer.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Turns an error answer that is not JSON into one with the same status and headers
/// (the `Allow` of a 405): its text as the message, or the status's reason.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match (text.trim(), parts.headers.get(header::ALLOW)) {
        ("", Some(allow)) if status == StatusCode::METHOD_NOT_ALLOWED => format!(
            "{method} is not allowed here (allowed: {})",
            String::from_utf8_lossy(allow.as_bytes())
        ),
        ("", _) => status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase(),
        (text, _) => text.to_owned(),
    };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    (parts, axum::Json(json!({ "error": message }))).into_response()
}
