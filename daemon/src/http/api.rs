//! The HTTP API (SPEC §10) on `http.listen`: health and readiness, Prometheus
//! metrics, the status of workspaces and builds, the event history, update jobs and
//! their logs, manual triggers and reloads (admin bearer token), the forges'
//! webhooks (signed; a hint to poll a repository now), and the status page.
//!
//! Handlers read the engine's current [`View`] through a watch channel (a reload
//! swaps it) and ask the loop for polls, triggers and reloads through a channel:
//! they never reach the engine's data. Around every route, outermost first: every
//! error as JSON (`http::errors`), the `Host` check (`http::host`), the URI and body
//! limits (`http::limits`); redelivered webhooks are told apart by `http::replays`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use forgewatch_adapters::RepoId;
use forgewatch_adapters::hooks::{HookError, RECEIVERS, WebhookReceiver};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::HttpLimits;
use crate::engine::clock::Clock;
use crate::engine::event::Request;
use crate::engine::view::View;
use crate::http::errors::{error, json_errors};
use crate::http::host::{AllowedHosts, check_host};
use crate::http::limits::limits;
use crate::http::replays::Replays;
use crate::state::events::EventQuery;

#[derive(Clone)]
pub struct ApiState {
    pub view: watch::Receiver<Arc<View>>,
    pub requests: mpsc::Sender<Request>,
    hosts: Arc<AllowedHosts>,
    /// How long a request's body may take to arrive (`http.body_timeout`).
    body_timeout: Duration,
    /// Event streams open at once: half the connections (`http.max_connections`),
    /// so that pages left open never hold every connection.
    pub(crate) max_streams: usize,
    replays: Arc<Replays>,
    clock: Arc<dyn Clock>,
}

impl ApiState {
    /// The API of the engine publishing `view`, answering to `hosts`, taking
    /// bodies that arrive within `limits.body_timeout` and streaming events to half
    /// `limits.max_connections` clients at most; webhook redeliveries are
    /// remembered on `clock`.
    pub fn new(
        view: watch::Receiver<Arc<View>>,
        requests: mpsc::Sender<Request>,
        hosts: AllowedHosts,
        limits: HttpLimits,
        clock: Arc<dyn Clock>,
    ) -> ApiState {
        ApiState {
            view,
            requests,
            hosts: Arc::new(hosts),
            body_timeout: limits.body_timeout,
            max_streams: (limits.max_connections / 2).max(1),
            replays: Arc::new(Replays::new(clock.clone())),
            clock,
        }
    }

    /// The wall clock (times of results).
    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    pub(crate) fn current(&self) -> Arc<View> {
        self.view.borrow().clone()
    }
}

