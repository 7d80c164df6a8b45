//! `demo`: the README's first command. Runs forgewatch against a fake GitHub and a
//! Buildbot-style receiver on 127.0.0.1 for about a minute and prints each trigger
//! as it arrives (see `forgewatch_tests::demo`). Needs no network.
//!
//! Usage: `demo [--duration 60s]`; Ctrl-C stops it sooner. `RUST_LOG=info` adds the
//! daemon's own log on stderr.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use forgewatch_tests::demo::{Ending, Options};

const USAGE: &str = "usage: demo [--duration DURATION]   (default 60s; e.g. 30s, 2m)";

/// The options, or `None` for `--help`.
fn parse_args() -> anyhow::Result<Option<Options>> {
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let duration = if arg == "-h" || arg == "--help" {
            return Ok(None);
        } else if arg == "--duration" {
            args.next().context("--duration needs a value")?
        } else if let Some(value) = arg.strip_prefix("--duration=") {
            value.to_owned()
        } else {
            bail!("unexpected argument {arg:?}\n{USAGE}");
        };
        options.duration = forgewatch::config::parse_duration(&duration)
            .map_err(|e| anyhow::anyhow!("--duration {duration:?}: {e}"))?;
    }
    Ok(Some(options))
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("demo: {e:#}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("RUST_LOG").is_some() {
        forgewatch::cli::logging::init(forgewatch::cli::logging::LogFormat::Human);
    }
    match forgewatch_tests::demo::run(options).await {
        Ok(Ending::Finished | Ending::Interrupted) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
