//! The human-readable side of the HTTP API: the status page at `GET /` (server-
//! rendered HTML, no front-end build, readable on a phone and a wide screen) and
//! the Prometheus text of `GET /metrics` ([`metrics`], [`process`]). The page is
//! a `maud` template: every value is escaped, and a forge-supplied URL becomes a
//! link only if it is http(s)
//! ([`safe_link`]). It lists the builds with their last outcome ([`builds`], which
//! also serves one build's history at `GET /builds/{key}`), each PR's dependency
//! closure as a small SVG ([`graph`]), and follows the event stream with one
//! script ([`live`], `GET /page.js`; the page is complete without it). Pages are
//! sent with a content security policy allowing only their own script.

pub mod builds;
pub mod graph;
pub mod live;
pub mod metrics;
pub mod process;

pub use metrics::prometheus;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use url::Url;

use crate::engine::status::{BuildStatus, Snapshot, WorkspaceStatus};
use crate::http::api::ApiState;
use crate::http::errors::error;
use crate::state::events::{Event, EventQuery};
use crate::state::history::DeliveryRow;
use crate::state::jobs::JobRecord;
use builds::{Filter, Latest, state_name};

const STYLE: &str = concat!(
    "body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em}",
    "table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{text-align:left;padding:.2em .5em;border-bottom:1px solid #ddd;vertical-align:top}",
    "code{font-size:12px}.bad{color:#b00}.ok{color:#070}.muted{color:#666}",
    "section{margin-bottom:2em}",
    // On a phone a row's cells flow as lines of text, without the header row.
    "@media(max-width:700px){table,tbody,tr{display:block}thead,tr:has(>th){display:none}",
    "tr{border-bottom:1px solid #ddd;padding:.3em 0}td{display:inline-block;border:0;padding:.1em .4em}td:has(svg){display:block}}",
    "td,th{overflow-wrap:anywhere}form.filter{display:flex;flex-wrap:wrap;gap:.5em;align-items:center}",
    "form.filter input{min-width:12em}#live{font-size:12px;padding:.1em .5em;border-radius:1em;background:#eee;color:#555;vertical-align:middle}",
    "#live.live-open{background:#e3f5e3;color:#070}",
    ".state{font-weight:600;white-space:nowrap}ol.results{margin:0;padding-left:1.2em}.st-success{color:#070}.st-failure{color:#c00}.st-error{color:#b45309}",
    ".st-pending{color:#555}.st-running{color:#1d5fbf}.st-cancelled{color:#777}.st-none,.st-unbuilt{color:#999}",
    "svg.graph{display:block;max-width:100%;height:auto;margin:.3em 0}",
    ".graph .edge{stroke:#888;stroke-width:1.5}.graph text{font:12px system-ui,sans-serif;fill:#222}",
    ".node rect{fill:#fff;stroke:#999;stroke-width:1.5}.node.st-unbuilt rect{stroke-dasharray:4 3}",
    ".node.st-success rect{fill:#e3f5e3;stroke:#070}.node.st-failure rect{fill:#fde2e2;stroke:#c00}",
    ".node.st-error rect{fill:#fdebd3;stroke:#b45309}.node.st-running rect{fill:#e1ecfb;stroke:#1d5fbf}",
    ".node.st-pending rect{fill:#eee;stroke:#555}.node.st-cancelled rect{fill:#eee;stroke:#777;stroke-dasharray:2 2}",
);

/// What a page may load: its own script and styles inline, nothing from elsewhere.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

/// `url` if it is an absolute `http` or `https` URL: the only URLs the page puts
/// in an `href`. Anything else a forge may answer (`javascript:`, `data:`, a
/// relative or unparsable URL) is `None`, and the page shows it as text.
fn safe_link(url: &str) -> Option<&str> {
    let scheme = Url::parse(url).ok()?;
    matches!(scheme.scheme(), "http" | "https").then_some(url)
}

/// `text`, linked to `url` when [`safe_link`] allows it.
fn link(url: &str, text: &str) -> Markup {
    html! {
        @if let Some(href) = safe_link(url) { a href=(href) { (text) } } @else { (text) }
    }
}