pub fn router(state: ApiState) -> Router {
    let mut router = Router::new()
        .route("/", get(crate::http::page::page))
        .route("/page.js", get(crate::http::page::live::script))
        .route("/builds/{*key}", get(crate::http::page::builds::page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/workspaces", get(workspaces))
        .route("/api/v1/workspaces/{name}", get(workspace))
        .route("/api/v1/workspaces/{name}/trigger", post(trigger))
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/stream", get(crate::http::stream::stream))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/jobs/{id}/log", get(job_log))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/results", post(crate::http::results::generic))
        .route("/hooks/buildbot", post(crate::http::results::buildbot))
        .route("/api/v1/builds", get(crate::http::builds::list))
        .route("/api/v1/builds/{*key}", get(crate::http::builds::one));
    // One endpoint per forge the adapters know, configured or not.
    for receiver in RECEIVERS {
        router = router.route(
            &format!("/hooks/{}", receiver.endpoint()),
            post(
                move |State(api): State<ApiState>, headers: HeaderMap, body: Bytes| async move {
                    hook(&api, &headers, &body, receiver).await
                },
            ),
        );
    }
    let hosts = state.hosts.clone();
    router
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(from_fn_with_state(state.body_timeout, limits))
        .layer(from_fn_with_state(hosts, check_host))
        .layer(from_fn(json_errors))
        .with_state(state)
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn readyz(State(api): State<ApiState>) -> Response {
    let ready = api.current().read(|s| s.ready);
    if ready {
        axum::Json(json!({ "ready": true })).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the first cycle has not finished yet",
        )
    }
}

async fn status(State(api): State<ApiState>) -> Response {
    match api.current().snapshot().await {
        Ok(snapshot) => axum::Json(snapshot).into_response(),
        Err(e) => internal(e),
    }
}

async fn workspaces(State(api): State<ApiState>) -> Response {
    let snapshot = match api.current().snapshot().await {
        Ok(snapshot) => snapshot,
        Err(e) => return internal(e),
    };
    let list: Vec<serde_json::Value> = snapshot
        .workspaces
        .iter()
        .map(|(name, ws)| {
            json!({
                "name": name,
                "ci": ws.ci,
                "packages": ws.packages.len(),
                "builds": ws.builds.len(),
                "pending": ws.builds.iter().filter(|b| b.pending.is_some()).count(),
                "not_built": ws.not_built.len(),
                "update_running": ws.update_running,
            })
        })
        .collect();
    axum::Json(list).into_response()
}

async fn workspace(State(api): State<ApiState>, Path(name): Path<String>) -> Response {
    let view = api.current();
    let mut snapshot = match view.snapshot().await {
        Ok(snapshot) => snapshot,
        Err(e) => return internal(e),
    };
    let Some(ws) = snapshot.workspaces.remove(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no workspace `{name}`"));
    };
    let jobs = match view.store().jobs_of(&name, 10).await {
        Ok(jobs) => jobs,
        Err(e) => return internal(e),
    };
    let jobs: Vec<_> = jobs.iter().map(job_json).collect();
    let mut value = serde_json::to_value(ws).unwrap_or_default();
    value["name"] = json!(name);
    value["jobs"] = json!(jobs);
    axum::Json(value).into_response()
}

fn job_json(job: &crate::state::jobs::JobRecord) -> serde_json::Value {
    json!({
        "id": job.id,
        "workspace": job.workspace,
        "kind": job.kind,
        "status": job.status.as_str(),
        "started_at": crate::engine::status::rfc3339_ms(job.started_at),
        "ended_at": job.ended_at.map(crate::engine::status::rfc3339_ms),
        "detail": job.detail,
        "dropped_lines": job.dropped_lines,
        "log": format!("/api/v1/jobs/{}/log", job.id),
    })
}

/// A refusal: the status and the message of a JSON error.
type Refusal = (StatusCode, String);

fn refused((status, message): Refusal) -> Response {
    error(status, message)
}

/// An RFC 3339 time as unix milliseconds.
pub(crate) fn parse_since(since: Option<&str>) -> Result<Option<i64>, Refusal> {
    since
        .map(|s| {
            humantime::parse_rfc3339_weak(s)
                .map(|t| {
                    forgewatch_adapters::http::unix_seconds(t) * 1000
                        + i64::from(
                            t.duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.subsec_millis()),
                        )
                })
                .map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("`since` is not an RFC 3339 time: {e}"),
                    )
                })
        })
        .transpose()
}

#[derive(Deserialize)]
struct EventsParams {
    since: Option<String>,
    workspace: Option<String>,
    limit: Option<i64>,
}

async fn events(State(api): State<ApiState>, Query(p): Query<EventsParams>) -> Response {
    let since = match parse_since(p.since.as_deref()) {
        Ok(s) => s,
        Err(r) => return refused(r),
    };
    let query = EventQuery {
        since,
        workspace: p.workspace,
        limit: p.limit,
        after: None,
    };
    match api.current().store().events(&query).await {
        Ok(events) => axum::Json(events).into_response(),
        Err(e) => internal(e),
    }
}

