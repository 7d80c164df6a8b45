//! The daemon of `forgewatch run`: the cycle loop (a full first cycle, then the
//! poll interval cut into slices), the HTTP API, webhooks as polls of one
//! repository, reloads (SIGHUP or the API) that keep state and change only what
//! the new configuration changes, systemd's notify protocol, and a clean stop on
//! SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::engine::cycle::{Mode, Selection, Status};
use crate::engine::supervisor::Supervisor;
use crate::http::api::{ApiState, Request, router};
use crate::state::State;
use crate::state::lock::StateLock;

/// Slices of a poll interval (see [`run`]).
const SLICES: usize = 4;
/// The file in `state_dir` that holds the address the API listens on.
pub const LISTEN_ADDRESS_FILE: &str = "listen-address";

/// The state of a process that holds the `state_dir` lock: jobs a dead process left
/// running are marked failed, and this process adopts orphaned grandchildren of its
/// update commands so they are reaped.
pub fn open_locked_state(config: &Config) -> anyhow::Result<State> {
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

/// What the daemon tells the service manager about its life (systemd's notify
/// protocol, wired in `cli`): the service itself knows nothing of systemd.
pub trait Lifecycle: Send + Sync {
    /// Start-up or a reload is complete.
    fn ready(&self);
    /// A one-line summary, after each cycle.
    fn status(&self, line: &str);
    /// The loop is alive.
    fn watchdog(&self);
    /// A reload begins; `ready` follows.
    fn reloading(&self);
    /// Shutdown has begun.
    fn stopping(&self);
    /// How often `watchdog` should be called; `None` when nobody listens.
    fn watchdog_interval(&self) -> Option<Duration>;
}

pub async fn run(config: Config, notifier: &dyn Lifecycle) -> anyhow::Result<()> {
    let _lock = StateLock::acquire(&config.state_dir)?;
    let state = Arc::new(open_locked_state(&config)?);
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let address = listener.local_addr()?;
    std::fs::write(
        config.state_dir.join(LISTEN_ADDRESS_FILE),
        format!("{address}\n"),
    )?;
    let config_path = config.path.clone();
    let mut supervisor = Arc::new(Supervisor::new(config, state.clone())?);
    let (supervisor_tx, supervisor_rx) = watch::channel(supervisor.clone());
    let (requests_tx, mut requests) = mpsc::channel::<Request>(64);
    let shutdown = CancellationToken::new();
    let api = ApiState {
        supervisor: supervisor_rx,
        requests: requests_tx.clone(),
    };
    let stop_serving = shutdown.clone().cancelled_owned();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(api))
            .with_graceful_shutdown(stop_serving)
            .await
    });
    let signals = tokio::spawn(signals(shutdown.clone(), requests_tx));
    tracing::info!(%address, interval = ?supervisor.config.poll_interval, "forgewatch running");
    notifier.ready();

    // The first cycle polls every target at once; then each interval is cut into
    // slices, each polling a share of the targets and recomputing every build from
    // the latest answers: requests are spread over the interval, every target is
    // asked once per interval, and a change goes out right after its target's turn.
    let mut selection = Selection::All;
    let mut next = tokio::time::Instant::now();
    let mut watchdog = notifier
        .watchdog_interval()
        .map(|d| tokio::time::interval(d.max(Duration::from_millis(100))));
    while !shutdown.is_cancelled() {
        let slept = tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(next) => true,
            Some(request) = requests.recv() => {
                // Webhooks queued meanwhile are coalesced into one poll.
                let mut repos = std::collections::BTreeSet::new();
                let mut reload_answer = None;
                let mut queued = Some(request);
                while let Some(request) = queued.take().or_else(|| requests.try_recv().ok()) {
                    match request {
                        Request::Poll(repo) => {
                            repos.insert(repo);
                        }
                        Request::Reload(answer) => reload_answer = Some(answer),
                    }
                }
                if !repos.is_empty() {
                    let names: Vec<String> = repos.iter().map(ToString::to_string).collect();
                    tracing::info!(repositories = ?names, "webhook: polling now");
                    run_cycle(&supervisor, Selection::Repos(repos), &shutdown, notifier).await;
                }
                match reload_answer {
                    None => {}
                    Some(answer) => {
                        notifier.reloading();
                        let result = reload(&config_path, &state, &supervisor);
                        match result {
                            Ok(new) => {
                                supervisor = new;
                                supervisor_tx.send_replace(supervisor.clone());
                                selection = Selection::All;
                                next = tokio::time::Instant::now();
                                let _ = answer.send(Ok(()));
                            }
                            Err(e) => {
                                let _ = answer.send(Err(e));
                            }
                        }
                        notifier.ready();
                    }
                }
                false
            }
            Some(_) = async {
                match watchdog.as_mut() {
                    Some(w) => Some(w.tick().await),
                    None => std::future::pending().await,
                }
            } => {
                notifier.watchdog();
                false
            }
        };
        if slept {
            run_cycle(&supervisor, selection.clone(), &shutdown, notifier).await;
            selection = match selection {
                Selection::Slice { index, of } => Selection::Slice {
                    index: (index + 1) % of,
                    of,
                },
                _ => Selection::Slice {
                    index: 0,
                    of: SLICES,
                },
            };
            next += supervisor.config.poll_interval / SLICES as u32;
            let now = tokio::time::Instant::now();
            if next < now {
                next = now;
            }
        }
    }
    notifier.stopping();
    tracing::info!("stopping: in-flight deliveries finish, update process groups are killed");
    let grace = supervisor.config.shutdown_grace;
    let stop = async {
        // Running updates were cancelled with `shutdown`: their groups are being killed.
        supervisor.updates.wait_all().await;
        supervisor.discoveries.wait_all().await;
        let _ = server.await;
    };
    if tokio::time::timeout(grace, stop).await.is_err() {
        tracing::warn!(grace = ?grace, "stopping took longer than shutdown_grace: exiting anyway");
    }
    signals.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn run_cycle(
    supervisor: &Supervisor,
    selection: Selection,
    shutdown: &CancellationToken,
    notifier: &dyn Lifecycle,
) {
    let started = tokio::time::Instant::now();
    let cycle = supervisor.cycle_slice(Mode::Deliver, selection, shutdown);
    tokio::pin!(cycle);
    // A long cycle keeps the watchdog fed only while it makes progress (forge
    // answers, deliveries): a slow forge is not a hang, a stuck loop is.
    let mut ticks = notifier.watchdog_interval().map(tokio::time::interval);
    let mut seen = supervisor
        .progress
        .load(std::sync::atomic::Ordering::Relaxed);
    let result = loop {
        tokio::select! {
            result = &mut cycle => break result,
            Some(_) = async {
                match ticks.as_mut() {
                    Some(t) => Some(t.tick().await),
                    None => std::future::pending().await,
                }
            } => {
                let now = supervisor.progress.load(std::sync::atomic::Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    notifier.watchdog();
                }
            }
        }
    };
    match result {
        Ok(report) => {
            // Poll failures are logged when they start and end (`log_poll_changes`).
            if report.outcomes.is_empty() {
                tracing::debug!(elapsed = ?started.elapsed(), "cycle done, nothing changed");
            } else {
                tracing::info!(
                    elapsed = ?started.elapsed(),
                    delivered = report.count(Status::Delivered),
                    failed = report.count(Status::Failed),
                    pending = report.count(Status::Pending),
                    poll_errors = report.poll_errors.len(),
                    "cycle done"
                );
            }
            notifier.status(&status_line(supervisor));
        }
        Err(e) => tracing::error!("cycle failed: {e:#}"),
    }
    // A cycle that ends is progress: the watchdog may be fed.
    notifier.watchdog();
}