/// `items`, one per line.
fn lines(items: impl IntoIterator<Item = Markup>) -> Markup {
    html! {
        @for (i, item) in items.into_iter().enumerate() {
            @if i > 0 { br; }
            (item)
        }
    }
}

/// A build key as one URL path segment: every byte but the unreserved ones
/// percent-encoded (SPEC §14: `ws%2Fpr%2Fgithub.com%2Facme%2Fa%2F1`).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// How long before `now_ms` the RFC 3339 time `at` was: "just now", "5 min ago",
/// "3 h ago", "2 days ago" (the time itself when it does not parse).
fn ago(now_ms: i64, at: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339_weak(at) else {
        return at.to_owned();
    };
    let seconds = (now_ms - crate::engine::clock::unix_ms(t)).max(0) / 1000;
    match seconds {
        0..10 => "just now".to_owned(),
        10..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..172_800 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// A page as an answer, with its content security policy.
fn html_response(page: Markup) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        page,
    )
        .into_response()
}

/// The document around a page's `body`: its head, the badge saying whether it is
/// live, and the script that makes it so when `last_event` (the newest event id it
/// was rendered with) is given. `filtered`: the build list shows a filter's builds
/// only (the script adds no new build to it).
fn shell(title: &str, last_event: Option<i64>, filtered: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body data-last-event=[last_event] data-filtered=(filtered) {
                (body)
                @if last_event.is_some() { script src="/page.js" defer {} }
            }
        }
    }
}

/// What the status page was asked (the filter form's fields).
#[derive(Deserialize)]
pub struct PageParams {
    #[serde(flatten)]
    filter: Filter,
}

pub async fn page(State(api): State<ApiState>, Query(p): Query<PageParams>) -> Response {
    let filter = p.filter.normalised();
    if let Some(state) = filter.state.as_deref()
        && state != "none"
        && forgewatch_adapters::results::BuildState::parse(state).is_none()
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`state` is a result's state or `none`, not {state:?}"),
        );
    }
    let view = api.current();
    // First: whatever happens after this id, the page's script is told.
    let last_event = match view.store().call(|b| b.newest_event_id()).await {
        Ok(id) => id,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let snapshot = match view.snapshot().await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            let message = format!("the state cannot be read: {e}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, message);
        }
    };
    let mut jobs = BTreeMap::new();
    for name in snapshot.workspaces.keys() {
        if let Ok(recent) = view.store().jobs_of(name, 5).await {
            jobs.insert(name.clone(), recent);
        }
    }
    let events = view
        .store()
        .events(&EventQuery {
            after: Some(last_event.saturating_sub(30)),
            ..EventQuery::default()
        })
        .await
        .unwrap_or_default();
    let latest = match Latest::read(&api).await {
        Ok(latest) => latest,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let now_ms = api.clock().unix_ms();
    let shown = Shown {
        snapshot: &snapshot,
        jobs: &jobs,
        events: &events,
        latest: &latest,
        filter: &filter,
        now_ms,
    };
    html_response(shell(
        "forgewatch",
        Some(last_event),
        !filter.is_empty(),
        render(&shown),
    ))
}

/// What the status page shows.
struct Shown<'a> {
    snapshot: &'a Snapshot,
    /// Each workspace's recent jobs.
    jobs: &'a BTreeMap<String, Vec<JobRecord>>,
    /// The latest events.
    events: &'a [Event],
    /// Each build's last delivery.
    latest: &'a Latest,
    filter: &'a Filter,
    now_ms: i64,
}

/// The status page's body.
fn render(shown: &Shown<'_>) -> Markup {
    let snapshot = shown.snapshot;
    let names: Vec<&str> = snapshot.workspaces.keys().map(String::as_str).collect();
    let latest = shown.latest.by_key();
    html! {
                h1 { "forgewatch " span id="live" { "not live" } }
                p.muted {
                    (snapshot.cycles) " cycles, last at "
                    (snapshot.last_cycle_at.as_deref().unwrap_or("never"))
                    @if let Some(e) = &snapshot.config_error {
                        " — " span.bad { "configuration not reloaded: " (e) }
                    }
                }
                (builds::section(shown.latest, shown.filter, &names, shown.now_ms))
                @for (name, ws) in &snapshot.workspaces {
                    (workspace(name, ws, shown.jobs.get(name).map_or(&[], Vec::as_slice), &latest))
                }
                section {
                    h2 { "Recent events" }
                    table {
                        tbody id="events-body" {
                        @for e in shown.events.iter().rev().take(30) {
                            tr {
                                td.muted { (e.time) }
                                td { (e.kind) }
                                td { (e.build_key.as_deref().or(e.workspace.as_deref()).unwrap_or("")) }
                                td { (e.message) }
                            }
                        }
                        }
                    }
                }
    }
}

