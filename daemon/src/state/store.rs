//! [`Store`]: the state store as async code sees it. A cheap cloneable handle to
//! one thread of its own that owns the [`Backend`] and runs every call, in the
//! order they were made, while the caller's task awaits the answer: a slow disk or
//! a locked database never holds a runtime thread, and the runtime may have a single
//! thread. The calls are serialised as they were behind the connection's mutex.
//!
//! Two things are kept in memory as well, for the synchronous code that reads them
//! (both are written only by the process holding the `state_dir` lock): the
//! recorded discoveries, read at open and updated by the thread after each write,
//! and the forges' rate-limit pauses, read at open, which the adapters' governor
//! saves through [`PauseStore`] under its own lock: the change is applied to memory
//! at once and its write queued, so saves reach the database in order without the
//! caller waiting. Queued writes are done before [`Store::flush`] returns.
//!
//! The thread also tells streams of the event history when it grows
//! ([`Store::subscribe_events`]): after each call, while someone listens, it reads
//! the newest event id (one lookup of the table's last row) and publishes it when
//! it changed, whichever call recorded the event.

use std::collections::{BTreeMap, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use forgewatch_adapters::BoxFuture;
use forgewatch_adapters::governor::{PauseRecord, PauseStore};
use forgewatch_adapters::http::{CachedResponse, ValidatorStore};
use forgewatch_adapters::results::{ReportedResult, ResultRef};
use tokio::sync::{oneshot, watch};

use super::discoveries::DiscoveryRecord;
use super::events::{Event, EventQuery};
use super::jobs::{JobEnd, JobLine, JobRecord};
use super::outbox::{Attempt, Enqueued, Pending, PendingSummary};
use super::workspaces::{StoredPackage, UpdateMarks};
use super::{Backend, BuildMark, DeliveredBuild, State, StateError};
use crate::plan::ids::BuildKey;

/// One call, run on the store's thread.
type Job = Box<dyn FnOnce(&dyn Backend) + Send>;

type Discoveries = BTreeMap<String, Vec<DiscoveryRecord>>;

/// The handle: cloning it is cheap, and every clone talks to the same thread. The
/// thread ends (closing the backend) when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    read_only: bool,
    discoveries: Arc<Mutex<Discoveries>>,
    pauses: Arc<Mutex<BTreeMap<String, PauseRecord>>>,
    /// The newest event id, published by the thread.
    newest_event: Arc<watch::Sender<i64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Opens (creating if needed) the SQLite database in `state_dir`.
    pub async fn open(state_dir: &Path) -> Result<Store, StateError> {
        let dir = state_dir.to_owned();
        Store::start(move || State::open(&dir)).await
    }

    /// For `--dry-run`: the existing database read-only, or an empty in-memory one.
    pub async fn open_read_only(state_dir: &Path) -> Result<Store, StateError> {
        let dir = state_dir.to_owned();
        Store::start(move || State::open_read_only(&dir)).await
    }

    /// Starts the store's thread, which opens the backend with `open` and serves
    /// calls until every handle is dropped.
    pub async fn start<B, F>(open: F) -> Result<Store, StateError>
    where
        B: Backend,
        F: FnOnce() -> Result<B, StateError> + Send + 'static,
    {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened_tx, opened) = oneshot::channel();
        let newest_event = Arc::new(watch::Sender::new(0));
        let published = newest_event.clone();
        std::thread::Builder::new()
            .name("forgewatch-store".to_owned())
            .spawn(move || {
                let opened = open().and_then(|backend| {
                    let memory = (
                        backend.is_read_only(),
                        backend.discoveries()?,
                        backend.pauses()?,
                    );
                    published.send_replace(backend.newest_event_id()?);
                    Ok((backend, memory))
                });
                match opened {
                    Ok((backend, memory)) => {
                        if opened_tx.send(Ok(memory)).is_ok() {
                            serve(&backend, &queue, &published);
                        }
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                    }
                }
            })
            .map_err(|source| StateError::Thread { source })?;
        let (read_only, discoveries, pauses) = opened.await.map_err(|_| StateError::Stopped)??;
        Ok(Store {
            jobs,
            read_only,
            discoveries: Arc::new(Mutex::new(discoveries)),
            pauses: Arc::new(Mutex::new(pauses)),
            newest_event,
        })
    }

    /// The id of the newest event in the history, changed whenever an event is
    /// recorded (by any call): what a stream of the events waits on.
    pub fn subscribe_events(&self) -> watch::Receiver<i64> {
        self.newest_event.subscribe()
    }

    /// How many subscriptions to the events are held (each stream holds one).
    pub fn event_streams(&self) -> usize {
        self.newest_event.receiver_count()
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Runs `f` on the store's thread, after every call made before it, and waits
    /// for its answer. A panic in `f` is the caller's again.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<T, StateError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let span = tracing::Span::current();
        let job: Job = Box::new(move |backend| {
            let _entered = span.enter();
            let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(|| f(backend))));
        });
        self.jobs.send(job).map_err(|_| StateError::Stopped)?;
        match rx.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(payload)) => panic::resume_unwind(payload),
            Err(_) => Err(StateError::Stopped),
        }
    }

    /// Queues `write` after every call made before it and returns at once; its
    /// failure is logged ("cannot {what}: …").
    pub fn queue<F>(&self, what: impl std::fmt::Display, write: F)
    where
        F: FnOnce(&dyn Backend) -> Result<(), StateError> + Send + 'static,
    {
        let what = what.to_string();
        let span = tracing::Span::current();
        let failed = format!("cannot {what}");
        let job: Job = Box::new(move |backend| {
            let _entered = span.enter();
            if let Err(e) = write(backend) {
                tracing::error!("cannot {what}: {e}");
            }
        });
        if self.jobs.send(job).is_err() {
            tracing::error!("{failed}: {}", StateError::Stopped);
        }
    }

    /// Waits until every call and write queued so far is done (before exiting).
    pub async fn flush(&self) {
        if let Err(e) = self.call(|_| Ok(())).await {
            tracing::error!("cannot finish the state store's writes: {e}");
        }
    }

    pub async fn delivered(&self, key: &BuildKey) -> Result<Option<DeliveredBuild>, StateError> {
        let key = key.clone();
        self.call(move |b| Ok(b.delivered_builds(std::slice::from_ref(&key))?.remove(&key)))
            .await
    }

    pub async fn delivered_builds(
        &self,
        keys: Vec<BuildKey>,
    ) -> Result<HashMap<BuildKey, DeliveredBuild>, StateError> {
        self.call(move |b| b.delivered_builds(&keys)).await
    }

    pub async fn build_marks(&self) -> Result<HashMap<BuildKey, BuildMark>, StateError> {
        self.call(|b| b.build_marks()).await
    }

    pub async fn build_keys_with_prefix(&self, prefix: &str) -> Result<Vec<BuildKey>, StateError> {
        let prefix = prefix.to_owned();
        self.call(move |b| b.build_keys_with_prefix(&prefix)).await
    }

    pub async fn forget_builds(&self, keys: Vec<BuildKey>) -> Result<(), StateError> {
        self.call(move |b| b.forget_builds(&keys)).await
    }

    pub async fn enqueue(
        &self,
        items: Vec<Enqueued>,
        obsolete: Vec<BuildKey>,
        now: i64,
    ) -> Result<(), StateError> {
        self.call(move |b| b.enqueue(&items, &obsolete, now)).await
    }

    pub async fn enqueue_manual(&self, item: &Pending, now: i64) -> Result<(), StateError> {
        let item = item.clone();
        self.call(move |b| b.enqueue_manual(&item, now)).await
    }

    pub async fn pending_summaries(&self) -> Result<Vec<PendingSummary>, StateError> {
        self.call(|b| b.pending_summaries()).await
    }

    /// Records `done` (the previous attempt of a sender, if any) and then reads the
    /// pending delivery of `next`, in one trip to the store's thread: a sender
    /// going through thousands of deliveries makes one trip per delivery, and reads
    /// each just before sending it, so the outbox is never all in memory at once.
    pub async fn record_then_read(
        &self,
        done: Option<Attempt>,
        next: Option<BuildKey>,
    ) -> Result<Option<Pending>, StateError> {
        self.call(move |b| {
            match done {
                Some(Attempt::Accepted {
                    item,
                    at_ms,
                    message,
                    statuses,
                    result,
                }) => {
                    b.complete_delivery(&item, at_ms, &message, &statuses)?;
                    if let Some(result) = result {
                        let reported = ReportedResult {
                            reference: ResultRef {
                                delivery_id: Some(item.delivery_id.clone()),
                                ..ResultRef::default()
                            },
                            result,
                        };
                        b.record_result("command", &reported, at_ms)?;
                    }
                }
                Some(Attempt::Failed {
                    item,
                    attempts,
                    next_attempt,
                    error,
                    at_ms,
                    message,
                }) => b.delivery_failed(&item, attempts, next_attempt, &error, at_ms, &message)?,
                None => {}
            }
            next.map_or(Ok(None), |key| b.pending_item(&key))
        })
        .await
    }

    pub async fn start_job(
        &self,
        workspace: &str,
        kind: &str,
        started_at: i64,
    ) -> Result<i64, StateError> {
        let (workspace, kind) = (workspace.to_owned(), kind.to_owned());
        self.call(move |b| b.start_job(&workspace, &kind, started_at))
            .await
    }

    pub async fn finish_job(&self, id: i64, end: JobEnd) -> Result<(), StateError> {
        self.call(move |b| b.finish_job(id, &end)).await
    }

    pub async fn fail_interrupted_jobs(&self, now: i64) -> Result<usize, StateError> {
        self.call(move |b| b.fail_interrupted_jobs(now)).await
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRecord>, StateError> {
        self.call(move |b| b.job(id)).await
    }

    pub async fn jobs_of(&self, workspace: &str, limit: i64) -> Result<Vec<JobRecord>, StateError> {
        let workspace = workspace.to_owned();
        self.call(move |b| b.jobs_of(&workspace, limit)).await
    }

    pub async fn job_lines(&self, id: i64, since: i64) -> Result<Vec<JobLine>, StateError> {
        self.call(move |b| b.job_lines(id, since)).await
    }

    /// Records an event after every call made before it, without waiting for it
    /// (a failure is logged: the history is not worth stopping for).
    pub fn record_event(
        &self,
        at_ms: i64,
        kind: &str,
        workspace: Option<&str>,
        build_key: Option<&str>,
        message: &str,
    ) {
        let (kind, message) = (kind.to_owned(), message.to_owned());
        let (workspace, build_key) = (workspace.map(str::to_owned), build_key.map(str::to_owned));
        self.queue("record an event", move |b| {
            b.record_event(
                at_ms,
                &kind,
                workspace.as_deref(),
                build_key.as_deref(),
                &message,
            );
            Ok(())
        });
    }

    pub async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StateError> {
        let query = query.clone();
        self.call(move |b| b.events(&query)).await
    }

    pub async fn package_list(
        &self,
        workspace: &str,
    ) -> Result<Option<Vec<StoredPackage>>, StateError> {
        let workspace = workspace.to_owned();
        self.call(move |b| b.package_list(&workspace)).await
    }

    pub async fn update_marks(&self, workspace: &str) -> Result<UpdateMarks, StateError> {
        let workspace = workspace.to_owned();
        self.call(move |b| b.update_marks(&workspace)).await
    }

    pub async fn save_update_marks(
        &self,
        workspace: &str,
        marks: &UpdateMarks,
    ) -> Result<(), StateError> {
        let (workspace, marks) = (workspace.to_owned(), marks.clone());
        self.call(move |b| b.save_update_marks(&workspace, &marks))
            .await
    }

    /// The recorded discoveries of `workspace`, by config PR (from memory).
    pub fn discoveries_of(&self, workspace: &str) -> Vec<DiscoveryRecord> {
        lock(&self.discoveries)
            .get(workspace)
            .cloned()
            .unwrap_or_default()
    }

    pub async fn save_discovery(
        &self,
        workspace: &str,
        record: &DiscoveryRecord,
    ) -> Result<(), StateError> {
        let (workspace, record) = (workspace.to_owned(), record.clone());
        let (memory, read_only) = (self.discoveries.clone(), self.read_only);
        self.call(move |b| {
            b.save_discovery(&workspace, &record)?;
            if !read_only {
                let mut memory = lock(&memory);
                let records = memory.entry(workspace).or_default();
                match records.binary_search_by(|r| r.config_pr.cmp(&record.config_pr)) {
                    Ok(at) => records[at] = record,
                    Err(at) => records.insert(at, record),
                }
            }
            Ok(())
        })
        .await
    }

    pub async fn forget_discovery(
        &self,
        workspace: &str,
        config_pr: &str,
    ) -> Result<(), StateError> {
        let (workspace, config_pr) = (workspace.to_owned(), config_pr.to_owned());
        let (memory, read_only) = (self.discoveries.clone(), self.read_only);
        self.call(move |b| {
            b.forget_discovery(&workspace, &config_pr)?;
            let mut memory = lock(&memory);
            if let Some(records) = memory.get_mut(&workspace).filter(|_| !read_only) {
                records.retain(|r| r.config_pr != config_pr);
                if records.is_empty() {
                    memory.remove(&workspace);
                }
            }
            Ok(())
        })
        .await
    }

    /// GitHub's latest remembered answer about `pr` at this head, with the base sha
    /// it was given for.
    pub async fn mergeable(
        &self,
        pr: &str,
        head_sha: &str,
    ) -> Result<Option<(String, bool)>, StateError> {
        let (pr, head) = (pr.to_owned(), head_sha.to_owned());
        self.call(move |b| b.mergeable(&pr, &head)).await
    }

    pub async fn save_mergeable(
        &self,
        pr: &str,
        base_sha: &str,
        head_sha: &str,
        mergeable: bool,
    ) -> Result<(), StateError> {
        let (pr, base, head) = (pr.to_owned(), base_sha.to_owned(), head_sha.to_owned());
        self.call(move |b| b.save_mergeable(&pr, &base, &head, mergeable))
            .await
    }

    /// The HTTP cache as the forge clients use it, each row marked used at `now`
    /// (unix seconds: the engine's clock).
    pub fn http_cache(&self, now: UnixNow) -> HttpCache {
        HttpCache {
            store: self.clone(),
            now,
        }
    }

    /// Deletes the HTTP cache rows unused since before `cutoff` (unix seconds), a
    /// write nobody waits for; logs how many.
    pub fn prune_http_cache(&self, cutoff: i64) {
        self.queue("prune the HTTP cache", move |b| {
            let pruned = b.prune_http_cache(cutoff)?;
            if pruned > 0 {
                tracing::info!(
                    pruned,
                    "HTTP cache: deleted the rows unused for the retention"
                );
            }
            Ok(())
        });
    }

    /// Deletes the history older than `cutoff_ms` (but each build's last delivery),
    /// a write nobody waits for; logs how many rows went.
    pub fn prune_history(&self, cutoff_ms: i64) {
        self.queue("prune the build history", move |b| {
            let pruned = b.prune_history(cutoff_ms)?;
            if pruned > 0 {
                tracing::info!(pruned, "history: deleted the rows older than history.keep");
            }
            Ok(())
        });
    }
}

