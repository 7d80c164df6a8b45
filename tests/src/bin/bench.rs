//! `bench`: the benchmark harness of issue 8. Runs a scenario against the real
//! `forgewatch` binary (`forgewatch-under-test`, next to this executable) and prints
//! one JSON object of figures on stdout, then a readable table on stderr.
//!
//! Usage: `cargo run --release -p forgewatch-tests --bin bench -- --scenario shared
//! [--workspaces N] [--repos M] [--prs P]`

use anyhow::{Context, bail};
use forgewatch_tests::bench::{self, Shared};

const USAGE: &str = "usage: bench --scenario shared [--workspaces N] [--repos M] [--prs P]   (large, latency: not implemented)";

fn number(value: Option<String>, flag: &str) -> anyhow::Result<usize> {
    value
        .with_context(|| format!("{flag} needs a number"))?
        .parse()
        .with_context(|| format!("{flag} needs a number"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut scenario = None;
    let mut params = Shared::FULL;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--scenario" => scenario = Some(args.next().context("--scenario needs a name")?),
            "--workspaces" => params.workspaces = number(args.next(), "--workspaces")?,
            "--repos" => params.repos = number(args.next(), "--repos")?,
            "--prs" => params.prs = number(args.next(), "--prs")?,
            _ => bail!("unexpected argument {arg:?}\n{USAGE}"),
        }
    }
    let report = match scenario.as_deref() {
        Some("shared") => bench::run_shared(&bench::binary_next_to_self()?, params).await?,
        Some(other @ ("large" | "latency")) => bail!("scenario {other} is not implemented yet"),
        Some(other) => bail!("unknown scenario {other:?}\n{USAGE}"),
        None => bail!("{USAGE}"),
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprint!("{}", report.table());
    Ok(())
}
