//! Sending one request and reading its answer, shared by the conditional reads
//! and the writes: a transport failure counted and named (`Timeout` or
//! `Transport`, the URL kept out of the message), the rate limit an answer
//! reports noted before its body is read, and bodies read chunk by chunk up to a
//! bound.

use reqwest::header::HeaderMap;

use super::{ConditionalClient, MAX_BODY_BYTES, error_chain};
use crate::forge::{ForgeError, RateLimit};

impl ConditionalClient {
    /// Sends `request`, counting a failure to get any answer, and notes the rate
    /// limit the answer reports (the body is the caller's to read).
    pub(super) async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answered, ForgeError> {
        let sent = tokio::time::Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.count(sent, |s| s.failed += 1);
                return Err(transport_error(url, e));
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let rate = self.note_rate(&headers);
        Ok(Answered {
            response,
            status,
            headers,
            rate,
            sent,
        })
    }
}

/// What [`ConditionalClient::send`] got back, before the body.
pub(super) struct Answered {
    pub(super) response: reqwest::Response,
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) rate: Option<RateLimit>,
    /// When the request went out (for the request-duration buckets).
    pub(super) sent: tokio::time::Instant,
}

/// A request that got no answer: `Timeout`, or `Transport` with the cause.
pub(crate) fn transport_error(url: &str, e: reqwest::Error) -> ForgeError {
    if e.is_timeout() {
        ForgeError::Timeout {
            url: url.to_owned(),
        }
    } else {
        ForgeError::Transport {
            url: url.to_owned(),
            message: error_chain(&e.without_url()),
        }
    }
}

pub(super) async fn read_body(
    url: &str,
    response: reqwest::Response,
) -> Result<Vec<u8>, ForgeError> {
    read_body_at_most(url, response, MAX_BODY_BYTES).await
}

/// The body of `response`, refused (a `Decode` error) past `max` bytes.
pub(crate) async fn read_body_at_most(
    url: &str,
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, ForgeError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(ForgeError::Decode {
                        url: url.to_owned(),
                        message: format!("response body larger than {max} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(transport_error(url, e)),
        }
    }
}
