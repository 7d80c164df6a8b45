//! The build history for people (SPEC §14): the status page's list of builds with
//! their last outcome (coloured state, CI link, age) behind a plain GET filter form
//! (`workspace`, `state`, `q`: it works without a script), and `GET /builds/{key}`,
//! one build's history: every fingerprint delivered, when and why, each result with
//! its links. `GET /builds/{key}?part=row` is the build's row of the list alone,
//! which the page's script fetches to redraw a row when an event names its build:
//! the rendering (escaping, [`safe_link`](super::safe_link), the age) stays here.
//!
//! The list is made of the newest deliveries the history answers (at most
//! `BUILDS_LIMIT`), the first of each build being its last; the filters apply to
//! that last delivery, so a build whose last result is a success is not listed as
//! failing because an older delivery failed.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use forgewatch_adapters::results::BuildState;
use maud::{Markup, html};
use serde::Deserialize;

use super::{ago, encode_key, link, shell, short};
use crate::http::api::ApiState;
use crate::http::errors::error;
use crate::state::{
    StateError,
    history::{BUILDS_LIMIT, BuildsQuery, DeliveryRow},
};

/// What the filter form asks (`GET /?workspace=&state=&q=`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Filter {
    pub workspace: Option<String>,
    pub state: Option<String>,
    pub q: Option<String>,
}

impl Filter {
    /// Empty fields are no filter (the form sends them all).
    pub fn normalised(self) -> Filter {
        let keep = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        Filter {
            workspace: keep(self.workspace),
            state: keep(self.state),
            q: keep(self.q),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.workspace.is_none() && self.state.is_none() && self.q.is_none()
    }

    fn matches(&self, row: &DeliveryRow) -> bool {
        let state = row.state.map_or("none", BuildState::as_str);
        let text = self.q.as_deref().map(str::to_lowercase);
        self.workspace.as_ref().is_none_or(|w| *w == row.workspace)
            && self.state.as_ref().is_none_or(|s| s == state)
            && text.is_none_or(|t| {
                [
                    Some(&row.build_key),
                    Some(&row.reason),
                    row.summary.as_ref(),
                    Some(&row.fingerprint),
                    Some(&row.delivery_id),
                ]
                .into_iter()
                .flatten()
                .any(|field| field.to_lowercase().contains(&t))
            })
    }
}

/// Each build's last delivery, newest first.
pub struct Latest(pub Vec<DeliveryRow>);

impl Latest {
    /// Reads the last delivery of the [`BUILDS_LIMIT`] builds delivered last.
    pub async fn read(api: &ApiState) -> Result<Latest, StateError> {
        let query = BuildsQuery {
            latest: true,
            limit: Some(BUILDS_LIMIT),
            ..BuildsQuery::default()
        };
        let rows = api
            .current()
            .store()
            .call(move |b| b.builds(&query))
            .await?;
        Ok(Latest(rows))
    }

    /// By build key.
    pub fn by_key(&self) -> HashMap<&str, &DeliveryRow> {
        self.0.iter().map(|r| (r.build_key.as_str(), r)).collect()
    }
}

/// The class and text of a state: `st-failure` / `failure`; `none` before any
/// result.
pub fn state_name(state: Option<BuildState>) -> &'static str {
    state.map_or("none", BuildState::as_str)
}

/// The builds section of the status page: the filter form and the list.
pub fn section(latest: &Latest, filter: &Filter, workspaces: &[&str], now_ms: i64) -> Markup {
    let rows: Vec<&DeliveryRow> = latest.0.iter().filter(|r| filter.matches(r)).collect();
    let selected = |value: &str, given: &Option<String>| given.as_deref() == Some(value);
    html! {
        section id="builds" {
            h2 { "Builds" }
            form.filter method="get" action="/" {
                label { "workspace "
                    select name="workspace" {
                        option value="" { "all" }
                        @for w in workspaces {
                            option value=(w) selected[selected(w, &filter.workspace)] { (w) }
                        }
                    }
                }
                label { "state "
                    select name="state" {
                        option value="" { "any" }
                        @for s in BuildState::ALL.map(BuildState::as_str).into_iter().chain(["none"]) {
                            option value=(s) selected[selected(s, &filter.state)] { (s) }
                        }
                    }
                }
                label { "text "
                    input type="search" name="q" value=(filter.q.as_deref().unwrap_or(""))
                        placeholder="key, reason, summary";
                }
                button type="submit" { "filter" }
                @if !filter.is_empty() { " " a href="/" { "clear" } }
            }
            table.builds {
                thead { tr { th { "build" } th { "state" } th { "CI" } th { "when" } th { "why" } } }
                tbody id="builds-body" {
                    @for r in &rows { (row(r, now_ms)) }
                }
            }
            @if rows.is_empty() {
                p.muted { @if filter.is_empty() { "No delivery yet." } @else { "No build matches." } }
            }
        }
    }
}

