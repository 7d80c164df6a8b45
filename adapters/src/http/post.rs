//! The one kind of write a forge client sends: a JSON POST (a commit status). It
//! shares the GET path's credential, timeouts, concurrency cap, governor (pauses,
//! rate-limit headers, `Retry-After`, backoff) and request counts, and also spends
//! the forge's write budget; it is never conditional and never cached.

use crate::forge::ForgeError;
use crate::governor::Access;

use super::{Answered, ConditionalClient, read_body, status_error};

impl ConditionalClient {
    /// POSTs `body` as JSON to `url`; the body of a 2xx answer. A refusal of the
    /// write itself (401, a 403 that is not a rate limit, 404) is
    /// [`ForgeError::NoPermission`]; over the write budget it is not sent
    /// ([`ForgeError::WriteLimited`]).
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<Vec<u8>, ForgeError> {
        use tracing::Instrument;
        let span = tracing::debug_span!("forge_write", %url);
        self.post_in_span(url, body).instrument(span).await
    }

    async fn post_in_span(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<Vec<u8>, ForgeError> {
        let (_permit, ticket) = self.admit(url, Access::Write).await?;
        let request = self
            .request(reqwest::Method::POST, url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let Answered {
            response,
            status,
            headers,
            rate,
            sent,
        } = self.send(url, request).await?;
        let ok = (200..300).contains(&status);
        if ok {
            self.governor.observe_ok(ticket, rate.as_ref());
        }
        let answer = match read_body(url, response).await {
            Ok(b) => b,
            Err(e) => {
                self.count(sent, |s| s.failed += 1);
                return Err(e);
            }
        };
        if !ok {
            self.count(sent, |s| s.failed += 1);
            tracing::debug!(status, "write failed");
            let error = status_error(url, status, &headers, &answer);
            if let ForgeError::RateLimited { retry_after, .. } = &error {
                self.governor
                    .observe_limited(ticket, *retry_after, rate.as_ref());
            }
            return Err(refused_write(error));
        }
        self.count(sent, |s| s.fresh += 1);
        tracing::debug!(status, "written");
        Ok(answer)
    }
}

/// A write answered 401, 403 (not a rate limit: those are `RateLimited` already) or
/// 404: the token lacks the permission, or the repository is gone.
fn refused_write(error: ForgeError) -> ForgeError {
    match error {
        ForgeError::NotFound { url, message } => ForgeError::NoPermission {
            url,
            status: 404,
            message: message.unwrap_or_default(),
        },
        ForgeError::Http {
            url,
            status: status @ (401 | 403),
            message,
        } => ForgeError::NoPermission {
            url,
            status,
            message,
        },
        other => other,
    }
}
