//! The status outbox's posters (SPEC §14): one long-lived task per forge host,
//! posting the commit statuses that are due there, so a forge that is down or slow
//! holds only its own statuses. A task wakes when a delivery or a result made
//! statuses due ([`StatusWake`]), when the next retry is due, and after a reload.
//! A 5xx, timeout or rate limit is retried with the deliveries' backoff; a spent
//! write budget makes every status of the host wait for room, without counting as
//! an attempt; a refusal for want of permission is reported once per repository,
//! and its statuses wait an hour from the refusal without being sent (then one is
//! tried), so a token without write access causes no storm.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use forgewatch_adapters::RepoId;
use forgewatch_adapters::forge::{Forge, ForgeError};
use forgewatch_adapters::results::CommitStatus;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::clients::Clients;
use crate::engine::clock::Clock;
use crate::engine::outbox::RetryPolicy;
use crate::engine::status::Metrics;
use crate::state::Store;
use crate::state::statuses::{DueStatus, StatusAttempt};

/// How long the statuses of a repository that refused one wait.
pub const REFUSED_RETRY: Duration = Duration::from_secs(3600);

/// The shortest wait before a failed post is tried again.
const MIN_RETRY: Duration = Duration::from_millis(100);

/// How many due statuses one read of the store brings.
const BATCH: i64 = 50;

/// Wakes the posters: shared by the outbox (a delivery set statuses `pending`) and
/// the HTTP API (a result set their state); kept across reloads.
#[derive(Clone, Debug, Default)]
pub struct StatusWake(Arc<watch::Sender<u64>>);

