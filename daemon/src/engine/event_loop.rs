//! The run loop of `forgewatch run`: one task that handles one [`Event`] at a time
//! and is the only one that changes the engine.
//!
//! ```text
//!  slice timer ──► start a cycle: a round per idle forge ──► forge tasks ─┐
//!  webhook / reload / trigger (HTTP, SIGHUP) ──► Request ──┐              │ Polled
//!                                                          ▼              ▼
//!                                      ┌──────────── the loop ◄───────────┘
//!                   compute + enqueue ─┤                  ▲
//!                                      └─► wake senders ──┴── Delivered (one task per CI target)
//! ```
//!
//! The first cycle asks every target; then the interval is cut into slices, each
//! cycle asking a forge its share. A forge whose round is still out (a hung forge)
//! gets no new round; the others are asked, computed from and delivered to as
//! usual. A cycle's rounds are computed from together once all are back or
//! [`SETTLE`] after the first (builds spanning a stalled forge use its latest
//! answers; a target never answered keeps its builds waiting); so are the answers
//! to questions asked in the background, once the burst is in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use forgewatch_adapters::RepoId;
use forgewatch_adapters::forge::WatchTarget;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::clock::{Clock, sleep_until};
use crate::engine::cycle::{Mode, Status};
use crate::engine::event::{Event, Request};
use crate::engine::forge_poller::{ForgePollers, Round, Share};
use crate::engine::lifecycle::{Lifecycle, watchdog_tick, with_watchdog};
use crate::engine::senders::Senders;
use crate::engine::status::Metrics;
use crate::engine::status_posts::StatusPosts;
use crate::engine::supervisor::Supervisor;
use crate::engine::view::View;
use crate::plan::answers::TargetNeeds;
use crate::plan::inputs::AllPackages;

/// Slices of a poll interval.
pub const SLICES: usize = 4;

/// A cycle whose rounds are not all back.
struct OpenCycle {
    started: SystemTime,
    waiting: BTreeSet<String>,
}

pub struct EventLoop {
    supervisor: Arc<Supervisor>,
    published: watch::Sender<Arc<View>>,
    pollers: ForgePollers,
    senders: Senders,
    status_posts: StatusPosts,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    requests: mpsc::Receiver<Request>,
    shutdown: CancellationToken,
    /// The configuration file a reload reads.
    config_path: std::path::PathBuf,
    /// The packages and targets of the latest cycle.
    packages: AllPackages,
    targets: BTreeMap<WatchTarget, TargetNeeds>,
    open: BTreeMap<u64, OpenCycle>,
    /// The next cycle asks every target (the first one, after a reload).
    next_is_full: bool,
    slice: usize,
    next_cycle: Instant,
    /// Something a computation reads changed since the last one (answers,
    /// pauses, packages, targets).
    inputs_moved: bool,
    /// `targets_changed` when the packages and targets were last read.
    targets_read: Option<u64>,
    /// Targets handed to a forge since the last slice.
    asked: BTreeSet<WatchTarget>,
    /// Repositories named by webhooks while their forge was busy.
    hints: BTreeMap<String, BTreeSet<RepoId>>,
    /// The targets that could not be polled, as the latest computation saw them.
    poll_errors: Vec<String>,
    /// The first computation of each interval is never skipped (time-dependent
    /// rules such as staleness are seen once per interval).
    compute_always: bool,
    /// Background answers the last computation began after.
    answers_computed: u64,
    /// A computation put off while the rest of its burst comes in (the other
    /// rounds of its cycle, the other background answers) happens at the latest
    /// at this time.
    deferred: Option<Instant>,
}

/// How long a computation waits at most for the rest of its burst.
const SETTLE: Duration = Duration::from_millis(500);

