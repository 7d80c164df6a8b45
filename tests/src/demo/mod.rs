//! `demo`: forgewatch's main job end to end, offline, in one command (README's first
//! line). A fake GitHub with two repositories and their PRs (one depending on the
//! other), a Buildbot-style change hook receiver, and the daemon itself —
//! `forgewatch::service::run`, what `forgewatch run` runs, in this process, so
//! nothing outlives the demo — all on 127.0.0.1. A script pushes and opens a PR while
//! the daemon polls every two seconds; each trigger the receiver accepts is printed
//! and its result reported back, so the status page shows it. It stops after its
//! duration (once the script is done) or on Ctrl-C / SIGTERM, and removes its
//! temporary directory (configuration and `state_dir`).

mod report;
mod script;
mod world;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use forgewatch::service::{Lifecycle, Requests, SystemClock};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

pub use report::Printer;
use world::{APP, LIB, World};

/// How often the demo's daemon polls the fake GitHub.
pub const POLL_INTERVAL: &str = "2s";

/// The demo's knobs (`demo --duration 60s`).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How long the demo runs (at least until its script is done); the script's steps
    /// are spread over it.
    pub duration: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            duration: Duration::from_secs(60),
        }
    }
}

/// How the demo ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The duration passed with the script done.
    Finished,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// The daemon's notifications go nowhere: the demo prints what the CI receives.
struct Silent;

impl Lifecycle for Silent {
    fn ready(&self) {}
    fn status(&self, _line: &str) {}
    fn watchdog(&self) {}
    fn reloading(&self) {}
    fn stopping(&self) {}
    fn watchdog_interval(&self) -> Option<Duration> {
        None
    }
}

/// Runs the demo, printing to stdout; an error if the daemon failed or a step's
/// deliveries never came.
pub async fn run(options: Options) -> anyhow::Result<Ending> {
    // Caught from the start, so that even an early Ctrl-C removes the directory.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot wait for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot wait for SIGTERM")?;
    let printer = Printer::new();
    let start = tokio::time::Instant::now();
    let world = World::start().await?;
    let config = world.config(POLL_INTERVAL)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1")?;
    let api = format!("http://{}", listener.local_addr()?);
    let seconds = options.duration.as_secs();
    println!(
        "forgewatch demo: the daemon, a fake GitHub and a Buildbot-style receiver on 127.0.0.1, for {seconds}s (Ctrl-C stops it)"
    );
    println!(
        "  fake GitHub:   {} ({LIB}, {APP}; PR {APP}#1 depends on {LIB}#1)",
        world.github.api_url()
    );
    println!("  receiver:      {}", world.ci.buildbot_url());
    println!("  status page:   {api}/   (open it in a browser)");
    println!(
        "  configuration: {} (polls every {POLL_INTERVAL}; {} is removed at exit)",
        world.config_path().display(),
        world.dir().display()
    );
    println!();
    let shutdown = CancellationToken::new();
    let daemon = forgewatch::service::run(
        config,
        listener,
        Requests::default(),
        shutdown.clone(),
        &Silent,
        Arc::new(SystemClock),
    );
    tokio::pin!(daemon);
    let (printed, printed_rx) = tokio::sync::watch::channel(0);
    let follow = report::follow(
        &world.ci,
        &printed,
        printer,
        api,
        world.results_secret.clone(),
        script::failing(),
    );
    let pace = options.duration / (script::step_count() + 2);
    // Printed before the daemon is first polled, so before anything it causes.
    printer.line(
        "daemon",
        "running: first poll of every watched branch and PR list",
    );
    let script = async {
        script::run(&world, printed_rx, printer, start, pace).await?;
        tokio::time::sleep_until(start + options.duration).await;
        anyhow::Ok(())
    };
    let ending = tokio::select! {
        ended = &mut daemon => {
            ended?;
            anyhow::bail!("the daemon stopped on its own");
        }
        done = script => {
            // The daemon is stopped before the error is told, so it leaves nothing.
            done.map(|()| Ending::Finished)
        }
        never = follow => match never {},
        _ = interrupt.recv() => Ok(Ending::Interrupted),
        _ = terminate.recv() => Ok(Ending::Interrupted),
    };
    shutdown.cancel();
    daemon.await.context("the daemon failed")?;
    let delivered = world.ci.accepted().len();
    let requests = world.github.requests();
    let not_modified = requests.iter().filter(|r| r.status == 304).count();
    drop(world);
    let how = match ending {
        Ok(Ending::Interrupted) => "interrupted, stopped",
        _ => "stopped",
    };
    printer.line(
        "daemon",
        &format!(
            "{how}: {delivered} deliveries; {} requests to GitHub, {not_modified} of them answered 304 Not Modified; temporary directory removed",
            requests.len()
        ),
    );
    ending
}
