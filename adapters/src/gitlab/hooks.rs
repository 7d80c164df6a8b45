//! GitLab's webhooks: authenticated by the hook's secret token itself, sent as
//! `X-Gitlab-Token` (no signature), the project in `project.path_with_namespace`.
//! A delivery is named by `Idempotency-Key` (GitLab 17.4 on: the same on every retry
//! of one event), else by `X-Gitlab-Event-UUID` (one per event, shared by the hooks
//! it fires). A `Pipeline Hook` carries a `gitlab_pipeline` target's result
//! (`ci::gitlab_pipeline::events`).

use reqwest::header::HeaderMap;

use crate::Secret;
use crate::hooks::{ResultReader, WebhookReceiver, same_bytes};

/// GitLab's [`WebhookReceiver`], at `/hooks/gitlab`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GitLabHooks;

impl WebhookReceiver for GitLabHooks {
    fn endpoint(&self) -> &'static str {
        "gitlab"
    }

    fn delivery_headers(&self) -> &'static [&'static str] {
        &["idempotency-key", "x-gitlab-event-uuid"]
    }

    /// The events of pipelines (a `gitlab_pipeline` target's results).
    fn result_reader(&self, headers: &HeaderMap) -> Option<ResultReader> {
        let event = headers.get("x-gitlab-event")?;
        (event.as_bytes() == b"Pipeline Hook")
            .then_some(crate::ci::gitlab_pipeline::events::parse_pipeline_event as ResultReader)
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
    fn a_delivery_is_named_by_its_idempotency_key_else_its_event_uuid() {
        let id = |headers: &HeaderMap| {
            GitLabHooks
                .delivery_id(headers)
                .map(|i| i.as_str().to_owned())
        };
        let mut delivery = headers(Some("t0ken"));
        assert_eq!(id(&delivery), None);
        delivery.insert("x-gitlab-event-uuid", "event-1".parse().expect("header"));
        assert_eq!(id(&delivery).as_deref(), Some("event-1"));
        delivery.insert("idempotency-key", "retry-key".parse().expect("header"));
        assert_eq!(id(&delivery).as_deref(), Some("retry-key"));
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