/// One build's row: its key (to its history), the state of its last result, the
/// CI's link, how long ago, and why it was sent.
pub fn row(r: &DeliveryRow, now_ms: i64) -> Markup {
    let state = state_name(r.state);
    let when = r.result_at.as_deref().unwrap_or(&r.delivered_at);
    html! {
        tr data-key=(r.build_key) data-state=(state) {
            td { a href={ "/builds/" (encode_key(&r.build_key)) } { (r.build_key) } }
            td class={ "state st-" (state) } { (state) }
            td { @if let Some(url) = &r.url { (link(url, "CI")) } }
            td title=(when) { (ago(now_ms, when)) }
            td {
                (r.reason)
                @if let Some(s) = &r.summary { br; span.muted { (s) } }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildParams {
    part: Option<String>,
}

/// `GET /builds/{key}` (one build's history) and `?part=row` (its row of the list).
pub async fn page(
    State(api): State<ApiState>,
    Path(key): Path<String>,
    Query(p): Query<BuildParams>,
) -> Response {
    let deliveries = match crate::http::builds::history(&api, &key).await {
        Ok(Some(deliveries)) => deliveries,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no delivery of build {key:?} is in the history"),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let now_ms = api.clock().unix_ms();
    match p.part.as_deref() {
        None => super::html_response(history(&key, &deliveries, now_ms)),
        Some("row") => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            row(&deliveries[0], now_ms),
        )
            .into_response(),
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            format!("`part` is `row`, not {other:?}"),
        ),
    }
}

/// The history page of `key`: its deliveries, newest first, each with its results.
fn history(key: &str, deliveries: &[DeliveryRow], now_ms: i64) -> Markup {
    let encoded = encode_key(key);
    let last = &deliveries[0];
    let body = html! {
        p { a href="/" { "← status" } }
        h1 { (key) }
        p {
            "Workspace " b { (last.workspace) } ", CI target " code { (last.ci) }
            @if let Some(revlink) = &last.revlink { " · " (link(revlink, "source")) }
            " · " a href={ "/api/v1/builds/" (encoded) } { "JSON" }
            " · " a href={ "/api/v1/builds/" (encoded) "/overrides" } { "overrides" }
        }
        table.history {
            thead { tr { th { "delivered" } th { "fingerprint" } th { "why" } th { "state" } th { "results" } } }
            tbody {
                @for d in deliveries {
                    @let state = state_name(d.state);
                    tr data-state=(state) {
                        td title=(d.delivered_at) {
                            (ago(now_ms, &d.delivered_at)) br;
                            span.muted { (d.delivered_at) }
                        }
                        td {
                            code title=(d.fingerprint) { (short_fingerprint(&d.fingerprint)) } br;
                            span.muted { "delivery " (d.delivery_id) }
                            @if let Some(rev) = &d.revision { br; span.muted { "revision " code { (short(rev)) } } }
                        }
                        td { (d.reason) }
                        td class={ "state st-" (state) } {
                            (state)
                            @if let Some(url) = &d.url { br; (link(url, "CI")) }
                        }
                        td { (results(d, now_ms)) }
                    }
                }
            }
        }
    };
    shell(key, None, false, body)
}

/// The start of a fingerprint's hash (the whole one is the title).
fn short_fingerprint(fingerprint: &str) -> &str {
    let hash = fingerprint
        .split_once(':')
        .map_or(fingerprint, |(_, hash)| hash);
    hash.get(..12).unwrap_or(hash)
}

/// A delivery's results, oldest first.
fn results(d: &DeliveryRow, now_ms: i64) -> Markup {
    let Some(results) = d.results.as_deref().filter(|r| !r.is_empty()) else {
        return html! { span.muted { "none yet" } };
    };
    html! {
        ol.results {
            @for r in results {
                li {
                    span class={ "state st-" (r.state.as_str()) } { (r.state.as_str()) }
                    " " span.muted title=(r.received_at) { (ago(now_ms, &r.received_at)) " from " (r.source) }
                    @if let Some(flag) = &r.flag { " " span.bad { "(" (flag) ")" } }
                    @if let Some(url) = &r.url { " " (link(url, "CI")) }
                    @if let Some(s) = &r.summary { br; (s) }
                }
            }
        }
    }
}
