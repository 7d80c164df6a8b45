//! Results coming back (SPEC §14): `POST /api/v1/results`, the generic form (a
//! result naming its delivery, signed like our webhook or with a CI target's
//! results secret as bearer token), `POST /hooks/buildbot` (Buildbot's
//! `HttpStatusPush`), a forge's hook that carries one (GitLab's pipeline events on
//! `/hooks/gitlab`), and what every way in shares: the sender's
//! authentication (before anything is read) and the recording, answered with what
//! it did. A result never changes a fingerprint; a repeated one changes nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use forgewatch_adapters::ci::buildbot::reports::parse_status_push;
use forgewatch_adapters::hooks::{ResultReader, WebhookReceiver};
use forgewatch_adapters::http::one_line;
use forgewatch_adapters::results::generic::parse_generic;
use forgewatch_adapters::results::{ReportError, ReportedResult};
use serde_json::json;

use crate::engine::view::ResultAuth;
use crate::http::api::ApiState;
use crate::http::errors::error;

/// The longest summary kept (one line).
const SUMMARY_MAX: usize = 300;

/// `POST /api/v1/results`.
pub async fn generic(State(api): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let view = api.current();
    if view
        .result_sender(&headers, &body, ResultAuth::TokenOrSignature)
        .is_none()
    {
        return unauthenticated();
    }
    match parse_generic(&body) {
        Ok(reported) => record(&api, "api", reported).await,
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// `POST /hooks/buildbot`: what Buildbot's `HttpStatusPush` posts at a build's
/// start and end, authenticated with a results secret (bearer or basic auth; the
/// reporter cannot sign). A build that names no forgewatch delivery (another
/// scheduler's) is answered 200 and ignored, so the master logs no error for it.
pub async fn buildbot(State(api): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    if api
        .current()
        .result_sender(&headers, &body, ResultAuth::Token)
        .is_none()
    {
        return unauthenticated();
    }
    reported(&api, "buildbot", parse_status_push(&body)).await
}

/// A forge's hook carrying a CI result on `/hooks/{endpoint}` (GitLab's
/// `Pipeline Hook` of a pipeline a `gitlab_pipeline` target triggered), signed as
/// that forge signs with a results secret or the forge's webhook secret, then
/// read with `read`. A pipeline forgewatch did not trigger is answered 200 and
/// ignored.
pub async fn from_hook(
    api: &ApiState,
    headers: &HeaderMap,
    body: &[u8],
    receiver: &dyn WebhookReceiver,
    read: ResultReader,
) -> Response {
    if !api.current().verifies_result_hook(receiver, headers, body) {
        return unauthenticated();
    }
    reported(api, receiver.endpoint(), read(body)).await
}

/// Records what a CI's own report says, or answers why it cannot.
async fn reported(
    api: &ApiState,
    source: &'static str,
    parsed: Result<ReportedResult, ReportError>,
) -> Response {
    match parsed {
        Ok(reported) => record(api, source, reported).await,
        Err(ReportError::NoReference) => axum::Json(json!({
            "recorded": false,
            "ignored": ReportError::NoReference.to_string(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// The answer to a result whose sender no configured secret authenticates.
pub fn unauthenticated() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "a result needs a CI target's results secret (bearer token or basic-auth password) or a valid X-Forgewatch-Signature-256",
    )
}

/// Records `reported`, received from `source`, and answers with what it did.
pub async fn record(
    api: &ApiState,
    source: &'static str,
    mut reported: ReportedResult,
) -> Response {
    reported.result.summary = reported
        .result
        .summary
        .map(|s| one_line(&s, SUMMARY_MAX))
        .filter(|s| !s.is_empty());
    let view = api.current();
    let at_ms = api.clock().unix_ms();
    let state = reported.result.state;
    let recorded = view
        .store()
        .call(move |b| b.record_result(source, &reported, at_ms))
        .await;
    match recorded {
        Ok(outcome) => {
            if outcome.statuses > 0 {
                view.wake_status_posts();
            }
            if !outcome.repeated {
                let latency = outcome
                    .delivery
                    .as_ref()
                    .filter(|_| state.is_final())
                    .map(|(_, _, delivered_at)| (at_ms - delivered_at).max(0) as f64 / 1000.0);
                let ci = outcome.delivery.as_ref().map(|(_, ci, _)| ci.as_str());
                view.metrics().results.count(ci, state.as_str(), latency);
            }
            let (build_key, ci) = match &outcome.delivery {
                Some((key, ci, _)) => (Some(key.clone()), Some(ci.clone())),
                None => (None, None),
            };
            axum::Json(json!({
                "recorded": !outcome.repeated,
                "flag": outcome.flag,
                "build_key": build_key,
                "ci": ci,
            }))
            .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