/// A clock in unix seconds.
pub type UnixNow = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The forge clients' [`ValidatorStore`]: the store, and the clock each read and
/// write marks its row used with (so rows unused for the retention can be pruned).
pub struct HttpCache {
    store: Store,
    now: UnixNow,
}

impl HttpCache {
    async fn cached_response(&self, key: &str, with_body: bool) -> Option<CachedResponse> {
        let (key, now) = (key.to_owned(), (self.now)());
        let cached = self.store.call(move |b| Ok(b.cached(&key, with_body, now)));
        cached.await.unwrap_or_else(|e| {
            tracing::warn!("cannot read the HTTP cache; asking the forge afresh: {e}");
            None
        })
    }
}

/// The store's thread: every call in turn until the last handle is dropped; after
/// each, while a stream listens, the newest event id is published if it grew.
fn serve(backend: &dyn Backend, queue: &mpsc::Receiver<Job>, newest_event: &watch::Sender<i64>) {
    for job in queue {
        // A call answers its own panic to its caller; a queued write's is logged.
        if panic::catch_unwind(AssertUnwindSafe(|| job(backend))).is_err() {
            tracing::error!("a state store call panicked");
        }
        if newest_event.receiver_count() > 0 {
            match backend.newest_event_id() {
                Ok(id) => {
                    newest_event.send_if_modified(|newest| {
                        let grew = id > *newest;
                        *newest = (*newest).max(id);
                        grew
                    });
                }
                Err(e) => tracing::debug!("cannot read the newest event id: {e}"),
            }
        }
    }
}

