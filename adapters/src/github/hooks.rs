//! GitHub's webhooks: signed with `X-Hub-Signature-256` (`sha256=` and the hex
//! HMAC-SHA256 of the body, keyed with the hook's secret), the repository in
//! `repository.full_name`, each delivery named by `X-GitHub-Delivery` (a GUID that
//! a redelivery keeps).

use reqwest::header::HeaderMap;

use crate::Secret;
use crate::ci::webhook::signature_256;
use crate::hooks::{WebhookReceiver, same_bytes};

/// GitHub's [`WebhookReceiver`], at `/hooks/github`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GitHubHooks;

impl WebhookReceiver for GitHubHooks {
    fn endpoint(&self) -> &'static str {
        "github"
    }

    fn delivery_headers(&self) -> &'static [&'static str] {
        &["x-github-delivery"]
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], secret: &Secret) -> bool {
        headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|given| {
                same_bytes(signature_256(secret, body).as_bytes(), given.as_bytes())
            })
    }

    fn repository_path(&self, payload: &serde_json::Value) -> Option<String> {
        payload["repository"]["full_name"]
            .as_str()
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::{HookDeliveryId, HookError};

    fn headers(signature: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(signature) = signature {
            headers.insert("x-hub-signature-256", signature.parse().expect("header"));
        }
        headers
    }

    #[test]
    fn verifies_then_reads_the_repository() {
        let secret = Secret::new("s3cret");
        let body = br#"{"ref":"refs/heads/main","repository":{"full_name":"Acme/App"}}"#;
        let signed = headers(Some(&signature_256(&secret, body)));
        assert_eq!(
            GitHubHooks.receive(&signed, body, &secret),
            Ok(Some("Acme/App".to_owned()))
        );
        let wrong = signature_256(&Secret::new("wrong"), body);
        let upper = signature_256(&secret, body).to_uppercase();
        for refused in [None, Some("sha256=00"), Some(&wrong[..]), Some(&upper[..])] {
            assert_eq!(
                GitHubHooks.receive(&headers(refused), body, &secret),
                Err(HookError::Unsigned),
                "{refused:?}"
            );
        }
        // GitLab's token header is not GitHub's signature.
        let mut token = HeaderMap::new();
        token.insert("x-gitlab-token", "s3cret".parse().expect("header"));
        assert_eq!(
            GitHubHooks.receive(&token, body, &secret),
            Err(HookError::Unsigned)
        );
    }

    #[test]
    fn a_delivery_is_named_by_its_guid() {
        let mut delivery = headers(None);
        assert_eq!(GitHubHooks.delivery_id(&delivery), None);
        delivery.insert(
            "x-github-delivery",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958"
                .parse()
                .expect("header"),
        );
        assert_eq!(
            GitHubHooks
                .delivery_id(&delivery)
                .as_ref()
                .map(HookDeliveryId::as_str),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
    }

    #[test]
    fn signed_garbage_is_not_json_and_other_payloads_name_no_repository() {
        let secret = Secret::new("s3cret");
        let sign = |body: &[u8]| headers(Some(&signature_256(&secret, body)));
        let body = b"not json";
        assert_eq!(
            GitHubHooks.receive(&sign(body), body, &secret),
            Err(HookError::NotJson)
        );
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        assert_eq!(GitHubHooks.receive(&sign(body), body, &secret), Ok(None));
        let body = br#"{"project":{"path_with_namespace":"a/b"}}"#;
        assert_eq!(GitHubHooks.receive(&sign(body), body, &secret), Ok(None));
    }
}