/// The last deliveries by build key.
type LatestByKey<'a> = HashMap<&'a str, &'a DeliveryRow>;

/// One workspace's section: its packages, builds, config PRs and recent jobs.
fn workspace(
    name: &str,
    ws: &WorkspaceStatus,
    jobs: &[JobRecord],
    latest: &LatestByKey<'_>,
) -> Markup {
    html! {
        section id={ "ws-" (name) } {
            h2 { (name) }
            p {
                "CI target " code { (ws.ci) }
                @if ws.update_running { " — " b { "update running" } }
            }
            table {
                tr { th { "package" } th { "repository" } th { "branch" } th { "head" } }
                @for p in &ws.packages {
                    tr {
                        td { (p.name) }
                        td { (p.repository) }
                        td { (p.branch) }
                        td { code { (p.head.as_deref().map_or("?", short)) } }
                    }
                }
            }
            table {
                tr { th { "build" } th { "state" } th { "dependencies" } }
                @for b in &ws.builds { (build(name, ws, b, latest)) }
                @for nb in &ws.not_built {
                    tr {
                        td { (nb.build_key) }
                        td.muted { "not built: " (nb.reason) }
                        td {}
                    }
                }
            }
            (config_prs(ws))
            @if !jobs.is_empty() {
                p {
                    "Jobs: "
                    @for j in jobs {
                        a href={ "/api/v1/jobs/" (j.id) "/log" } {
                            "#" (j.id) " " (j.kind) " " (j.status.as_str())
                        }
                        " "
                    }
                }
            }
        }
    }
}

/// A build's row: its key (linked to its PR), delivery state and dependencies (the
/// closure's graph, unresolved references, the cycle).
fn build(name: &str, ws: &WorkspaceStatus, b: &BuildStatus, latest: &LatestByKey<'_>) -> Markup {
    html! {
        tr {
            td {
                @if let Some(pr) = &b.pull_request {
                    (link(&pr.url, &b.build_key)) " " (pr.title) " "
                    span.muted { "by " (pr.author) " · " (pr.test_ref) }
                } @else {
                    (b.build_key)
                }
            }
            td {
                @match (&b.pending, &b.delivered_fingerprint) {
                    (Some(p), _) => {
                        span.bad { "pending" } ", " (p.attempts) " attempts"
                        @if let Some(e) = &p.last_error { ": " (e) }
                    }
                    (None, Some(d)) if *d == b.fingerprint => {
                        span.ok { "delivered" } " " (b.delivered_at.as_deref().unwrap_or(""))
                    }
                    _ => { "not delivered yet" }
                }
            }
            td {
                @if let Some(pr) = &b.pull_request {
                    @if !pr.dependencies.is_empty() { (closure_graph(name, ws, b, latest)) }
                    (lines(
                        pr.dependencies.iter().map(|d| html! { span.muted { (d) } })
                            .chain(pr.unresolved_dependencies.iter().map(|u| html! {
                                span.bad { (u.reference) " (" (u.reason) ")" }
                            }))
                            .chain((!pr.cycle.is_empty()).then(|| html! {
                                "cycle: " (pr.cycle.join(" → "))
                            }))
                    ))
                }
            }
        }
    }
}