impl ValidatorStore for HttpCache {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<CachedResponse>> {
        Box::pin(self.cached_response(key, true))
    }

    fn load_validators<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<CachedResponse>> {
        Box::pin(self.cached_response(key, false))
    }

    fn save<'a>(&'a self, key: &'a str, response: &'a CachedResponse) -> BoxFuture<'a, ()> {
        let (key, response, now) = (key.to_owned(), response.clone(), (self.now)());
        Box::pin(async move {
            let saved = self.store.call(move |b| {
                b.save_cached(&key, &response, now);
                Ok(())
            });
            if let Err(e) = saved.await {
                tracing::warn!("cannot write the HTTP cache: {e}");
            }
        })
    }
}

/// Called by the governor under its lock, when a client is built and whenever its
/// pause changes: answered from memory, the write queued.
impl PauseStore for Store {
    fn load_pause(&self, key: &str) -> Option<PauseRecord> {
        lock(&self.pauses).get(key).cloned()
    }

    fn save_pause(&self, key: &str, record: Option<&PauseRecord>) {
        if self.read_only {
            return;
        }
        {
            let mut pauses = lock(&self.pauses);
            match record {
                Some(r) => pauses.insert(key.to_owned(), r.clone()),
                None => pauses.remove(key),
            };
        }
        let (key, record) = (key.to_owned(), record.cloned());
        self.queue("save the forge's rate-limit pause", move |b| {
            b.save_pause(&key, record.as_ref());
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests;
