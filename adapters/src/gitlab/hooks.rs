//! GitLab's webhooks: authenticated by the hook's secret token itself, sent as
//! `X-Gitlab-Token` (no signature), the project in `project.path_with_namespace`.

use reqwest::header::HeaderMap;

use crate::Secret;
use crate::hooks::{WebhookReceiver, same_bytes};

/// GitLab's [`WebhookReceiver`], at `/hooks/gitlab`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GitLabHooks;

impl WebhookReceiver for GitLabHooks {
    fn endpoint(&self) -> &'static str {
        "gitlab"
    }

    fn verify(&self, headers: &HeaderMap, _body: &[u8], secret: &Secret) -> bool {
        headers
            .get("x-gitlab-token")
            .is_some_and(|token| same_bytes(token.as_bytes(), secret.expose().as_bytes()))
    }

    fn repository_path(&self, payload: &serde_json::Value) -> Option<String> {
        payload["project"]["path_with_namespace"]
            .as_str()
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::HookError;

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            headers.insert("x-gitlab-token", token.parse().expect("header"));
        }
        headers
    }

    #[test]
    fn verifies_then_reads_the_project() {
        let secret = Secret::new("t0ken");
        let body =
            br#"{"object_kind":"push","project":{"path_with_namespace":"Acme/Robots/Lidar"}}"#;
        assert_eq!(
            GitLabHooks.receive(&headers(Some("t0ken")), body, &secret),
            Ok(Some("Acme/Robots/Lidar".to_owned()))
        );
        for refused in [None, Some("nope"), Some("t0ken "), Some("t0ke"), Some("")] {
            assert_eq!(
                GitLabHooks.receive(&headers(refused), body, &secret),
                Err(HookError::Unsigned),
                "{refused:?}"
            );
        }
        // A GitHub signature made with the token is no token.
        let mut signed = HeaderMap::new();
        let signature = crate::ci::webhook::signature_256(&secret, body);
        signed.insert("x-hub-signature-256", signature.parse().expect("header"));
        assert_eq!(
            GitLabHooks.receive(&signed, body, &secret),
            Err(HookError::Unsigned)
        );
    }

    #[test]
    fn tokened_garbage_is_not_json_and_other_payloads_name_no_project() {
        let secret = Secret::new("t0ken");
        let token = headers(Some("t0ken"));
        assert_eq!(
            GitLabHooks.receive(&token, b"{", &secret),
            Err(HookError::NotJson)
        );
        let body = br#"{"repository":{"full_name":"a/b"}}"#;
        assert_eq!(GitLabHooks.receive(&token, body, &secret), Ok(None));
    }
}
