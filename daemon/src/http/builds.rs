//! The build history on the API (SPEC §14): `GET /api/v1/builds` (deliveries,
//! newest first, each with its last result; filters `workspace`, `state`,
//! `package`, `q`, `since`, `limit`, and `latest=true` for each build's last
//! delivery only), `GET /api/v1/builds/{key}` (every delivery of
//! one build with all its results) and `GET /api/v1/builds/{key}/overrides` (the
//! overrides of its last delivery, autoproj YAML or `?format=json`). A build key is
//! one percent-encoded path segment, or written with its slashes.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use forgewatch_adapters::results::BuildState;
use serde::Deserialize;
use serde_json::json;

use crate::http::api::{ApiState, parse_since};
use crate::http::errors::error;
use crate::state::{
    StateError,
    history::{BUILDS_LIMIT, BuildsQuery, DeliveryRow},
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildsParams {
    workspace: Option<String>,
    state: Option<String>,
    package: Option<String>,
    q: Option<String>,
    since: Option<String>,
    /// Only each build's last delivery.
    latest: Option<bool>,
    limit: Option<i64>,
}

/// `GET /api/v1/builds`.
pub async fn list(State(api): State<ApiState>, Query(p): Query<BuildsParams>) -> Response {
    let state = match p.state.as_deref().map(|s| (s, BuildState::parse(s))) {
        None => None,
        Some((_, Some(state))) => Some(state),
        Some((given, None)) => {
            let states = BuildState::ALL.map(BuildState::as_str).join(", ");
            return error(
                StatusCode::BAD_REQUEST,
                format!("`state` must be one of {states}, not {given:?}"),
            );
        }
    };
    let since = match parse_since(p.since.as_deref()) {
        Ok(since) => since,
        Err((status, message)) => return error(status, message),
    };
    if p.limit.is_some_and(|l| !(1..=BUILDS_LIMIT).contains(&l)) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`limit` must be between 1 and {BUILDS_LIMIT}"),
        );
    }
    let query = BuildsQuery {
        workspace: p.workspace,
        state,
        package: p.package,
        text: p.q.filter(|q| !q.is_empty()),
        since,
        build_key: None,
        latest: p.latest.unwrap_or(false),
        limit: p.limit,
    };
    match api.current().store().call(move |b| b.builds(&query)).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverridesParams {
    format: Option<String>,
}

/// `GET /api/v1/builds/{key}` and `GET /api/v1/builds/{key}/overrides`.
pub async fn one(
    State(api): State<ApiState>,
    Path(key): Path<String>,
    Query(p): Query<OverridesParams>,
) -> Response {
    match key.strip_suffix("/overrides") {
        Some(key) => overrides(&api, key, p.format.as_deref()).await,
        None if p.format.is_some() => error(
            StatusCode::BAD_REQUEST,
            "`format` applies to /api/v1/builds/{key}/overrides",
        ),
        None => match history(&api, &key).await {
            Ok(Some(deliveries)) => axum::Json(json!({
                "build_key": key,
                "workspace": key.split('/').next(),
                "deliveries": deliveries,
            }))
            .into_response(),
            Ok(None) => no_build(&key),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
    }
}

/// Every delivery of `key`, newest first, with all its results; `None` without any.
pub async fn history(api: &ApiState, key: &str) -> Result<Option<Vec<DeliveryRow>>, StateError> {
    let query = BuildsQuery {
        build_key: Some(key.to_owned()),
        limit: Some(BUILDS_LIMIT),
        ..BuildsQuery::default()
    };
    api.current()
        .store()
        .call(move |b| {
            let mut rows = b.builds(&query)?;
            for row in &mut rows {
                row.results = Some(b.results_of(&row.delivery_id)?);
            }
            Ok((!rows.is_empty()).then_some(rows))
        })
        .await
}

fn no_build(key: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no delivery of build {key:?} is in the history"),
    )
}

async fn overrides(api: &ApiState, key: &str, format: Option<&str>) -> Response {
    let owned = key.to_owned();
    let found = api
        .current()
        .store()
        .call(move |b| b.last_overrides(&owned))
        .await;
    let overrides = match found {
        Ok(Some(overrides)) => overrides,
        Ok(None) => return no_build(key),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match format {
        None | Some("yaml") => (
            [(header::CONTENT_TYPE, "application/yaml")],
            crate::plan::transient::overrides_yaml(&overrides),
        )
            .into_response(),
        Some("json") => {
            let list: Vec<_> = overrides
                .iter()
                .map(|(name, branch)| {
                    json!({ name: {
                        "remote_branch": branch,
                        "single_branch": false,
                        "shallow": false,
                    }})
                })
                .collect();
            axum::Json(list).into_response()
        }
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            format!("`format` is `yaml` or `json`, not {other:?}"),
        ),
    }
}
