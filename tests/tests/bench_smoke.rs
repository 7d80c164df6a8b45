//! Smoke run of the benchmark harness (issue 8): the `shared` scenario at a small
//! size, asserting the request-count invariants exactly (never timings).

use std::path::Path;

use forgewatch_tests::bench::{self, Report, Shared};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_forgewatch-under-test"))
}

async fn shared(workspaces: usize) -> Report {
    let params = Shared {
        workspaces,
        repos: 5,
        prs: 2,
    };
    bench::run_shared(binary(), params)
        .await
        .expect("bench scenario shared")
}

/// Request counts of the three phases, without timings.
fn counts(report: &Report) -> Vec<(String, usize, usize, usize)> {
    report
        .phases
        .iter()
        .map(|p| (p.name.clone(), p.requests, p.non_304, p.single_pr_requests))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_scenario_request_invariants_hold_independent_of_workspaces() {
    let (one, three) = tokio::join!(shared(1), shared(3));
    eprint!("{}{}", one.table(), three.table());
    for report in [&one, &three] {
        let bound = report.distinct_targets + report.distinct_pr_lists;
        let first = report.phase("first").expect("first phase");
        assert!(first.requests > 0, "{}", report.table());
        assert_eq!(first.deliveries, first.builds, "{}", report.table());
        assert_eq!(
            first.builds,
            report.parameters.workspaces * (1 + report.parameters.repos * report.parameters.prs),
            "one mainline and one build per PR in each workspace\n{}",
            report.table()
        );
        for name in ["idle", "restart"] {
            let phase = report.phase(name).expect("phase");
            assert_eq!(
                phase.non_304,
                0,
                "{name}: non-304 responses\n{}",
                report.table()
            );
            assert!(
                phase.requests <= bound,
                "{name}: {} requests > {bound}\n{}",
                phase.requests,
                report.table()
            );
            assert_eq!(
                phase.deliveries,
                0,
                "{name}: deliveries\n{}",
                report.table()
            );
            assert_eq!(phase.single_pr_requests, 0, "{name}\n{}", report.table());
        }
    }
    // The same requests with 1 and 3 workspaces sharing the repositories.
    assert_eq!(counts(&one), counts(&three));
    let json = serde_json::to_value(&three).expect("report serializes");
    assert_eq!(json["phases"].as_array().map(Vec::len), Some(3));
}
