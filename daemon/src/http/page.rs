//! The human-readable side of the HTTP API: the status page at `GET /` (server-
//! rendered HTML, no front-end build, readable on a phone and a wide screen) and
//! the Prometheus text of `GET /metrics`. The page is a `maud` template: every
//! value is escaped, and a forge-supplied URL becomes a link only if it is http(s)
//! ([`safe_link`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use url::Url;

use crate::engine::status::{BuildStatus, Metrics, Snapshot, WorkspaceStatus};
use crate::engine::view::View;
use crate::http::api::ApiState;
use crate::http::errors::error;
use crate::state::events::{Event, EventQuery};
use crate::state::jobs::JobRecord;

const STYLE: &str = concat!(
    "body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em}",
    "table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{text-align:left;padding:.2em .5em;border-bottom:1px solid #ddd;vertical-align:top}",
    "code{font-size:12px}.bad{color:#b00}.ok{color:#070}.muted{color:#666}",
    "section{margin-bottom:2em}@media(max-width:700px){td,th{display:block}}",
);

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

pub async fn page(State(api): State<ApiState>) -> Response {
    let view = api.current();
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
        .events(&EventQuery::default())
        .await
        .unwrap_or_default();
    render(&snapshot, &jobs, &events).into_response()
}

/// The page of `snapshot`, with each workspace's recent `jobs` and the latest `events`.
fn render(
    snapshot: &Snapshot,
    jobs: &BTreeMap<String, Vec<JobRecord>>,
    events: &[Event],
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "forgewatch" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "forgewatch" }
                p.muted {
                    (snapshot.cycles) " cycles, last at "
                    (snapshot.last_cycle_at.as_deref().unwrap_or("never"))
                    @if let Some(e) = &snapshot.config_error {
                        " — " span.bad { "configuration not reloaded: " (e) }
                    }
                }
                @for (name, ws) in &snapshot.workspaces {
                    (workspace(name, ws, jobs.get(name).map_or(&[], Vec::as_slice)))
                }
                section {
                    h2 { "Recent events" }
                    table {
                        @for e in events.iter().rev().take(30) {
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
}

/// One workspace's section: its packages, builds, config PRs and recent jobs.
fn workspace(name: &str, ws: &WorkspaceStatus, jobs: &[JobRecord]) -> Markup {
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
                @for b in &ws.builds { (build(b)) }
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

/// A build's row: its key (linked to its PR), delivery state and dependencies.
fn build(b: &BuildStatus) -> Markup {
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
                    (lines(
                        pr.dependencies.iter().map(|d| html! { (d) })
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

/// The Prometheus text exposition of `/metrics`; every name starts with `forgewatch_`.
pub fn prometheus(view: &View) -> String {
    // Read under the lock, not cloned: scrapes stay cheap however many builds there are.
    view.read(|snapshot| prometheus_of(snapshot, view.metrics()))
}

fn prometheus_of(snapshot: &Snapshot, m: &Metrics) -> String {
    let mut t = String::new();
    t.push_str("# HELP forgewatch_requests_total Forge requests by outcome (not_modified: 304).\n# TYPE forgewatch_requests_total counter\n");
    for (name, f) in &snapshot.forges {
        for (status, n) in [
            ("fresh", f.requests_fresh),
            ("not_modified", f.requests_not_modified),
            ("failed", f.requests_failed),
        ] {
            let _ = writeln!(
                t,
                "forgewatch_requests_total{{forge=\"{name}\",status=\"{status}\"}} {n}"
            );
        }
    }
    t.push_str("# HELP forgewatch_rate_limit_remaining Requests left in the forge's budget.\n# TYPE forgewatch_rate_limit_remaining gauge\n");
    for (name, f) in &snapshot.forges {
        if let Some(r) = f.rate_limit_remaining {
            let _ = writeln!(t, "forgewatch_rate_limit_remaining{{forge=\"{name}\"}} {r}");
        }
    }
    let simple = [
        (
            "cycle_duration_seconds",
            "gauge",
            "Wall time of the last cycle.",
            format!("{}", snapshot.last_cycle_seconds),
        ),
        (
            "cycle_seconds_total",
            "counter",
            "Wall time of all cycles.",
            format!("{}", snapshot.cycle_seconds_total),
        ),
        (
            "build_computations_total",
            "counter",
            "Cycles that computed every build (a slice whose answers changed nothing does not).",
            snapshot.computations.to_string(),
        ),
        (
            "builds",
            "gauge",
            "Builds computed by the last cycle.",
            snapshot.builds.to_string(),
        ),
        (
            "fingerprint_duration_seconds",
            "gauge",
            "Time the last cycle took to compute the fingerprints of all its builds.",
            format!("{}", snapshot.fingerprint_seconds),
        ),
        (
            "cycles_total",
            "counter",
            "Cycles run.",
            snapshot.cycles.to_string(),
        ),
        (
            "builds_triggered_total",
            "counter",
            "Deliveries the CI accepted.",
            Metrics::get(&m.builds_triggered).to_string(),
        ),
        (
            "deliveries_failed_total",
            "counter",
            "Delivery attempts that failed.",
            Metrics::get(&m.deliveries_failed).to_string(),
        ),
        (
            "deliveries_pending",
            "gauge",
            "Deliveries waiting in the outbox.",
            snapshot.pending.to_string(),
        ),
        (
            "webhooks_accepted_total",
            "counter",
            "Webhooks with a valid signature.",
            Metrics::get(&m.webhooks_accepted).to_string(),
        ),
        (
            "webhooks_refused_total",
            "counter",
            "Webhooks refused (signature).",
            Metrics::get(&m.webhooks_refused).to_string(),
        ),
        (
            "statuses_posted_total",
            "counter",
            "Commit statuses the forges accepted.",
            Metrics::get(&m.statuses_posted).to_string(),
        ),
        (
            "statuses_failed_total",
            "counter",
            "Commit status posts that failed or were refused (each attempt).",
            Metrics::get(&m.statuses_failed).to_string(),
        ),
    ];
    for (name, kind, help, value) in simple {
        let _ = writeln!(
            t,
            "# HELP forgewatch_{name} {help}\n# TYPE forgewatch_{name} {kind}\nforgewatch_{name} {value}"
        );
    }
    t.push_str("# HELP forgewatch_updates_total Update jobs by outcome.\n# TYPE forgewatch_updates_total counter\n");
    for (outcome, counter) in [
        ("succeeded", &m.updates_succeeded),
        ("failed", &m.updates_failed),
        ("timed_out", &m.updates_timed_out),
    ] {
        let _ = writeln!(
            t,
            "forgewatch_updates_total{{outcome=\"{outcome}\"}} {}",
            Metrics::get(counter)
        );
    }
    t.push_str("# HELP forgewatch_discoveries_total Discovery jobs by outcome.\n# TYPE forgewatch_discoveries_total counter\n");
    for (outcome, counter) in [
        ("succeeded", &m.discoveries_succeeded),
        ("failed", &m.discoveries_failed),
        ("timed_out", &m.discoveries_timed_out),
    ] {
        let _ = writeln!(
            t,
            "forgewatch_discoveries_total{{outcome=\"{outcome}\"}} {}",
            Metrics::get(counter)
        );
    }
    results(&mut t, &m.results.counts());
    t
}

/// Results by CI target and state, and the time from delivery to final result.
fn results(t: &mut String, counts: &crate::engine::result_metrics::ResultCounts) {
    use crate::engine::result_metrics::LATENCY_BUCKETS;
    t.push_str("# HELP forgewatch_results_total Results received, by CI target (`unknown`: naming no known delivery) and state.\n# TYPE forgewatch_results_total counter\n");
    for ((ci, state), n) in &counts.by_target {
        let ci = ci.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            t,
            "forgewatch_results_total{{ci=\"{ci}\",state=\"{state}\"}} {n}"
        );
    }
    t.push_str("# HELP forgewatch_result_latency_seconds Time from a delivery to its final result.\n# TYPE forgewatch_result_latency_seconds histogram\n");
    let bounds = LATENCY_BUCKETS
        .iter()
        .map(ToString::to_string)
        .chain(["+Inf".to_owned()]);
    for (bound, n) in bounds.zip(
        counts
            .latency_buckets
            .iter()
            .copied()
            .chain(std::iter::repeat(0)),
    ) {
        let _ = writeln!(
            t,
            "forgewatch_result_latency_seconds_bucket{{le=\"{bound}\"}} {n}"
        );
    }
    let _ = writeln!(
        t,
        "forgewatch_result_latency_seconds_sum {}\nforgewatch_result_latency_seconds_count {}",
        counts.latency_sum, counts.latency_count
    );
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
    use super::{link, safe_link};

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
