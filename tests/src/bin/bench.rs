//! `bench`: the benchmark harness of issue 8. Runs a scenario against the real
//! `forgewatch` binary (`forgewatch-under-test`, next to this executable) and prints
//! one JSON object of figures on stdout, then a readable table on stderr.
//!
//! Usage: `cargo run --release -p forgewatch-tests --bin bench -- --scenario
//! shared|large|latency [--workspaces N] [--targets N] [--prs N] [--interval MS]`;
//! `bench --markdown RESULTS.json` prints the BENCHMARKS.md table of a result.

use std::time::Duration;

use anyhow::{Context, bail};
use forgewatch_tests::bench::{self, Size, daemon::binary_next_to_self, latency};

const USAGE: &str = "usage: bench --scenario shared|large|latency [--workspaces N] [--targets N] [--prs N] [--interval MS]\n       bench --markdown RESULTS.json";

fn number(value: Option<String>, flag: &str) -> anyhow::Result<usize> {
    value
        .with_context(|| format!("{flag} needs a number"))?
        .parse()
        .with_context(|| format!("{flag} needs a number"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut scenario = None;
    let mut overrides: Vec<(String, usize)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--markdown" => {
                let path = args.next().context("--markdown needs a results file")?;
                let text = std::fs::read_to_string(&path).with_context(|| path.clone())?;
                let report = serde_json::from_str(&text).with_context(|| path.clone())?;
                print!("{}", bench::markdown::table(&report)?);
                return Ok(());
            }
            "--scenario" => scenario = Some(args.next().context("--scenario needs a name")?),
            flag @ ("--workspaces" | "--targets" | "--prs" | "--interval") => {
                overrides.push((flag.to_owned(), number(args.next(), flag)?));
            }
            _ => bail!("unexpected argument {arg:?}\n{USAGE}"),
        }
    }
    let (mut size, mut interval_ms) = match scenario.as_deref() {
        Some("shared") => (Size::SHARED, 16_000),
        Some("large") => (Size::LARGE, 40_000),
        Some("latency") => (
            latency::Params::FULL.size,
            latency::Params::FULL.poll_interval_ms as usize,
        ),
        Some(other) => bail!("unknown scenario {other:?}\n{USAGE}"),
        None => bail!("{USAGE}"),
    };
    for (flag, n) in overrides {
        match flag.as_str() {
            "--workspaces" => size.workspaces = n,
            "--targets" => {
                size.gitlab_targets = size.gitlab_targets * n / size.targets.max(1);
                size.targets = n;
            }
            "--prs" => size.prs = n,
            _ => interval_ms = n,
        }
    }
    let binary = binary_next_to_self()?;
    if scenario.as_deref() == Some("latency") {
        let params = latency::Params {
            size,
            poll_interval_ms: interval_ms as u64,
            ..latency::Params::FULL
        };
        let report = latency::run(&binary, params).await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        eprint!("{}", report.table());
    } else {
        let name = scenario.as_deref().unwrap_or_default();
        let interval = Duration::from_millis(interval_ms as u64);
        let report = bench::run_cycles(&binary, name, size, interval).await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        eprint!("{}", report.table());
    }
    Ok(())
}