impl EventLoop {
    /// The loop of `config` on `state`, and the view it publishes for the HTTP
    /// API; it runs once [`EventLoop::run`] is called.
    pub async fn new(
        config: crate::config::Config,
        state: crate::state::Store,
        requests: mpsc::Receiver<Request>,
        shutdown: CancellationToken,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<(EventLoop, watch::Receiver<Arc<View>>)> {
        let config_path = config.path.clone();
        let supervisor = Arc::new(Supervisor::new(config, state, clock).await?);
        let (published, subscribed) = watch::channel(Arc::new(supervisor.view()));
        let (events_tx, events) = mpsc::unbounded_channel();
        let senders = Senders::new(
            supervisor.outbox.clone(),
            events_tx.clone(),
            shutdown.clone(),
        );
        let status_posts = StatusPosts::start(
            supervisor.status_poster.clone(),
            supervisor.status_wake.clone(),
            shutdown.clone(),
        );
        let mut pollers = ForgePollers::default();
        pollers.reconcile(
            supervisor.clients.forges(),
            &events_tx,
            &supervisor.progress,
            &shutdown,
        );
        let this = EventLoop {
            supervisor,
            published,
            pollers,
            senders,
            status_posts,
            events_tx,
            events,
            requests,
            shutdown,
            config_path,
            packages: AllPackages::default(),
            targets: BTreeMap::new(),
            open: BTreeMap::new(),
            next_is_full: true,
            slice: 0,
            next_cycle: Instant::now(),
            hints: BTreeMap::new(),
            asked: BTreeSet::new(),
            targets_read: None,
            inputs_moved: true,
            compute_always: true,
            poll_errors: Vec::new(),
            answers_computed: 0,
            deferred: None,
        };
        Ok((this, subscribed))
    }

    /// Runs until `shutdown`, then stops within `shutdown_grace`: rounds in flight
    /// are dropped, senders finish the delivery in flight (an interrupted one stays
    /// pending), update and discovery process groups are killed.
    pub async fn run(mut self, lifecycle: &dyn Lifecycle) {
        let mut watchdog = lifecycle
            .watchdog_interval()
            .map(|d| tokio::time::interval(d.max(Duration::from_millis(100))));
        loop {
            let background = self.supervisor.background.clone();
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some(event) = self.events.recv() => self.handle(event, lifecycle).await,
                () = background.woken() => self.handle(Event::Answered, lifecycle).await,
                Some(request) = self.requests.recv() => {
                    self.handle(Event::Request(request), lifecycle).await;
                }
                () = tokio::time::sleep_until(self.next_cycle) => self.start_cycle(lifecycle).await,
                () = sleep_until(self.deferred) => self.compute_deferred(lifecycle).await,
                Some(_) = watchdog_tick(&mut watchdog) => lifecycle.watchdog(),
            }
        }
        lifecycle.stopping();
        tracing::info!("stopping: in-flight deliveries finish, update process groups are killed");
        self.pollers.stop();
        let grace = self.supervisor.config.shutdown_grace;
        let supervisor = self.supervisor.clone();
        let stop = async {
            // Running updates were cancelled with `shutdown`: their groups are being killed.
            supervisor.updates.wait_all().await;
            supervisor.discoveries.wait_all().await;
            self.senders.wait().await;
            self.status_posts.wait().await;
        };
        if tokio::time::timeout(grace, stop).await.is_err() {
            tracing::warn!(grace = %humantime::format_duration(grace), "stopping took longer than shutdown_grace: exiting anyway");
        }
    }

