//! The command line (SPEC §6), as `cli::args` defines it: sets up
//! logging, and maps outcomes to exit codes: 0 success (also with failed deliveries,
//! which are reported), 1 failure of the job itself, 2 usage or configuration error.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;

pub mod args;
pub mod logging;
pub mod notify;
pub mod remote;

use crate::cli::args::{Cli, Command};
use crate::cli::logging::Stderr;
use crate::cli::notify::Notifier;
use crate::config::{self, Config};
use crate::engine::cycle::{CycleReport, Mode};
use crate::engine::packages::Packages;
use crate::state::Store;
use crate::state::lock::StateLock;

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
    let stderr = logging::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            stderr.error(&format!("forgewatch: cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(dispatch(cli.command, stderr));
    // Tasks still blocked in a system call (a reaper, a stuck read) do not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

async fn dispatch(command: Command, stderr: Stderr) -> ExitCode {
    use crate::cli::remote::{self, BuildsQuery};
    // The commands that talk to a running daemon: the configuration only says
    // where it is (and its admin token), unless `--url` does.
    let api = match &command {
        Command::Schema => {
            println!("{}", config::schema::schema());
            return ExitCode::SUCCESS;
        }
        Command::Status { api, .. }
        | Command::Trigger { api, .. }
        | Command::Builds { api, .. } => Some(api),
        _ => None,
    };
    if let Some(api) = api {
        let config = match &api.url {
            Some(_) => None,
            None => match load_config(&api.config, None, stderr) {
                Some(config) => Some(config),
                None => return ExitCode::from(2),
            },
        };
        let url = match (&api.url, &config) {
            (Some(url), _) => url.clone(),
            (None, Some(config)) => remote::api_url(config),
            (None, None) => return ExitCode::from(2),
        };
        let config = config.as_ref();
        let result = match &command {
            Command::Status { json, .. } => remote::status(&url, config, *json).await,
            Command::Trigger { workspace, pr, .. } => {
                remote::trigger(&url, config, workspace, pr.as_deref()).await
            }
            Command::Builds {
                workspace,
                state,
                limit,
                json,
                ..
            } => {
                let query = BuildsQuery {
                    workspace: workspace.clone(),
                    state: state.clone(),
                    limit: *limit,
                };
                remote::builds(&url, &query, *json).await
            }
            _ => Ok(()),
        };
        return finish(result, stderr);
    }
    let (config_path, credentials) = match &command {
        Command::Check {
            config,
            credentials_dir,
        } => (&config.config, credentials_dir.as_deref()),
        Command::Run { config } | Command::Once { config, .. } | Command::Reload { config, .. } => {
            (&config.config, None)
        }
        _ => return ExitCode::from(2),
    };
    let config = match load_config(config_path, credentials, stderr) {
        Some(c) => c,
        // The daemon would refuse this file too, and keeps the one it runs: a
        // reload that cannot happen is a failed job (exit 1), not a usage error.
        None if matches!(command, Command::Reload { .. }) => {
            stderr
                .error("forgewatch: the configuration was not reloaded: the file above is refused");
            return ExitCode::from(1);
        }
        None => return ExitCode::from(2),
    };
    let result = match command {
        Command::Reload { pid, .. } => {
            let url = remote::api_url(&config);
            remote::reload(&url, &config, pid).await
        }
        Command::Check { .. } => print_summary(&config).await,
        Command::Once { dry_run, json, .. } => once(config, dry_run, json).await,
        Command::Run { .. } => run(config).await,
        _ => Ok(()),
    };
    finish(result, stderr)
}

/// `forgewatch run`: binds the listener, wires signals and systemd's notify
/// protocol to the in-process service.
async fn run(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let shutdown = CancellationToken::new();
    let requests = crate::service::Requests::default();
    let signals = tokio::spawn(signals(shutdown.clone(), requests.sender.clone()));
    let notifier = Notifier::from_env(|k| std::env::var(k).ok());
    let result = crate::service::run(
        config,
        listener,
        requests,
        shutdown,
        &notifier,
        std::sync::Arc::new(crate::service::SystemClock),
    )
    .await;
    signals.abort();
    result
}

fn finish(result: anyhow::Result<()>, stderr: Stderr) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            stderr.error(&format!("forgewatch: {e:#}"));
            ExitCode::from(1)
        }
    }
}

fn load_config(path: &Path, credentials: Option<&Path>, stderr: Stderr) -> Option<Config> {
    match config::load_with_credentials(path, credentials) {
        Ok(c) => Some(c),
        Err(errors) => {
            stderr.error(&errors.to_string());
            None
        }
    }
}

/// `check`: what the configuration watches. Manifests are read as they are now; a
/// missing or broken one is a warning (an update may create or mend it).
async fn print_summary(config: &Config) -> anyhow::Result<()> {
    let state = Store::open_read_only(&config.state_dir).await?;
    let packages = Packages::load(config, &state).await?;
    let now = forgewatch_adapters::http::unix_seconds(std::time::SystemTime::now());
    packages.refresh(config, &state, now);
    let lists: Vec<_> = config
        .workspaces
        .iter()
        .map(|ws| (ws, packages.of(ws, config)))
        .collect();
    let targets = crate::plan::answers::watch_targets(
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
            Store::open_read_only(&config.state_dir).await?,
            Mode::DryRun,
        )
    } else {
        let lock = StateLock::acquire(&config.state_dir)?;
        (
            Some(lock),
            crate::service::open_locked_state(&config, &crate::service::SystemClock).await?,
            Mode::Deliver,
        )
    };
    let report = crate::engine::once::once(
        config,
        state.clone(),
        mode,
        std::sync::Arc::new(crate::engine::clock::SystemClock),
    )
    .await;
    // Queued writes (a forge's pause, a package list) are on disk before the exit.
    state.flush().await;
    let report = report?;
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

/// SIGTERM/SIGINT stop the daemon; SIGHUP asks for a reload.
async fn signals(
    shutdown: CancellationToken,
    requests: tokio::sync::mpsc::Sender<crate::service::Request>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    use tokio::sync::oneshot;
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading the configuration");
                let (tx, rx) = oneshot::channel();
                if requests.send(crate::service::Request::Reload(tx)).await.is_ok() {
                    let _ = rx.await;
                }
                continue;
            }
        };
        tracing::info!("{name} received: stopping");
        shutdown.cancel();
        return;
    }
}
