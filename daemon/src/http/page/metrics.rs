//! The Prometheus text exposition of `GET /metrics` (SPEC §10): every name starts
//! with `forgewatch_`; counters and gauges of the engine's summary and the
//! `/metrics` counters, results by CI target and state, and the time from a
//! delivery to its final result.

use std::fmt::Write as _;

use crate::engine::status::{Metrics, Snapshot};
use crate::engine::view::View;

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
