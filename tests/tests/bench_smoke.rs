//! Smoke runs of the benchmark harness (issue 8) at a small size, inside `cargo
//! test`: the harness still works, and the request-count invariants hold exactly
//! (never timings).

use std::path::Path;
use std::time::Duration;

use forgewatch_tests::bench::{self, Report, SLICES, Size, latency};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_forgewatch-under-test"))
}

/// Slices 1 s apart: ample for cycles of a few milliseconds, even on a loaded machine.
const INTERVAL: Duration = Duration::from_secs(4);

/// Keeps every core busy while it lives (one spinning thread per core): the
/// invariants must hold exactly on a loaded machine.
struct CpuHog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuHog {
    fn start() -> CpuHog {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        CpuHog { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

async fn cycles(name: &str, size: Size) -> Report {
    let _hog = CpuHog::start();
    bench::run_cycles(binary(), name, size, INTERVAL)
        .await
        .expect("bench scenario")
}

/// Request counts of the phases, without timings.
fn counts(report: &Report) -> Vec<(String, usize, usize, usize)> {
    report
        .phases
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.requests,
                p.non_304_total(),
                p.single_pr_requests,
            )
        })
        .collect()
}

fn assert_invariants(report: &Report, builds: u64) {
    let table = report.table();
    let bound = report.distinct_targets + report.distinct_pr_lists;
    let first = report.phase("first").expect("first phase");
    assert_eq!(first.cycles, 1, "{table}");
    assert_eq!(first.polling_requests, bound, "{table}");
    assert_eq!(first.builds, builds, "{table}");
    assert_eq!(first.deliveries as u64, builds, "{table}");
    for name in ["idle-1", "idle", "restart"] {
        let phase = report.phase(name).expect("phase");
        assert_eq!(
            phase.non_304_total(),
            0,
            "{name}: non-304 responses\n{table}"
        );
        assert_eq!(
            phase.requests, bound,
            "{name}: every target and PR list once\n{table}"
        );
        assert_eq!(phase.deliveries, 0, "{name}: deliveries\n{table}");
        assert_eq!(phase.single_pr_requests, 0, "{name}\n{table}");
        assert_eq!(phase.builds, builds, "{name}\n{table}");
    }
    // An idle interval polls in every slice but computes the builds once, in its
    // first slice; the others find nothing changed.
    for name in ["idle-1", "idle"] {
        let phase = report.phase(name).expect("phase");
        assert_eq!(
            (phase.cycles, phase.computations),
            (SLICES, 1),
            "{name}\n{table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_scenario_request_invariants_hold_independent_of_workspaces() {
    let size = |workspaces| Size {
        workspaces,
        targets: 5,
        packages_per_workspace: 5,
        prs: 10,
        ..Size::SHARED
    };
    let (one, three) = tokio::join!(cycles("shared", size(1)), cycles("shared", size(3)));
    eprint!("{}{}", one.table(), three.table());
    // One mainline and one build per PR in each workspace.
    assert_invariants(&one, 1 + 10);
    assert_invariants(&three, 3 * (1 + 10));
    // The same requests with 1 and 3 workspaces sharing the repositories.
    assert_eq!(counts(&one), counts(&three));
    let json = serde_json::to_value(&three).expect("report serializes");
    assert_eq!(json["phases"].as_array().map(Vec::len), Some(4));
    // BENCHMARKS.md's table of it: a header, a rule and a row per phase.
    let table = bench::markdown::table(&json).expect("markdown table");
    assert_eq!(table.lines().count(), 2 + 4, "{table}");
    assert!(table.contains("| idle | 4 / 1 | 10 |"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_scenario_shape_at_small_size_covers_both_forges_and_dependencies() {
    // 4 workspaces over 8 targets (4 on GitLab), windows of 4: each target shared by
    // two workspaces; 4 PRs (2 per forge), 2 dependency edges.
    let size = Size {
        workspaces: 4,
        targets: 8,
        gitlab_targets: 4,
        packages_per_workspace: 4,
        prs: 4,
        dependency_edges: 2,
    };
    let report = cycles("large", size).await;
    eprint!("{}", report.table());
    // Each workspace: a mainline, and the PRs of its 4 targets (PRs on targets 0, 2,
    // 4, 6; windows 0-3, 2-5, 4-7, 6-1): two each.
    assert_invariants(&report, 4 * (1 + 2));
    // Both forges: a branch and a PR list per target; GitHub's two PRs are also
    // asked for their mergeability once.
    let first = report.phase("first").expect("first");
    let ok = |forge: &str| first.requests_by_status[forge].get(&200).copied();
    assert_eq!(
        (ok("github"), ok("gitlab")),
        (Some(10), Some(8)),
        "{}",
        report.table()
    );
    assert_eq!(first.single_pr_requests, 2, "{}", report.table());
    // The two forges' rounds of a cycle are computed from together, and GitHub's
    // mergeability answers once both are in: two computations in `first`, one in
    // `restart`.
    let computations = |name| report.phase(name).expect("phase").computations;
    assert_eq!(
        (computations("first"), computations("restart")),
        (2, 1),
        "{}",
        report.table()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_scenario_delivers_every_push_by_polling_and_by_webhook() {
    let params = latency::Params {
        size: Size {
            targets: 4,
            packages_per_workspace: 4,
            ..Size::LATENCY
        },
        poll_interval_ms: 1000,
        pushes: 6,
        window_ms: 1500,
        seed: 3,
    };
    let report = latency::run(binary(), params)
        .await
        .expect("latency scenario");
    eprint!("{}", report.table());
    for half in [&report.polling, &report.webhook] {
        assert_eq!(half.pushes, 6);
        assert_eq!(half.samples_ms.len(), 6);
        assert!(half.p50_ms <= half.p99_ms && half.p99_ms <= half.max_ms);
    }
    assert!(
        report.deliveries >= 1 && report.deliveries <= 12,
        "{}",
        report.table()
    );
    let json = serde_json::to_value(&report).expect("report serializes");
    let table = bench::markdown::table(&json).expect("markdown table");
    assert!(table.starts_with("| half |"), "{table}");
}
