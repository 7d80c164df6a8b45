//! End-to-end: `GET /metrics` of `forgewatch run` read back with a Prometheus text
//! parser (`prometheus-parse`), with a forge named `a"b` whose name must be
//! escaped in every label; it holds the build information, the process figures,
//! the histograms of cycles, forge requests and deliveries, and the pause and
//! cycle gauges the README's alerts use, and every name the Grafana dashboard of
//! `contrib/` reads; its histograms go on across a reload that replaces the
//! forge's client.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use forgewatch_tests::wait::eventually;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use prometheus_parse::{LineInfo, Sample, Scrape, Value};
use support::{DEADLINE, Env, Ws};

/// The forge's name as written in a label value, escaped (`prometheus-parse` gives
/// label values as written).
const FORGE: &str = r#"a\"b"#;

struct Metrics {
    text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    async fn get(http: &reqwest::Client, base: &str) -> Metrics {
        let r = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let text = r.text().await.unwrap();
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let samples = Scrape::parse(lines).unwrap().samples;
        Metrics { text, samples }
    }

    /// The sample `name` whose labels include `labels`.
    fn sample(&self, name: &str, labels: &[(&str, &str)]) -> &Sample {
        self.samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", self.text))
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.sample(name, labels).value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{name} is {other:?}"),
        }
    }

    /// The cumulative buckets of histogram `name`, `+Inf` last.
    fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let Value::Histogram(buckets) = &self.sample(name, labels).value else {
            panic!("{name} is not a histogram");
        };
        let mut buckets: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }

    /// The `_count` of histogram `name`, checked against its `+Inf` bucket.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let count = self.value(&format!("{name}_count"), labels);
        let buckets = self.buckets(name, labels);
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, count)), "{name}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{name}: {buckets:?}"
        );
        count
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_a_quoted_forge_name_and_hold_build_process_and_histograms() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", "main");
    env.configure(&[Ws {
        name: "app",
        ci: "bb",
        packages: &[("app", "acme/app", "main")],
        pull_requests: true,
    }]);
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    let config = config.replacen(
        "  github:\n    kind: github\n",
        "  'a\"b':\n    kind: github\n",
        1,
    );
    std::fs::write(env.config_path(), &config).unwrap();

    let child = env.command(&["run"]).spawn().unwrap();
    let base = format!("http://{}", env.listen_address().await);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(env.ci.wait_for_accepted(1, DEADLINE).await);
    let m = eventually(DEADLINE, || async {
        let m = Metrics::get(&http, &base).await;
        let triggered = m.value("forgewatch_builds_triggered_total", &[]);
        let pending = m.value("forgewatch_deliveries_pending", &[]);
        (triggered == 1.0 && pending == 0.0).then_some(m)
    })
    .await
    .expect("the delivery never showed in /metrics");

    // Every line is a comment or a sample the parser read; the exposition is complete.
    for line in m.text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            matches!(LineInfo::parse(line), LineInfo::Sample { .. }),
            "{line}"
        );
        assert!(line.starts_with("forgewatch_"), "{line}");
    }
    assert!(m.text.ends_with("# EOF\n"));
    // The quote is escaped: the label value ends where it should.
    let fresh = format!(r#"forgewatch_requests_total{{forge="{FORGE}",status="fresh"}} "#);
    assert!(m.text.contains(&fresh), "{}", m.text);
    let requests: f64 = ["fresh", "not_modified", "failed"]
        .iter()
        .map(|s| {
            m.value(
                "forgewatch_requests_total",
                &[("forge", FORGE), ("status", s)],
            )
        })
        .sum();
    assert!(requests >= 2.0, "{requests}");

    // Build information and the process.
    let info = m.sample("forgewatch_build_info", &[]);
    assert_eq!(info.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
    assert!(!info.labels.get("commit").unwrap().is_empty());
    let rss = m.value("forgewatch_process_resident_memory_bytes", &[]);
    assert!(rss > 1_000_000.0, "{rss}");
    let (open, max) = (
        m.value("forgewatch_process_open_fds", &[]),
        m.value("forgewatch_process_max_fds", &[]),
    );
    assert!(open >= 3.0 && max >= open, "{open} of {max}");
    assert!(m.value("forgewatch_process_cpu_seconds_total", &[]) > 0.0);
    assert!(m.value("forgewatch_process_virtual_memory_bytes", &[]) >= rss);

    // Histograms: every request of the forge timed, every cycle, the delivery.
    let forge = [("forge", FORGE)];
    let timed = m.count("forgewatch_forge_request_duration_seconds", &forge);
    assert_eq!(timed, requests);
    let buckets = m.buckets("forgewatch_forge_request_duration_seconds", &forge);
    assert_eq!(buckets.len(), 11);
    assert_eq!(buckets[0].0, 0.025);
    let cycles = m.count("forgewatch_cycle_time_seconds", &[]);
    assert!(
        cycles >= m.value("forgewatch_cycles_total", &[]),
        "{cycles}"
    );
    let ci = [("ci", "bb")];
    assert_eq!(m.count("forgewatch_delivery_latency_seconds", &ci), 1.0);
    assert!(m.value("forgewatch_delivery_latency_seconds_sum", &ci) < 60.0);

    // What the alerts read.
    assert_eq!(m.value("forgewatch_forge_paused", &forge), 0.0);
    assert_eq!(m.value("forgewatch_poll_interval_seconds", &[]), 1.0);
    let last = m.value("forgewatch_last_cycle_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(last <= now && last > now - 60.0, "{last} vs {now}");

    // The dashboard in contrib/ reads only names the daemon exports.
    let families: Vec<&str> = m
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let dashboard = include_str!("../../contrib/grafana-dashboard.json");
    let words = dashboard.split(|c: char| !(c.is_ascii_lowercase() || c == '_'));
    let mut names: Vec<&str> = words.filter(|w| w.starts_with("forgewatch_")).collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() > 20, "{names:?}");
    for name in names {
        let family = ["_bucket", "_total", "_info"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(families.contains(&family), "the dashboard reads {name}");
    }

    // A reload that replaces the forge's client: the histograms go on.
    let changed = config.replacen("max_concurrency: 4", "max_concurrency: 3", 1);
    assert_ne!(changed, config);
    std::fs::write(env.config_path(), changed).unwrap();
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGHUP).unwrap();
    let reloaded = || async {
        let r = http
            .get(format!("{base}/api/v1/events"))
            .send()
            .await
            .ok()?;
        let events: serde_json::Value = serde_json::from_str(&r.text().await.ok()?).ok()?;
        events
            .as_array()?
            .iter()
            .any(|e| e["kind"] == "reloaded")
            .then_some(())
    };
    eventually(DEADLINE, reloaded)
        .await
        .expect("never reloaded");
    let seen = env.github.requests().len();
    assert!(env.github.wait_for_requests(seen + 2, DEADLINE).await);
    let after = eventually(DEADLINE, || async {
        let after = Metrics::get(&http, &base).await;
        let cycles_after = after.value("forgewatch_cycles_total", &[]);
        (cycles_after > m.value("forgewatch_cycles_total", &[])).then_some(after)
    })
    .await
    .expect("no cycle after the reload");
    let timed_after = after.count("forgewatch_forge_request_duration_seconds", &forge);
    assert!(timed_after > timed, "{timed} then {timed_after}");
    assert!(after.count("forgewatch_cycle_time_seconds", &[]) > cycles);
    assert_eq!(after.count("forgewatch_delivery_latency_seconds", &ci), 1.0);
    support::stop(child).await;
}
