//! The daemon of `forgewatch run`, in-process: given a configuration, a bound
//! listener, a shutdown token and a [`Lifecycle`] to report to, it locks the
//! state, serves the HTTP API and runs the engine's loop until shutdown. Signals
//! and systemd's notify protocol are the caller's (`cli`), so a test can run a
//! whole daemon inside its own process.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
pub use crate::engine::event::Request;
pub use crate::engine::event_loop::Lifecycle;
use crate::engine::event_loop::{EventLoop, Reloader};
use crate::engine::supervisor::Supervisor;
use crate::http::api::{ApiState, router};
use crate::state::Store;
use crate::state::lock::StateLock;

/// The file in `state_dir` that holds the address the API listens on.
pub const LISTEN_ADDRESS_FILE: &str = "listen-address";

/// The state of a process that holds the `state_dir` lock: jobs a dead process left
/// running are marked failed, and this process adopts orphaned grandchildren of its
/// update commands so they are reaped.
pub async fn open_locked_state(config: &Config) -> anyhow::Result<Store> {
    let state = Store::open(&config.state_dir).await?;
    let now_ms = forgewatch_adapters::http::unix_seconds(std::time::SystemTime::now()) * 1000;
    let interrupted = state.fail_interrupted_jobs(now_ms).await?;
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

/// The way in for requests (reloads, webhooks, triggers) from outside the loop.
pub struct Requests {
    pub sender: mpsc::Sender<Request>,
    receiver: mpsc::Receiver<Request>,
}

impl Default for Requests {
    fn default() -> Requests {
        let (sender, receiver) = mpsc::channel(64);
        Requests { sender, receiver }
    }
}

/// Runs the daemon on `listener` until `shutdown` is cancelled, then stops within
/// `shutdown_grace`.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    requests: Requests,
    shutdown: CancellationToken,
    lifecycle: &dyn Lifecycle,
) -> anyhow::Result<()> {
    let _lock = StateLock::acquire(&config.state_dir)?;
    let state = open_locked_state(&config).await?;
    let address = listener.local_addr()?;
    std::fs::write(
        config.state_dir.join(LISTEN_ADDRESS_FILE),
        format!("{address}\n"),
    )
    .with_context(|| format!("cannot write {}", config.state_dir.display()))?;
    let config_path = config.path.clone();
    let interval = config.poll_interval;
    let grace = config.shutdown_grace;
    let supervisor = Arc::new(Supervisor::new(config, state.clone()).await?);
    let reloader: Reloader =
        Box::new(move |current| Box::pin(reload(config_path.clone(), current)));
    let (engine, subscribed) =
        EventLoop::new(supervisor, requests.receiver, shutdown.clone(), reloader);
    let api = ApiState {
        supervisor: subscribed,
        requests: requests.sender,
    };
    let stop_serving = shutdown.clone().cancelled_owned();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(api))
            .with_graceful_shutdown(stop_serving)
            .await
    });
    tracing::info!(%address, ?interval, "forgewatch running");
    lifecycle.ready();
    engine.run(lifecycle).await;
    // The engine used its grace; connections still open do not hold the exit.
    if tokio::time::timeout(grace.min(std::time::Duration::from_secs(1)), server)
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open at exit");
    }
    // Queued writes (a forge's pause, a package list) are on disk before the exit.
    state.flush().await;
    tracing::info!("stopped");
    Ok(())
}

/// Reads the configuration again; a valid one replaces the supervisor (state,
/// running updates and the latest poll answers are kept), an invalid one is
/// refused and the running configuration stays.
async fn reload(
    path: std::path::PathBuf,
    current: Arc<Supervisor>,
) -> Result<Arc<Supervisor>, String> {
    let state = &current.state;
    let reloaded = match config::load(&path) {
        Err(errors) => Err(errors.to_string()),
        Ok(config) if config.state_dir != current.config.state_dir => {
            Err("`state_dir` cannot change while running; restart forgewatch".to_owned())
        }
        Ok(config) => {
            if config.http != current.config.http {
                tracing::warn!("`http` changed: it applies at the next restart");
            }
            Supervisor::reloaded(config, &current)
                .await
                .map_err(|e| format!("{e:#}"))
        }
    };
    let mut new = match reloaded {
        Ok(new) => new,
        Err(message) => {
            tracing::error!("reload refused, the running configuration stays: {message}");
            state
                .record_event("reload_failed", None, None, &message)
                .await;
            if let Ok(mut s) = current.snapshot.lock() {
                s.config_error = Some(message.clone());
            }
            return Err(message);
        }
    };
    let old_names: Vec<String> = current
        .config
        .workspaces
        .iter()
        .map(|w| w.name.clone())
        .collect();
    new.updates.carry_over(&current.updates, &old_names);
    new.discoveries.carry_over(&current.discoveries);
    new.carry_over(&current);
    state
        .record_event("reloaded", None, None, "configuration reloaded")
        .await;
    tracing::info!(
        workspaces = new.config.workspaces.len(),
        "configuration reloaded"
    );
    Ok(Arc::new(new))
}
