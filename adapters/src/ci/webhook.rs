//! A generic webhook: the trigger as one JSON object, signed with HMAC-SHA256 like
//! GitHub signs its webhooks, with the delivery id in a header.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Accepted, BuildTrigger, CiTarget, DeliveryError, http_client, send};
use crate::{BoxFuture, Secret};

/// A JSON POST signed like GitHub signs its webhooks.
pub struct Webhook {
    url: String,
    secret: Secret,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(url: String, secret: Secret, timeout: Duration) -> Result<Webhook, DeliveryError> {
        Ok(Webhook {
            url,
            secret,
            http: http_client(timeout)?,
        })
    }
}

/// `sha256=HEX` of HMAC-SHA256(secret, body).
pub fn signature_256(secret: &Secret, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl CiTarget for Webhook {
    fn deliver<'a>(
        &'a self,
        trigger: &'a BuildTrigger,
    ) -> BoxFuture<'a, Result<Accepted, DeliveryError>> {
        Box::pin(async move {
            let body = trigger.webhook_json().to_string().into_bytes();
            let request = self
                .http
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header("X-Forgewatch-Delivery", &trigger.delivery_id)
                .header("X-Forgewatch-Event", "build")
                .header(
                    "X-Forgewatch-Signature-256",
                    signature_256(&self.secret, &body),
                )
                .body(body);
            send(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_github() {
        // The test vector of GitHub's documentation.
        let secret = Secret::new("It's a Secret to Everybody");
        assert_eq!(
            signature_256(&secret, b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
