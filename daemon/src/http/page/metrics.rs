//! The exposition of `GET /metrics` (SPEC §10), in the OpenMetrics text format
//! that Prometheus scrapes, written by `prometheus-client` (names, types, label
//! escaping, `# EOF`); every name starts with `forgewatch_`. Each scrape builds a
//! registry from what the engine holds at that moment: the summary of the last
//! cycle, the counters and histograms of [`Metrics`] (which outlive reloads), each
//! forge's requests and their durations (carried across reloads by the clients)
//! and the process's own figures ([`super::process`]).

use std::fmt::Debug;

use forgewatch_adapters::http::{REQUEST_SECONDS_BUCKETS, RequestDurations};
use prometheus_client::encoding::{
    EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::process::Process;
use crate::engine::status::{Metrics, Snapshot};
use crate::engine::view::View;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The commit it was built from (`FORGEWATCH_COMMIT`, set by `daemon/build.rs`:
/// empty when the source is not a git checkout).
const COMMIT: &str = match env!("FORGEWATCH_COMMIT").as_bytes() {
    [] => "unknown",
    _ => env!("FORGEWATCH_COMMIT"),
};

/// The exposition of `/metrics`.
pub fn prometheus(view: &View) -> String {
    let mut registry = Registry::with_prefix("forgewatch");
    // Read under the lock, not cloned: scrapes stay cheap however many builds there are.
    view.read(|snapshot| summary(&mut registry, snapshot, view));
    counters(&mut registry, view.metrics());
    process(&mut registry, &Process::now());
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        // Writing to a string does not fail, nor does encoding what is registered.
        tracing::error!("cannot encode the metrics: {e}");
    }
    text
}

/// What the last cycle left in the summary, and each forge's figures.
fn summary(r: &mut Registry, snapshot: &Snapshot, view: &View) {
    r.register(
        "build",
        "The version of forgewatch and the commit it was built from",
        Info::new([("version", env!("CARGO_PKG_VERSION")), ("commit", COMMIT)]),
    );
    let forges = &snapshot.forges;
    let requests = forges.iter().flat_map(|(name, f)| {
        [
            ("fresh", f.requests_fresh),
            ("not_modified", f.requests_not_modified),
            ("failed", f.requests_failed),
        ]
        .map(|(status, n)| {
            let labels = [("forge", name.clone()), ("status", status.to_owned())];
            (labels, ConstCounter::new(n))
        })
    });
    register_series(
        r,
        "requests",
        "Forge requests by outcome (not_modified: 304)",
        requests.collect(),
    );
    let durations = forges
        .iter()
        .map(|(name, f)| ([("forge", name.clone())], Durations(f.request_durations)));
    register_series(
        r,
        "forge_request_duration_seconds",
        "Time from sending a forge request to its answer read (or its failure), by forge",
        durations.collect(),
    );
    let remaining = forges.iter().filter_map(|(name, f)| {
        let r = f.rate_limit_remaining?;
        Some(([("forge", name.clone())], ConstGauge::new(r)))
    });
    register_series(
        r,
        "rate_limit_remaining",
        "Requests left in the forge's budget",
        remaining.collect(),
    );
    let paused = view
        .forge_pauses()
        .into_iter()
        .map(|(name, paused)| ([("forge", name)], ConstGauge::new(i64::from(paused))));
    register_series(
        r,
        "forge_paused",
        "1 while the forge's rate limit pauses its requests",
        paused.collect(),
    );
    gauge(
        r,
        "cycle_duration_seconds",
        "Wall time of the last cycle",
        snapshot.last_cycle_seconds,
    );
    counter(
        r,
        "cycle_seconds",
        "Wall time of all cycles",
        snapshot.cycle_seconds_total,
    );
    if let Some(at) = snapshot
        .last_cycle_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
    {
        let help = "When the last cycle started (Unix seconds)";
        gauge(r, "last_cycle_timestamp_seconds", help, at.as_secs());
    }
    let interval = view.poll_interval().as_secs_f64();
    gauge(
        r,
        "poll_interval_seconds",
        "The configured poll interval",
        interval,
    );
    let help = "Cycles that computed every build (a slice whose answers changed nothing does not)";
    counter(r, "build_computations", help, snapshot.computations);
    gauge(
        r,
        "builds",
        "Builds computed by the last cycle",
        snapshot.builds as u64,
    );
    let help = "Time the last cycle took to compute the fingerprints of all its builds";
    gauge(
        r,
        "fingerprint_duration_seconds",
        help,
        snapshot.fingerprint_seconds,
    );
    counter(r, "cycles", "Cycles run", snapshot.cycles);
    let pending = snapshot.pending as u64;
    gauge(
        r,
        "deliveries_pending",
        "Deliveries waiting in the outbox",
        pending,
    );
}

/// The counters and histograms kept as things happen.
fn counters(r: &mut Registry, m: &Metrics) {
    let help = "Wall time of each cycle";
    r.register("cycle_time_seconds", help, m.timings.cycles());
    let get = Metrics::get;
    counter(
        r,
        "builds_triggered",
        "Deliveries the CI accepted",
        get(&m.builds_triggered),
    );
    let failed = get(&m.deliveries_failed);
    counter(
        r,
        "deliveries_failed",
        "Delivery attempts that failed",
        failed,
    );
    let latencies = m
        .timings
        .deliveries()
        .into_iter()
        .map(|(ci, h)| ([("ci", ci)], h))
        .collect();
    let help = "Time from enqueueing a delivery (the start of the cycle that saw the change, to the second) to its CI target's 2xx, retries included, by CI target";
    register_series(r, "delivery_latency_seconds", help, latencies);
    let accepted = get(&m.webhooks_accepted);
    counter(
        r,
        "webhooks_accepted",
        "Webhooks with a valid signature",
        accepted,
    );
    let refused = get(&m.webhooks_refused);
    counter(
        r,
        "webhooks_refused",
        "Webhooks refused (signature)",
        refused,
    );
    let posted = get(&m.statuses_posted);
    counter(
        r,
        "statuses_posted",
        "Commit statuses the forges accepted",
        posted,
    );
    let help = "Commit status posts that failed or were refused (each attempt)";
    counter(r, "statuses_failed", help, get(&m.statuses_failed));
    let outcomes = |[succeeded, failed, timed_out]: [&std::sync::atomic::AtomicU64; 3]| -> Vec<_> {
        [
            ("succeeded", succeeded),
            ("failed", failed),
            ("timed_out", timed_out),
        ]
        .map(|(outcome, n)| ([("outcome", outcome)], ConstCounter::new(get(n))))
        .into()
    };
    let updates = [
        &m.updates_succeeded,
        &m.updates_failed,
        &m.updates_timed_out,
    ];
    register_series(r, "updates", "Update jobs by outcome", outcomes(updates));
    let discoveries = [
        &m.discoveries_succeeded,
        &m.discoveries_failed,
        &m.discoveries_timed_out,
    ];
    let help = "Discovery jobs by outcome";
    register_series(r, "discoveries", help, outcomes(discoveries));
    let results = m
        .results
        .counts()
        .into_iter()
        .map(|((ci, state), n)| {
            (
                [("ci", ci), ("state", state.to_owned())],
                ConstCounter::new(n),
            )
        })
        .collect();
    let help = "Results received, by CI target (`unknown`: naming no known delivery) and state";
    register_series(r, "results", help, results);
    let help = "Time from a delivery to its final result";
    r.register("result_latency_seconds", help, m.results.latency());
}

/// The process's own figures, those that could be read.
fn process(r: &mut Registry, p: &Process) {
    if let Some(cpu) = p.cpu_seconds {
        counter(r, "process_cpu_seconds", "User and system CPU time", cpu);
    }
    let gauges = [
        (
            "process_resident_memory_bytes",
            "Resident memory",
            p.resident_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory",
            p.virtual_bytes,
        ),
        ("process_open_fds", "Open file descriptors", p.open_fds),
        (
            "process_max_fds",
            "The limit of open file descriptors",
            p.max_fds,
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            gauge(r, name, help, value);
        }
    }
}

fn counter<N>(r: &mut Registry, name: &str, help: &str, value: N)
where
    N: EncodeCounterValue + Debug + Send + Sync + 'static,
{
    r.register(name, help, ConstCounter::new(value));
}

fn gauge<N>(r: &mut Registry, name: &str, help: &str, value: N)
where
    N: EncodeGaugeValue + Debug + Send + Sync + 'static,
{
    r.register(name, help, ConstGauge::new(value));
}

fn register_series<L, M>(r: &mut Registry, name: &str, help: &str, series: Vec<(L, M)>)
where
    Series<L, M>: EncodeMetric + Debug + Send + Sync + 'static,
{
    r.register(name, help, Series(series));
}

/// A metric family whose series are known at the scrape, in this order
/// (`prometheus_client`'s `Family` is for series updated in place).
#[derive(Debug)]
struct Series<L, M>(Vec<(L, M)>);

impl<L: EncodeLabelSet, M: EncodeMetric + TypedMetric> EncodeMetric for Series<L, M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, metric) in &self.0 {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// A forge's request durations, as the adapters accumulate them.
#[derive(Debug)]
struct Durations(RequestDurations);

impl TypedMetric for Durations {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Durations {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let bounds = REQUEST_SECONDS_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(self.0.buckets).collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum_seconds(), self.0.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
