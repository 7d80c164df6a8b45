//! The tables of BENCHMARKS.md, rendered from the JSON the `bench` command printed
//! (`bench --markdown tests/bench/results/NAME.json`), so figures are copied, never
//! retyped.

use std::fmt::Write as _;

use anyhow::Context;
use serde_json::Value;

/// The Markdown table of one results file (a cycle scenario or `latency`).
pub fn table(report: &Value) -> anyhow::Result<String> {
    if report["scenario"] == "latency" {
        latency(report)
    } else {
        cycles(report)
    }
}

fn cycles(report: &Value) -> anyhow::Result<String> {
    let mut out = String::from(
        "| phase | cycles / computations | requests | by status | non-304 | polling | single-PR | requests/target | wall ms | CPU ms | peak RSS MiB | builds | fingerprints ms | deliveries |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let phases = report["phases"].as_array().context("no phases")?;
    for p in phases {
        let by_status = p["requests_by_status"]
            .as_object()
            .context("no requests_by_status")?
            .iter()
            .map(|(forge, statuses)| {
                let statuses = statuses
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(status, n)| format!("{status}: {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                format!("{forge} {statuses}")
            })
            .collect::<Vec<_>>()
            .join("; ");
        let non_304 = p["non_304"]
            .as_object()
            .context("no non_304")?
            .iter()
            .map(|(forge, n)| format!("{forge}: {n}"))
            .collect::<Vec<_>>()
            .join("; ");
        let f = |key: &str| p[key].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "| {} | {} / {} | {} | {by_status} | {non_304} | {} | {} | {:.2} | {:.1} | {:.0} | {:.1} | {} | {:.2} | {} |",
            p["name"].as_str().unwrap_or("?"),
            p["cycles"],
            p["computations"],
            p["requests"],
            p["polling_requests"],
            p["single_pr_requests"],
            f("requests_per_target"),
            f("wall_ms"),
            f("cpu_ms"),
            f("peak_rss_kib") / 1024.0,
            p["builds"],
            f("fingerprint_ms"),
            p["deliveries"],
        );
    }
    Ok(out)
}

fn latency(report: &Value) -> anyhow::Result<String> {
    let mut out =
        String::from("| half | pushes | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
    for half in ["polling", "webhook"] {
        let l = &report[half];
        let f = |key: &str| l[key].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "| {half} | {} | {:.1} | {:.1} | {:.1} |",
            l["pushes"],
            f("p50_ms"),
            f("p99_ms"),
            f("max_ms")
        );
    }
    let params = &report["params"];
    let _ = write!(
        out,
        "\n{} deliveries in all; poll_interval {} ms, pushes within {} ms per half, seed {}.\n",
        report["deliveries"], params["poll_interval_ms"], params["window_ms"], params["seed"]
    );
    Ok(out)
}