async fn job(State(api): State<ApiState>, Path(id): Path<i64>) -> Response {
    match api.current().store().job(id).await {
        Ok(Some(job)) => axum::Json(job_json(&job)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct LogParams {
    since: Option<String>,
}

async fn job_log(
    State(api): State<ApiState>,
    Path(id): Path<i64>,
    Query(p): Query<LogParams>,
) -> Response {
    let since = match parse_since(p.since.as_deref()) {
        Ok(s) => s.unwrap_or(0),
        Err(r) => return refused(r),
    };
    let view = api.current();
    match view.store().job(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => return internal(e),
    }
    match view.store().job_lines(id, since).await {
        Ok(lines) => {
            let lines: Vec<_> = lines
                .iter()
                .map(|l| json!({"time": crate::engine::status::rfc3339_ms(l.time), "stream": l.stream, "line": l.text}))
                .collect();
            axum::Json(lines).into_response()
        }
        Err(e) => internal(e),
    }
}

/// The admin bearer token, compared in constant time.
fn authorized(view: &View, headers: &HeaderMap) -> Result<(), Refusal> {
    use subtle::ConstantTimeEq;
    let Some(token) = view.admin_token() else {
        return Err((
            StatusCode::FORBIDDEN,
            "no admin token is configured (http.admin_token_file)".to_owned(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            "a valid admin bearer token is required".to_owned(),
        ))
    }
}

#[derive(Deserialize, Default)]
struct TriggerBody {
    /// `HOST/PATH#N`; without it, the mainline.
    pr: Option<String>,
}

async fn trigger(
    State(api): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorized(&api.current(), &headers) {
        return refused(r);
    }
    let request: TriggerBody = if body.is_empty() {
        TriggerBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"pr\": \"HOST/PATH#N\"}}: {e}"),
                );
            }
        }
    };
    let key = match request.pr.as_deref() {
        None => crate::plan::ids::BuildKey::mainline(&name),
        Some(pr) => {
            let Some((repo, number)) = pr.rsplit_once('#') else {
                return error(StatusCode::BAD_REQUEST, "`pr` must look like HOST/PATH#N");
            };
            let (Ok(repo), Ok(number)) = (
                RepoId::parse(&format!("https://{repo}")),
                number.parse::<u64>(),
            ) else {
                return error(StatusCode::BAD_REQUEST, "`pr` must look like HOST/PATH#N");
            };
            crate::plan::ids::BuildKey::pull_request(&name, &repo, number)
        }
    };
    let (tx, rx) = oneshot::channel();
    if api
        .requests
        .send(Request::Trigger(key.clone(), tx))
        .await
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "forgewatch is stopping");
    }
    match rx
        .await
        .unwrap_or_else(|_| Err("forgewatch is stopping".to_owned()))
    {
        Ok(delivery_id) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"build_key": key.as_str(), "delivery_id": delivery_id})),
        )
            .into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

async fn reload(State(api): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&api.current(), &headers) {
        return refused(r);
    }
    let (tx, rx) = oneshot::channel();
    if api.requests.send(Request::Reload(tx)).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match rx.await {
        Ok(Ok(())) => axum::Json(json!({"reloaded": true})).into_response(),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
    }
}

async fn metrics(State(api): State<ApiState>) -> Response {
    let text = crate::http::page::prometheus(&api.current());
    let content_type = crate::http::page::metrics::CONTENT_TYPE;
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// A webhook posted to `/hooks/{endpoint}`: tried with the secret of every
/// configured forge whose hooks are posted there; the first that verifies it names
/// the forge (SPEC §10). Which header carries the signature, which the delivery id
/// and where the payload names the repository is the forge's receiver's business.
/// A verified delivery seen within the hour is a redelivery: accepted, not polled.
async fn hook(
    api: &ApiState,
    headers: &HeaderMap,
    body: &[u8],
    receiver: &'static dyn WebhookReceiver,
) -> Response {
    let endpoint = receiver.endpoint();
    if let Some(read) = receiver.result_reader(headers) {
        return crate::http::results::from_hook(api, headers, body, receiver, read).await;
    }
    let repo = match api.current().receive_hook(endpoint, headers, body) {
        Err(e @ HookError::Unsigned) => return error(StatusCode::UNAUTHORIZED, e.to_string()),
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(repo) => repo,
    };
    if let Some(id) = receiver.delivery_id(headers)
        && !api.replays.first_delivery(endpoint, id.clone())
    {
        tracing::debug!(
            endpoint,
            delivery = id.as_str(),
            "webhook redelivered: not polled"
        );
        let answer = json!({"polled": false, "redelivery": true});
        return (StatusCode::ACCEPTED, axum::Json(answer)).into_response();
    }
    let Some(repo) = repo else {
        return (StatusCode::ACCEPTED, axum::Json(json!({"polled": false}))).into_response();
    };
    // The payload only says which repository to poll; polling stays the truth.
    let _ = api.requests.send(Request::Poll(repo.clone())).await;
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"polled": repo.to_string()})),
    )
        .into_response()
}