fn status_line(supervisor: &Supervisor) -> String {
    let snapshot = supervisor
        .snapshot
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let builds: usize = snapshot.workspaces.values().map(|w| w.builds.len()).sum();
    let pending: usize = snapshot
        .workspaces
        .values()
        .flat_map(|w| &w.builds)
        .filter(|b| b.pending.is_some())
        .count();
    format!(
        "{} workspaces, {builds} builds, {pending} pending deliveries, {} poll errors",
        snapshot.workspaces.len(),
        snapshot.poll_errors.len()
    )
}

/// Reads the configuration again; a valid one replaces the supervisor (state,
/// running updates and the latest poll answers are kept), an invalid one is
/// refused and the running configuration stays.
fn reload(
    path: &std::path::Path,
    state: &Arc<State>,
    current: &Arc<Supervisor>,
) -> Result<Arc<Supervisor>, String> {
    let refuse = |message: String| {
        tracing::error!("reload refused, the running configuration stays: {message}");
        state.record_event("reload_failed", None, None, &message);
        if let Ok(mut s) = current.snapshot.lock() {
            s.config_error = Some(message.clone());
        }
        Err(message)
    };
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => return refuse(errors.to_string()),
    };
    if config.state_dir != current.config.state_dir {
        return refuse("`state_dir` cannot change while running; restart forgewatch".to_owned());
    }
    if config.http != current.config.http {
        tracing::warn!("`http` changed: it applies at the next restart");
    }
    let mut new = match Supervisor::reloaded(config, current) {
        Ok(s) => s,
        Err(e) => return refuse(format!("{e:#}")),
    };
    let old_names: Vec<String> = current
        .config
        .workspaces
        .iter()
        .map(|w| w.name.clone())
        .collect();
    new.updates.carry_over(&current.updates, &old_names);
    new.discoveries.carry_over(&current.discoveries);
    new.carry_over(current);
    state.record_event("reloaded", None, None, "configuration reloaded");
    tracing::info!(
        workspaces = new.config.workspaces.len(),
        "configuration reloaded"
    );
    Ok(Arc::new(new))
}

/// SIGTERM/SIGINT stop the daemon; SIGHUP asks for a reload.
async fn signals(shutdown: CancellationToken, requests: mpsc::Sender<Request>) {
    use tokio::signal::unix::{SignalKind, signal};
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
                if requests.send(Request::Reload(tx)).await.is_ok() {
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
