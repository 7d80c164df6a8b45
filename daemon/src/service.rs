//! The daemon of `forgewatch run`, in-process: given a configuration, a bound
//! listener, a shutdown token, a [`Lifecycle`] to report to and a [`Clock`], it
//! locks the state, serves the HTTP API and runs the engine's loop until
//! shutdown. Signals and systemd's notify protocol are the caller's (`cli`), so a
//! test can run a whole daemon inside its own process, at a time of its choosing.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
pub use crate::engine::clock::{Clock, SystemClock};
pub use crate::engine::event::Request;
use crate::engine::event_loop::EventLoop;
pub use crate::engine::lifecycle::Lifecycle;
use crate::http::api::{ApiState, router};
use crate::http::host::AllowedHosts;
use crate::http::server::serve;
use crate::state::Store;
use crate::state::lock::StateLock;

/// The file in `state_dir` that holds the address the API listens on (private, as
/// everything there).
pub const LISTEN_ADDRESS_FILE: &str = "listen-address";

/// The state of a process that holds the `state_dir` lock: jobs a dead process left
/// running are marked failed, and this process adopts orphaned grandchildren of its
/// update commands so they are reaped.
pub async fn open_locked_state(config: &Config, clock: &dyn Clock) -> anyhow::Result<Store> {
    let state = Store::open(&config.state_dir).await?;
    let interrupted = state.fail_interrupted_jobs(clock.unix_ms()).await?;
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
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let _lock = StateLock::acquire(&config.state_dir)?;
    let state = open_locked_state(&config, &*clock).await?;
    let address = listener.local_addr()?;
    let address_file = config.state_dir.join(LISTEN_ADDRESS_FILE);
    crate::state::files::write(&address_file, format!("{address}\n").as_bytes())
        .with_context(|| format!("cannot write {}", address_file.display()))?;
    let interval = config.poll_interval;
    let grace = config.shutdown_grace;
    let limits = config.http.limits;
    let hosts = AllowedHosts::new(address, config.http.public_url.as_ref());
    let (engine, subscribed) = EventLoop::new(
        config,
        state.clone(),
        requests.receiver,
        shutdown.clone(),
        clock.clone(),
    )
    .await?;
    let api = ApiState::new(subscribed, requests.sender, hosts, limits, clock);
    let server = tokio::spawn(serve(listener, router(api), limits, shutdown.clone()));
    tracing::info!(%address, interval = %humantime::format_duration(interval), "forgewatch running");
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
