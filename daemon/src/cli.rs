//! The command line (SPEC §6): `check`, `once`, `run`. Parses arguments, sets up
//! logging, and maps outcomes to exit codes: 0 success (also with failed deliveries,
//! which are reported), 1 failure of the job itself, 2 usage or configuration error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::cycle::{CycleReport, Mode, Slice, Status};
use crate::lock::StateLock;
use crate::packages::Packages;
use crate::state::State;
use crate::supervisor::Supervisor;

const DEFAULT_CONFIG: &str = "/etc/forgewatch/config.yml";
/// Slices of a poll interval in `run` (see the run loop).
const SLICES: usize = 4;

#[derive(Parser, Debug)]
#[command(
    name = "forgewatch",
    version,
    about = "Watches forges for many build workspaces and triggers CI when a build changes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: one cycle every poll_interval until SIGTERM or SIGINT.
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate the configuration and print a summary.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run one full cycle in the foreground, then exit.
    Once {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Send nothing, record nothing: print what would be delivered.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON array instead of tab-separated lines.
        #[arg(long)]
        json: bool,
    },
}

/// The entry point of the `forgewatch` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("forgewatch: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(dispatch(cli.command))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn dispatch(command: Command) -> ExitCode {
    let config_path = match &command {
        Command::Run { config } | Command::Check { config } | Command::Once { config, .. } => {
            config.clone()
        }
    };
    let config = match load_config(&config_path) {
        Some(c) => c,
        None => return ExitCode::from(2),
    };
    let result = match command {
        Command::Check { .. } => print_summary(&config),
        Command::Once { dry_run, json, .. } => once(config, dry_run, json).await,
        Command::Run { .. } => run(config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("forgewatch: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(c) => Some(c),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

/// `check`: what the configuration watches. Manifests are read as they are now; a
/// missing or broken one is a warning (an update may create or mend it).
fn print_summary(config: &Config) -> anyhow::Result<()> {
    let state = State::open_read_only(&config.state_dir)?;
    let packages = Packages::load(config, &state)?;
    let now = forgewatch_adapters::http::unix_seconds(std::time::SystemTime::now());
    packages.refresh(config, &state, now);
    let lists: Vec<_> = config
        .workspaces
        .iter()
        .map(|ws| (ws, packages.of(ws, config)))
        .collect();
    let targets = crate::poller::watch_targets(
        lists
            .iter()
            .map(|(ws, p)| (&p.packages[..], ws.pull_requests.enabled)),
    );
    println!("{}: ok", config.path.display());
    println!("forges: {}", config.forges.len());
    for (name, forge) in &config.forges {
        let auth = if forge.token.is_some() {
            "token"
        } else {
            "no token"
        };
        println!(
            "  {name}: {:?} {} ({}, {auth})",
            forge.kind, forge.host, forge.api_url
        );
    }
    println!("ci targets: {}", config.ci.len());
    println!("workspaces: {}", config.workspaces.len());
    for (ws, p) in &lists {
        let note = p
            .incomplete
            .as_deref()
            .map(|why| format!(" (incomplete: {why})"))
            .unwrap_or_default();
        println!(
            "  {}: {} packages → {}{note}",
            ws.name,
            p.packages.len(),
            ws.ci
        );
    }
    println!("watch targets: {}", targets.len());
    for target in targets.keys() {
        println!("  {target}");
    }
    Ok(())
}

async fn once(config: Config, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let (_lock, state, mode) = if dry_run {
        (
            None,
            State::open_read_only(&config.state_dir)?,
            Mode::DryRun,
        )
    } else {
        let lock = StateLock::acquire(&config.state_dir)?;
        (Some(lock), open_locked_state(&config)?, Mode::Deliver)
    };
    let mut supervisor = Supervisor::new(config, Arc::new(state))?;
    // `once` attempts every pending delivery, whatever its backoff.
    supervisor.attempt_all_pending = true;
    let never = CancellationToken::new();
    if mode == Mode::Deliver {
        // Startup and due config_change updates first, so the cycle sees their lists.
        supervisor.run_due_updates(&never).await?;
    }
    let report = supervisor.cycle(mode, &never).await?;
    supervisor.updates.wait_all().await;
    print_report(&report, json)?;
    if report.nothing_polled() {
        anyhow::bail!(
            "no watch target could be polled ({} failed requests, see the warnings above)",
            report.polls
        );
    }
    Ok(())
}

fn print_report(report: &CycleReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report.outcomes)?);
    } else {
        for o in &report.outcomes {
            println!("{}\t{}\t{}", o.build_key, o.status.as_str(), o.reason);
        }
    }
    Ok(())
}

async fn run(config: Config) -> anyhow::Result<()> {
    let _lock = StateLock::acquire(&config.state_dir)?;
    let state = open_locked_state(&config)?;
    let interval = config.poll_interval;
    let supervisor = Supervisor::new(config, Arc::new(state))?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(shutdown_on_signal(shutdown.clone()));
    tracing::info!(interval = ?interval, workspaces = supervisor.config.workspaces.len(), "forgewatch running");
    // The first cycle polls every target at once; after it, each interval is cut
    // into slices, each polling a share of the targets and recomputing every build
    // from the latest answers: requests are spread over the interval, every target
    // is asked once per interval, and a change goes out right after its target's
    // turn.
    let mut slice = Slice::ALL;
    while !shutdown.is_cancelled() {
        let started = tokio::time::Instant::now();
        match supervisor
            .cycle_slice(Mode::Deliver, slice, &shutdown)
            .await
        {
            Ok(report) if report.outcomes.is_empty() && report.poll_errors.is_empty() => {
                tracing::debug!(elapsed = ?started.elapsed(), "cycle done, nothing changed");
            }
            Ok(report) => tracing::info!(
                elapsed = ?started.elapsed(),
                delivered = report.count(Status::Delivered),
                failed = report.count(Status::Failed),
                pending = report.count(Status::Pending),
                poll_errors = report.poll_errors.len(),
                "cycle done"
            ),
            Err(e) => tracing::error!("cycle failed: {e:#}"),
        }
        slice = Slice {
            index: if slice.of == SLICES {
                (slice.index + 1) % SLICES
            } else {
                0
            },
            of: SLICES,
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep_until(started + interval / SLICES as u32) => {}
        }
    }
    // Running updates were cancelled with `shutdown`: their groups are being killed.
    supervisor.updates.wait_all().await;
    signals.abort();
    tracing::info!("stopped");
    Ok(())
}

/// The state of a process that holds the `state_dir` lock: jobs a dead process left
/// running are marked failed, and this process adopts orphaned grandchildren of its
/// update commands so they are reaped.
fn open_locked_state(config: &Config) -> anyhow::Result<State> {
    let state = State::open(&config.state_dir)?;
    let now_ms = forgewatch_adapters::http::unix_seconds(std::time::SystemTime::now()) * 1000;
    let interrupted = state.fail_interrupted_jobs(now_ms)?;
    if interrupted > 0 {
        tracing::warn!(interrupted, "jobs of a previous run were interrupted");
    }
    if let Err(e) = forgewatch_workspace_runner::process::become_child_subreaper() {
        tracing::warn!(
            "cannot become a child subreaper (orphans of update commands may linger): {e}"
        );
    }
    Ok(state)
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
async fn shutdown_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("{name} received: stopping");
    shutdown.cancel();
}
