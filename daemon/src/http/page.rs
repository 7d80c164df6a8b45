//! The human-readable side of the HTTP API: the status page at `GET /` (server-
//! rendered HTML, no front-end build, readable on a phone and a wide screen) and
//! the Prometheus text of `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::engine::status::{Metrics, Snapshot};
use crate::engine::view::View;
use crate::http::api::ApiState;
use crate::state::events::{Event, EventQuery};
use crate::state::jobs::JobRecord;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

pub async fn page(State(api): State<ApiState>) -> Response {
    let view = api.current();
    let snapshot = match view.snapshot().await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            let text = format!("<p>the state cannot be read: {}</p>", esc(&e.to_string()));
            return (StatusCode::INTERNAL_SERVER_ERROR, Html(text)).into_response();
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
    Html(render(&snapshot, &jobs, &events)).into_response()
}

/// The page of `snapshot`, with each workspace's recent `jobs` and the latest `events`.
fn render(
    snapshot: &Snapshot,
    jobs: &BTreeMap<String, Vec<JobRecord>>,
    events: &[Event],
) -> String {
    let mut h = String::new();
    h.push_str(concat!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        "<title>forgewatch</title><style>",
        "body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em}",
        "table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{text-align:left;padding:.2em .5em;border-bottom:1px solid #ddd;vertical-align:top}",
        "code{font-size:12px}.bad{color:#b00}.ok{color:#070}.muted{color:#666}",
        "section{margin-bottom:2em}@media(max-width:700px){td,th{display:block}}",
        "</style></head><body><h1>forgewatch</h1>"
    ));
    let _ = write!(
        h,
        "<p class=muted>{} cycles, last at {}{}</p>",
        snapshot.cycles,
        esc(snapshot.last_cycle_at.as_deref().unwrap_or("never")),
        snapshot
            .config_error
            .as_deref()
            .map(|e| format!(
                " — <span class=bad>configuration not reloaded: {}</span>",
                esc(e)
            ))
            .unwrap_or_default()
    );
    for (name, ws) in &snapshot.workspaces {
        let _ = write!(
            h,
            "<section id='ws-{0}'><h2>{0}</h2><p>CI target <code>{1}</code>{2}</p>",
            esc(name),
            esc(&ws.ci),
            if ws.update_running {
                " — <b>update running</b>"
            } else {
                ""
            }
        );
        h.push_str(
            "<table><tr><th>package</th><th>repository</th><th>branch</th><th>head</th></tr>",
        );
        for p in &ws.packages {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&p.name),
                esc(&p.repository),
                esc(&p.branch),
                esc(p.head.as_deref().map_or("?", short))
            );
        }
        h.push_str("</table><table><tr><th>build</th><th>state</th><th>dependencies</th></tr>");
        for b in &ws.builds {
            let state = match (&b.pending, &b.delivered_fingerprint) {
                (Some(p), _) => format!(
                    "<span class=bad>pending</span>, {} attempts{}",
                    p.attempts,
                    p.last_error
                        .as_deref()
                        .map(|e| format!(": {}", esc(e)))
                        .unwrap_or_default()
                ),
                (None, Some(d)) if *d == b.fingerprint => format!(
                    "<span class=ok>delivered</span> {}",
                    esc(b.delivered_at.as_deref().unwrap_or(""))
                ),
                _ => "not delivered yet".to_owned(),
            };
            let (title, deps) = match &b.pull_request {
                Some(pr) => {
                    let mut deps: Vec<String> = pr.dependencies.iter().map(|d| esc(d)).collect();
                    deps.extend(pr.unresolved_dependencies.iter().map(|u| {
                        format!(
                            "<span class=bad>{} ({})</span>",
                            esc(&u.reference),
                            esc(&u.reason)
                        )
                    }));
                    if !pr.cycle.is_empty() {
                        deps.push(format!("cycle: {}", esc(&pr.cycle.join(" → "))));
                    }
                    (
                        format!(
                            "<a href='{}'>{}</a> {} <span class=muted>by {} · {}</span>",
                            esc(&pr.url),
                            esc(&b.build_key),
                            esc(&pr.title),
                            esc(&pr.author),
                            esc(&pr.test_ref)
                        ),
                        deps.join("<br>"),
                    )
                }
                None => (esc(&b.build_key), String::new()),
            };
            let _ = write!(
                h,
                "<tr><td>{title}</td><td>{state}</td><td>{deps}</td></tr>"
            );
        }
        for nb in &ws.not_built {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=muted>not built: {}</td><td></td></tr>",
                esc(&nb.build_key),
                esc(&nb.reason)
            );
        }
        h.push_str("</table>");
        config_prs(&mut h, ws);
        if let Some(jobs) = jobs.get(name)
            && !jobs.is_empty()
        {
            h.push_str("<p>Jobs: ");
            for j in jobs {
                let _ = write!(
                    h,
                    "<a href='/api/v1/jobs/{0}/log'>#{0} {1} {2}</a> ",
                    j.id,
                    esc(&j.kind),
                    j.status.as_str()
                );
            }
            h.push_str("</p>");
        }
        h.push_str("</section>");
    }
    h.push_str("<section><h2>Recent events</h2><table>");
    for e in events.iter().rev().take(30) {
        let _ = write!(
            h,
            "<tr><td class=muted>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.time),
            esc(&e.kind),
            esc(e
                .build_key
                .as_deref()
                .or(e.workspace.as_deref())
                .unwrap_or("")),
            esc(&e.message)
        );
    }
    h.push_str("</table></section></body></html>");
    h
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
    t
}

/// The open config PRs of a workspace: discovery, transient packages, the builds
/// made against them, and conflicting definitions.
fn config_prs(h: &mut String, ws: &crate::engine::status::WorkspaceStatus) {
    if ws.config_prs.is_empty() {
        return;
    }
    h.push_str("<table><tr><th>config PR</th><th>discovery</th><th>transient packages</th><th>builds</th></tr>");
    for c in &ws.config_prs {
        let packages: Vec<String> = c
            .transient_packages
            .iter()
            .map(|p| {
                format!(
                    "{} <span class=muted>{}@{}</span>",
                    esc(&p.name),
                    esc(&p.repository),
                    esc(&p.branch)
                )
            })
            .collect();
        let builds: Vec<String> = c.builds.iter().map(|b| esc(b)).collect();
        let _ = write!(
            h,
            "<tr><td><a href='{}'>{}</a></td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.url),
            esc(&c.pull_request),
            c.discovery.state,
            c.discovery
                .detail
                .as_deref()
                .map(|d| format!(": {}", esc(d)))
                .unwrap_or_default(),
            packages.join("<br>"),
            builds.join("<br>")
        );
    }
    for conflict in &ws.transient_conflicts {
        let defs: Vec<String> = conflict
            .definitions
            .iter()
            .map(|d| format!("{} in {}", esc(&d.repository), esc(&d.config_pr)))
            .collect();
        let _ = write!(
            h,
            "<tr><td colspan=4 class=bad>{} is introduced with different repositories: {}</td></tr>",
            esc(&conflict.package),
            defs.join(", ")
        );
    }
    h.push_str("</table>");
}