/// The graph of a PR build's closure, each node in the state of its own build's
/// last result in workspace `name`.
fn closure_graph(
    name: &str,
    ws: &WorkspaceStatus,
    b: &BuildStatus,
    latest: &LatestByKey<'_>,
) -> Markup {
    let node = |label: &str, key: String| {
        let state = latest
            .get(key.as_str())
            .map_or("unbuilt", |r| state_name(r.state));
        let closure = ws
            .builds
            .iter()
            .find(|other| other.build_key == key)
            .and_then(|other| other.pull_request.as_ref())
            .map(|pr| pr.dependencies.clone());
        graph::Node {
            label: label.to_owned(),
            key,
            state: state.to_owned(),
            closure,
        }
    };
    let Some(pr) = &b.pull_request else {
        return html! {};
    };
    let root_label = b
        .build_key
        .strip_prefix(&format!("{name}/pr/"))
        .and_then(|rest| rest.rsplit_once('/'))
        .map_or_else(|| b.build_key.clone(), |(repo, n)| format!("{repo}#{n}"));
    let root = graph::Node {
        closure: None,
        ..node(&root_label, b.build_key.clone())
    };
    let deps: Vec<graph::Node> = pr
        .dependencies
        .iter()
        .map(|d| {
            let key = d.rsplit_once('#').map_or_else(
                || format!("{name}/pr/{d}"),
                |(repo, n)| format!("{name}/pr/{repo}/{n}"),
            );
            node(d, key)
        })
        .collect();
    graph::graph(&root, &deps)
}

/// The open config PRs of a workspace: discovery, transient packages, the builds
/// made against them, and conflicting definitions.
fn config_prs(ws: &WorkspaceStatus) -> Markup {
    if ws.config_prs.is_empty() {
        return html! {};
    }
    html! {
        table {
            tr { th { "config PR" } th { "discovery" } th { "transient packages" } th { "builds" } }
            @for c in &ws.config_prs {
                tr {
                    td { (link(&c.url, &c.pull_request)) }
                    td {
                        (c.discovery.state)
                        @if let Some(d) = &c.discovery.detail { ": " (d) }
                    }
                    td {
                        (lines(c.transient_packages.iter().map(|p| html! {
                            (p.name) " " span.muted { (p.repository) "@" (p.branch) }
                        })))
                    }
                    td { (lines(c.builds.iter().map(|b| html! { (b) }))) }
                }
            }
            @for conflict in &ws.transient_conflicts {
                tr {
                    td colspan="4" class="bad" {
                        (conflict.package) " is introduced with different repositories: "
                        @for (i, d) in conflict.definitions.iter().enumerate() {
                            @if i > 0 { ", " }
                            (d.repository) " in " (d.config_pr)
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ago, encode_key, link, safe_link};

    #[test]
    fn a_build_key_is_one_path_segment() {
        assert_eq!(
            encode_key("ws/pr/github.com/acme/x'y z/1"),
            "ws%2Fpr%2Fgithub.com%2Facme%2Fx%27y%20z%2F1"
        );
        assert_eq!(encode_key("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn ages_are_said_in_the_largest_whole_unit() {
        let at = "2026-01-01T00:00:00Z";
        let t0 = 1_767_225_600_000;
        for (after_ms, said) in [
            (0, "just now"),
            (9_999, "just now"),
            (42_000, "42 s ago"),
            (180_000, "3 min ago"),
            (7_200_000, "2 h ago"),
            (3 * 86_400_000, "3 days ago"),
            (-5_000, "just now"),
        ] {
            assert_eq!(ago(t0 + after_ms, at), said, "{after_ms}");
        }
        assert_eq!(ago(t0, "not a time"), "not a time");
    }

    #[test]
    fn only_http_and_https_urls_are_links() {
        for url in [
            "https://github.com/acme/app/pull/1",
            "http://gitlab.example.org/acme/robots/lidar/-/merge_requests/1",
            "HTTPS://github.com/acme/x'onmouseover='alert(1)'/pull/1",
        ] {
            assert_eq!(safe_link(url), Some(url), "{url}");
        }
        for url in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
            "file:///etc/passwd",
            "//evil.example/x",
            "/relative/path",
            "",
            "not a url",
        ] {
            assert_eq!(safe_link(url), None, "{url:?}");
        }
    }

    #[test]
    fn a_link_escapes_quotes_and_a_refused_url_is_plain_text() {
        assert_eq!(
            link("https://h/a'b\"c<d", "k'\"<").into_string(),
            "<a href=\"https://h/a'b&quot;c&lt;d\">k'&quot;&lt;</a>"
        );
        assert_eq!(
            link("javascript:alert(1)", "<k>").into_string(),
            "&lt;k&gt;"
        );
    }
}