    async fn handle(&mut self, event: Event, lifecycle: &dyn Lifecycle) {
        match event {
            Event::Polled {
                forge,
                cycle,
                before,
                results,
            } => {
                self.pollers.finished(&forge);
                let span = tracing::info_span!("cycle", number = cycle);
                span.in_scope(|| self.supervisor.log_forge_usage(&forge, &before));
                let changed = self.supervisor.absorb(results, &self.targets, &[&forge]);
                self.inputs_moved |= changed;
                // Targets that appeared meanwhile (a discovery, an update ended) are
                // asked first: builds are computed once their answers are in. An
                // answer that changed nothing computes nothing, except the first of
                // each interval (time-dependent rules, updates that came due). The
                // other rounds of the cycle are awaited (not past the settle time).
                let others_out = self
                    .open
                    .get(&cycle)
                    .is_some_and(|c| c.waiting.iter().any(|f| *f != forge));
                if self.ask_new_targets() {
                    self.deferred = None; // their round computes
                } else if others_out && self.defer() {
                    // Computed once the other rounds are back, or at the settle time.
                } else if self.inputs_moved || self.compute_always {
                    self.compute(lifecycle).instrument(span).await;
                } else {
                    tracing::debug!(forge = %forge, "nothing changed: builds kept");
                }
                if let Some(open) = self.open.get_mut(&cycle) {
                    open.waiting.remove(&forge);
                }
                self.close_cycles(lifecycle);
                // A webhook that came while this forge was busy: its poll now.
                if let Some(repos) = self.hints.remove(&forge) {
                    self.poll_repos(&forge, repos);
                }
            }
            Event::Answered => {
                let background = &self.supervisor.background;
                if background.answers() == self.answers_computed {
                    return; // a computation read them already
                }
                tracing::debug!("a question asked in the background was answered");
                self.supervisor.last_inputs.answers_changed();
                self.inputs_moved = true;
                // The rest of the burst is awaited (not past the settle time): one
                // computation for a cycle's mergeabilities, not one per answer.
                if background.in_flight() == 0 || !self.defer() {
                    self.compute(lifecycle).await;
                }
            }
            Event::Delivered(outcomes) => {
                log_deliveries(&outcomes);
                if let Err(e) = self
                    .supervisor
                    .status
                    .record_deliveries(&self.supervisor.state, &outcomes)
                    .await
                {
                    tracing::error!("cannot refresh the status: {e:#}");
                }
            }
            Event::Request(Request::Poll(repo)) => {
                tracing::info!(repository = %repo, "webhook: polling now");
                let forges: BTreeSet<String> = self
                    .targets
                    .iter()
                    .filter(|(t, _)| t.repo == repo)
                    .map(|(_, needs)| needs.forge.clone())
                    .collect();
                for forge in forges {
                    self.hints
                        .entry(forge.clone())
                        .or_default()
                        .insert(repo.clone());
                    if !self.pollers.is_busy(&forge)
                        && let Some(repos) = self.hints.remove(&forge)
                    {
                        self.poll_repos(&forge, repos);
                    }
                }
            }
            Event::Request(Request::Reload(answer)) => {
                lifecycle.reloading();
                let result =
                    crate::engine::supervisor::reload(&self.config_path, &self.supervisor).await;
                if let Ok(new) = &result {
                    self.supervisor = new.clone();
                    self.published.send_replace(Arc::new(new.view()));
                    self.senders.replace(new.outbox.clone());
                    self.status_posts.replace(new.status_poster.clone());
                    self.pollers.reconcile(
                        new.clients.forges(),
                        &self.events_tx,
                        &new.progress,
                        &self.shutdown,
                    );
                    self.next_is_full = true;
                    self.next_cycle = Instant::now();
                    self.targets_read = None;
                }
                let _ = answer.send(result.map(|_| ()));
                lifecycle.ready();
            }
            Event::Request(Request::Trigger(key, answer)) => {
                let answer_with = match self.supervisor.status.last_build(&key) {
                    None => Err(format!("no build `{key}` is known (yet)")),
                    Some((workspace, ci, build)) => {
                        let outbox = &self.supervisor.outbox;
                        match outbox.enqueue_trigger(&workspace, &ci, &build).await {
                            Ok(delivery_id) => {
                                self.senders.wake(&ci);
                                Ok(delivery_id)
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                };
                let _ = answer.send(answer_with);
            }
        }
    }

    /// A new cycle: every idle forge gets its round (its share of the targets,
    /// those never answered, those webhooks named meanwhile).
    async fn start_cycle(&mut self, lifecycle: &dyn Lifecycle) {
        crate::crash::block_point("cycle").await;
        let supervisor = self.supervisor.clone();
        let number = supervisor.next_cycle_number();
        let share = if self.next_is_full {
            self.slice = 0;
            Share::All
        } else {
            self.slice = (self.slice + 1) % SLICES;
            Share::Slice {
                index: self.slice,
                of: SLICES,
            }
        };
        if self.slice == 0 {
            self.compute_always = true;
        }
        self.next_is_full = false;
        // The benchmark harness delimits its phases by these lines (at debug).
        let slice = match share {
            Share::All => "full".to_owned(),
            _ => self.slice.to_string(),
        };
        tracing::debug!(
            number,
            %slice,
            at_us = unix_micros(&*self.supervisor.clock),
            "cycle started"
        );
        let interval = supervisor.config.poll_interval;
        self.next_cycle = (self.next_cycle + interval / SLICES as u32).max(Instant::now());
        self.targets_read = None;
        supervisor.prune_http_cache_if_due();
        self.refresh_packages();
        let unanswered = supervisor.known.unanswered(&self.targets);
        self.asked.clear();
        let mut open = OpenCycle {
            started: self.supervisor.clock.now(),
            waiting: BTreeSet::new(),
        };
        for forge in supervisor.clients.forges().keys() {
            if self.pollers.is_busy(forge) {
                if supervisor
                    .reports
                    .is_news(format!("busy {forge}"), Some("busy"))
                {
                    tracing::warn!(forge = %forge, "still waiting for its last round: not asked this slice");
                }
                continue;
            }
            supervisor.reports.is_news(format!("busy {forge}"), None);
            let mut selected = share.of(forge, &self.targets);
            selected.extend(Share::All.of(forge, &unanswered));
            if let Some(repos) = self.hints.remove(forge) {
                selected.extend(Share::Repos(repos).of(forge, &self.targets));
            }
            if selected.is_empty() {
                continue;
            }
            let held = supervisor.known.held(&selected);
            self.asked.extend(selected.keys().cloned());
            let round = Round {
                cycle: number,
                targets: selected,
                held,
            };
            if self.pollers.start(forge, round) {
                open.waiting.insert(forge.clone());
            }
        }
        let nothing_asked = open.waiting.is_empty();
        self.open.insert(number, open);
        if nothing_asked {
            // Nothing to ask (no targets yet, every forge busy): compute from what is known.
            supervisor.absorb(Default::default(), &self.targets, &[]);
            self.compute(lifecycle).await;
            self.close_cycles(lifecycle);
        }
        // Retries that came due.
        self.senders.wake_pending().await;
    }

    /// Reads the packages and targets again and hands each idle forge a round of
    /// its targets that were never answered and not asked since the last slice.
    /// Whether a round went out.
    fn ask_new_targets(&mut self) -> bool {
        let supervisor = self.supervisor.clone();
        if !self.refresh_packages() {
            return false;
        }
        self.targets = supervisor.cycle_targets(&self.packages);
        let mut new: BTreeMap<String, BTreeMap<WatchTarget, TargetNeeds>> = BTreeMap::new();
        for (target, needs) in supervisor.known.unanswered(&self.targets) {
            if !self.asked.contains(&target) {
                new.entry(needs.forge.clone())
                    .or_default()
                    .insert(target, needs);
            }
        }
        let mut sent = false;
        for (forge, targets) in new {
            sent |= self.start_round(&forge, targets);
        }
        sent
    }

    /// Reads the packages and targets again if something they are made of may have
    /// changed since they were last read (always at a slice); whether it did.
    fn refresh_packages(&mut self) -> bool {
        let changed = Metrics::get(&self.supervisor.status.metrics().targets_changed);
        if self.targets_read == Some(changed) {
            return false;
        }
        self.targets_read = Some(changed);
        let packages = self.supervisor.workspace_packages_now();
        let targets = self.supervisor.cycle_targets(&packages);
        let packages_moved = packages != *self.packages;
        if packages_moved || targets != self.targets {
            self.inputs_moved = true;
        }
        if packages_moved {
            self.packages = Arc::new(packages);
        }
        self.targets = targets;
        true
    }

    /// Hands `targets` to `forge` as a round of its own cycle; false when the forge
    /// is busy.
    fn start_round(&mut self, forge: &str, targets: BTreeMap<WatchTarget, TargetNeeds>) -> bool {
        if targets.is_empty() || self.pollers.is_busy(forge) {
            return false;
        }
        let number = self.supervisor.next_cycle_number();
        tracing::debug!(
            number,
            slice = %"extra",
            at_us = unix_micros(&*self.supervisor.clock),
            "cycle started"
        );
        let held = self.supervisor.known.held(&targets);
        self.asked.extend(targets.keys().cloned());
        let round = Round {
            cycle: number,
            targets,
            held,
        };
        if !self.pollers.start(forge, round) {
            return false;
        }
        self.open.insert(
            number,
            OpenCycle {
                started: self.supervisor.clock.now(),
                waiting: BTreeSet::from([forge.to_owned()]),
            },
        );
        true
    }

    /// A round for the targets of `repos` on `forge` (a webhook named them).
    fn poll_repos(&mut self, forge: &str, repos: BTreeSet<RepoId>) {
        let selected = Share::Repos(repos).of(forge, &self.targets);
        self.start_round(forge, selected);
    }

    /// Computes every build from the latest answers and wakes the senders of what
    /// it enqueued. The watchdog is fed meanwhile only while the computation makes
    /// progress (forge answers to its lookups): a slow forge is not a hang.
    async fn compute(&mut self, lifecycle: &dyn Lifecycle) {
        let supervisor = self.supervisor.clone();
        let results = supervisor.known.answers();
        let computed =
            std::mem::replace(&mut self.answers_computed, supervisor.background.answers());
        self.deferred = None;
        let always = std::mem::take(&mut self.compute_always);
        let moved = std::mem::take(&mut self.inputs_moved);
        let computation = supervisor.compute(
            Mode::Deliver,
            &self.packages,
            results,
            always,
            supervisor.clock.now(),
            &self.shutdown,
        );
        let result = tokio::select! {
            result = with_watchdog(computation, &supervisor.progress, lifecycle) => result,
            () = self.shutdown.cancelled() => return,
        };
        match result {
            Ok(report) => {
                if report.computed {
                    tracing::debug!(
                        at_us = unix_micros(&*self.supervisor.clock),
                        "builds computed"
                    );
                }
                self.senders.wake_pending().await;
                self.poll_errors = report.poll_errors;
            }
            Err(e) => {
                self.compute_always |= always;
                self.inputs_moved |= moved;
                self.answers_computed = computed;
                tracing::error!("computing the builds failed: {e:#}");
            }
        }
    }

    /// Whether the computation is put off (until the rest of its burst comes or
    /// [`SETTLE`] after it was first put off).
    fn defer(&mut self) -> bool {
        let due = *self.deferred.get_or_insert_with(|| Instant::now() + SETTLE);
        Instant::now() < due
    }

    /// The settle time of a computation put off is over.
    async fn compute_deferred(&mut self, lifecycle: &dyn Lifecycle) {
        self.deferred = None;
        if self.inputs_moved || self.compute_always {
            self.compute(lifecycle).await;
        }
    }

    /// Closes the cycles whose rounds are all back.
    fn close_cycles(&mut self, lifecycle: &dyn Lifecycle) {
        let done: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, c)| c.waiting.is_empty())
            .map(|(n, _)| *n)
            .collect();
        for number in done {
            let Some(cycle) = self.open.remove(&number) else {
                continue;
            };
            let supervisor = &self.supervisor;
            let elapsed = supervisor
                .clock
                .now()
                .duration_since(cycle.started)
                .unwrap_or_default();
            supervisor.status.close_cycle(
                &supervisor.clients,
                cycle.started,
                elapsed,
                &self.poll_errors,
            );
            let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            let elapsed = humantime::format_duration(std::time::Duration::from_millis(ms));
            tracing::debug!(number, %elapsed, "cycle done");
            lifecycle.status(&self.supervisor.status.line());
            lifecycle.watchdog();
        }
    }
}

/// Now, in microseconds since the epoch (for log lines that others parse).
fn unix_micros(clock: &dyn Clock) -> u64 {
    clock
        .now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn log_deliveries(outcomes: &[crate::engine::cycle::Outcome]) {
    let count = |status| outcomes.iter().filter(|o| o.status == status).count();
    let (delivered, failed) = (count(Status::Delivered), count(Status::Failed));
    if delivered + failed > 0 {
        tracing::info!(
            delivered,
            failed,
            pending = count(Status::Pending),
            "deliveries attempted"
        );
    }
}