impl StatusWake {
    pub fn wake(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// What posting needs: the store, each host's forge client, the retry policy.
pub struct StatusPoster {
    store: Store,
    forges: BTreeMap<String, Arc<dyn Forge>>,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl StatusPoster {
    pub fn new(
        config: &crate::config::Config,
        clients: &Clients,
        store: Store,
        retry: RetryPolicy,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> StatusPoster {
        let forges = config
            .forges
            .values()
            .filter_map(|f| Some((f.host.clone(), clients.forge(&f.name)?.clone())))
            .collect();
        StatusPoster {
            store,
            forges,
            retry,
            clock,
            metrics,
        }
    }

    /// Posts every status of `host` due now, one after another; when the next one
    /// is due (unix ms), if any waits.
    pub async fn post_due(&self, host: &str) -> anyhow::Result<Option<i64>> {
        let Some(forge) = self.forges.get(host) else {
            return Ok(None);
        };
        if self.store.is_read_only() {
            // A dry run posts nothing (and could record no attempt).
            return Ok(None);
        }
        let owned = host.to_owned();
        // Repositories refusing statuses, and since when: their statuses wait an
        // hour from the refusal, then one of them is tried.
        let mut refused: BTreeMap<String, i64> = self
            .store
            .call(move |b| b.status_refusals(&owned))
            .await?
            .into_iter()
            .collect();
        loop {
            let now = self.clock.unix_ms();
            let owned = host.to_owned();
            let due = self
                .store
                .call(move |b| b.due_statuses(&owned, now, BATCH))
                .await?;
            if due.is_empty() {
                break;
            }
            for status in due {
                if let Some(at) = refused.get(&status.target.path) {
                    let next_at = later(*at, REFUSED_RETRY);
                    if next_at > now {
                        self.record(StatusAttempt::Deferred { status, next_at })
                            .await?;
                        continue;
                    }
                }
                let attempt = self.post(&**forge, status).await;
                match &attempt {
                    StatusAttempt::Refused { status, at_ms, .. } => {
                        refused.insert(status.target.path.clone(), *at_ms);
                    }
                    StatusAttempt::Deferred { next_at, .. } => {
                        // Every post would be refused until the budget has room:
                        // the others wait for it too.
                        let (owned, until) = (host.to_owned(), *next_at);
                        self.record(attempt).await?;
                        self.store
                            .call(move |b| b.defer_statuses(&owned, until))
                            .await?;
                        return Ok(Some(until));
                    }
                    _ => {}
                }
                self.record(attempt).await?;
            }
        }
        let owned = host.to_owned();
        Ok(self.store.call(move |b| b.next_status_due(&owned)).await?)
    }

    /// `once`: posts the statuses due now on every host.
    pub async fn post_all_due(&self) -> anyhow::Result<()> {
        for host in self.forges.keys() {
            self.post_due(host).await?;
        }
        Ok(())
    }

    async fn post(&self, forge: &dyn Forge, status: DueStatus) -> StatusAttempt {
        let t = &status.target;
        let span = tracing::info_span!("status", repository = %format!("{}/{}", t.host, t.path), sha = %t.sha, context = %t.context, state = %status.state);
        let post = CommitStatus {
            state: status.state,
            target_url: status.target_url.clone(),
            description: status.description.clone(),
            context: t.context.clone(),
        };
        let repo = match RepoId::from_host_path(&t.host, &t.path) {
            Ok(repo) => repo,
            Err(e) => {
                return StatusAttempt::Failed {
                    next_at: later(self.clock.unix_ms(), self.retry.cap),
                    error: e.to_string(),
                    at_ms: self.clock.unix_ms(),
                    status,
                };
            }
        };
        crate::crash::point("before-status-post");
        let answer = forge
            .post_status(&repo, &t.sha, &post)
            .instrument(span.clone())
            .await;
        let now = self.clock.unix_ms();
        let _enter = span.enter();
        match answer {
            Ok(()) => {
                Metrics::add(&self.metrics.statuses_posted, 1);
                tracing::info!("commit status set");
                StatusAttempt::Posted { status, at_ms: now }
            }
            Err(ForgeError::WriteLimited { until, .. }) => {
                let wait = until
                    .duration_since(self.clock.now())
                    .unwrap_or(Duration::ZERO);
                tracing::info!(wait = %humantime::format_duration(Duration::from_secs(wait.as_secs())), "the write budget is spent: the status waits");
                StatusAttempt::Deferred {
                    next_at: later(now, wait),
                    status,
                }
            }
            Err(ForgeError::NoPermission {
                status: code,
                message,
                ..
            }) => {
                Metrics::add(&self.metrics.statuses_failed, 1);
                StatusAttempt::Refused {
                    code,
                    message,
                    next_at: later(now, REFUSED_RETRY),
                    at_ms: now,
                    status,
                }
            }
            Err(e) => {
                Metrics::add(&self.metrics.statuses_failed, 1);
                let attempts = status.attempts.saturating_add(1);
                let delay = self
                    .retry
                    .delay(attempts, seed(&status, now))
                    .max(MIN_RETRY);
                tracing::warn!(attempts, retry_in = %humantime::format_duration(Duration::from_secs(delay.as_secs())), "commit status not set: {e}");
                StatusAttempt::Failed {
                    next_at: later(now, delay),
                    error: e.to_string(),
                    at_ms: now,
                    status,
                }
            }
        }
    }

    async fn record(&self, attempt: StatusAttempt) -> anyhow::Result<()> {
        let report = match &attempt {
            StatusAttempt::Refused {
                status,
                code,
                message,
                ..
            } => Some((
                format!("{}/{}", status.target.host, status.target.path),
                format!("{code} {message}"),
            )),
            StatusAttempt::Posted { status, .. } => Some((
                format!("{}/{}", status.target.host, status.target.path),
                String::new(),
            )),
            _ => None,
        };
        let changed = self
            .store
            .call(move |b| b.record_status_attempt(&attempt))
            .await?;
        if let (true, Some((repository, refusal))) = (changed, report) {
            if refusal.is_empty() {
                tracing::info!(%repository, "commit statuses are accepted again");
            } else {
                tracing::error!(%repository, "the forge refuses commit statuses ({refusal}): give the token permission to write statuses; they are tried again hourly");
            }
        }
        Ok(())
    }
}

fn later(now_ms: i64, wait: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
}

fn seed(status: &DueStatus, now: i64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    status.target.hash(&mut h);
    now.hash(&mut h);
    h.finish()
}

/// The poster tasks, by forge host.
pub struct StatusPosts {
    tasks: BTreeMap<String, JoinHandle<()>>,
    poster: watch::Sender<Arc<StatusPoster>>,
    wake: StatusWake,
    shutdown: CancellationToken,
}

impl StatusPosts {
    /// Starts a task for every host `poster` has a forge for.
    pub fn start(
        poster: Arc<StatusPoster>,
        wake: StatusWake,
        shutdown: CancellationToken,
    ) -> StatusPosts {
        let mut posts = StatusPosts {
            tasks: BTreeMap::new(),
            poster: watch::Sender::new(poster),
            wake,
            shutdown,
        };
        posts.reconcile();
        posts
    }

    /// After a reload: the tasks post with `poster`, new hosts get a task.
    pub fn replace(&mut self, poster: Arc<StatusPoster>) {
        self.poster.send_replace(poster);
        self.reconcile();
    }

    fn reconcile(&mut self) {
        let hosts: Vec<String> = self.poster.borrow().forges.keys().cloned().collect();
        for host in hosts {
            if self.tasks.contains_key(&host) {
                continue;
            }
            let span = tracing::info_span!("statuses", host = %host);
            let task = tokio::spawn(
                post_when_due(
                    host.clone(),
                    self.poster.subscribe(),
                    self.wake.subscribe(),
                    self.shutdown.clone(),
                )
                .instrument(span),
            );
            self.tasks.insert(host, task);
        }
    }

    /// Waits for the tasks to finish the post in flight (they stop at shutdown).
    pub async fn wait(&mut self) {
        for (_, task) in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for StatusPosts {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

async fn post_when_due(
    host: String,
    mut poster: watch::Receiver<Arc<StatusPoster>>,
    mut wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    loop {
        wake.borrow_and_update();
        let current = poster.borrow_and_update().clone();
        let next = match current.post_due(&host).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("cannot read the status outbox: {e:#}");
                Some(later(current.clock.unix_ms(), current.retry.initial))
            }
        };
        let sleep = next.map(|at| {
            let wait = u64::try_from(at - current.clock.unix_ms()).unwrap_or(0);
            tokio::time::Instant::now() + Duration::from_millis(wait)
        });
        drop(current);
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = wake.changed() => if changed.is_err() { break },
            changed = poster.changed() => if changed.is_err() { break },
            () = crate::engine::clock::sleep_until(sleep) => {}
        }
    }
}
