//! Each forge polled on its own task. The loop hands a forge a round of targets
//! (its share of an interval's slice, plus targets never answered and those a
//! webhook named); the forge's task asks them with the forge's own client
//! (concurrency cap, governor, timeouts) and sends the answers back to the loop as
//! one event. A forge that hangs keeps only its own round open: the loop, the other
//! forges and the deliveries go on, and the hung forge gets no new round until its
//! current one ends (its requests time out).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use forgewatch_adapters::RepoId;
use forgewatch_adapters::forge::{Forge, WatchTarget};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::event::Event;
use crate::engine::poller::{Held, poll};
use crate::plan::answers::TargetNeeds;

/// Which of a forge's targets a round asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Share {
    All,
    /// Those whose index (in target order) is `index` modulo `of`.
    Slice {
        index: usize,
        of: usize,
    },
    /// The targets of these repositories (webhooks named them).
    Repos(BTreeSet<RepoId>),
}

impl Share {
    /// The targets of `forge` in this share.
    pub fn of(
        &self,
        forge: &str,
        targets: &BTreeMap<WatchTarget, TargetNeeds>,
    ) -> BTreeMap<WatchTarget, TargetNeeds> {
        targets
            .iter()
            .filter(|(_, needs)| needs.forge == forge)
            .enumerate()
            .filter(|(i, (t, _))| match self {
                Share::All => true,
                Share::Slice { index, of } => i % (*of).max(1) == *index,
                Share::Repos(repos) => repos.contains(&t.repo),
            })
            .map(|(_, (k, v))| (k.clone(), v.clone()))
            .collect()
    }
}

/// One round of one forge: what to ask, and which answers the loop holds.
pub struct Round {
    /// The cycle that started it.
    pub cycle: u64,
    pub targets: BTreeMap<WatchTarget, TargetNeeds>,
    pub held: Held,
}

/// The polling task of one forge.
struct Poller {
    forge: Arc<dyn Forge>,
    rounds: mpsc::UnboundedSender<Round>,
    task: JoinHandle<()>,
    /// A round was handed over and its answers have not come back.
    busy: bool,
}

/// The polling tasks of every configured forge.
#[derive(Default)]
pub struct ForgePollers {
    pollers: BTreeMap<String, Poller>,
}

impl ForgePollers {
    /// Starts (or keeps) one task per forge of `forges`: a forge whose client is
    /// the one its task already uses keeps its task and its round in flight; a
    /// removed or rebuilt forge's old task is stopped.
    pub fn reconcile(
        &mut self,
        forges: &BTreeMap<String, Arc<dyn Forge>>,
        events: &mpsc::UnboundedSender<Event>,
        progress: &Arc<AtomicU64>,
        shutdown: &CancellationToken,
    ) {
        self.pollers.retain(|name, poller| {
            let keep = forges
                .get(name)
                .is_some_and(|f| Arc::ptr_eq(f, &poller.forge));
            if !keep {
                poller.task.abort();
            }
            keep
        });
        for (name, forge) in forges {
            if self.pollers.contains_key(name) {
                continue;
            }
            let (rounds, queue) = mpsc::unbounded_channel();
            let task = tokio::spawn(poll_rounds(
                name.clone(),
                forge.clone(),
                queue,
                events.clone(),
                progress.clone(),
                shutdown.clone(),
            ));
            self.pollers.insert(
                name.clone(),
                Poller {
                    forge: forge.clone(),
                    rounds,
                    task,
                    busy: false,
                },
            );
        }
    }

    /// Whether `forge` has a round in flight.
    pub fn is_busy(&self, forge: &str) -> bool {
        self.pollers.get(forge).is_some_and(|p| p.busy)
    }

    /// Hands `round` to `forge`'s task. False when the forge is busy or unknown:
    /// the round is not sent.
    pub fn start(&mut self, forge: &str, round: Round) -> bool {
        let Some(poller) = self.pollers.get_mut(forge) else {
            return false;
        };
        if poller.busy || poller.rounds.send(round).is_err() {
            return false;
        }
        poller.busy = true;
        true
    }

    /// `forge`'s round came back.
    pub fn finished(&mut self, forge: &str) {
        if let Some(poller) = self.pollers.get_mut(forge) {
            poller.busy = false;
        }
    }

    /// Stops every task; rounds in flight are dropped (polling writes nothing the
    /// next start needs).
    pub fn stop(&mut self) {
        for poller in self.pollers.values() {
            poller.task.abort();
        }
        self.pollers.clear();
    }
}

impl Drop for ForgePollers {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn poll_rounds(
    name: String,
    forge: Arc<dyn Forge>,
    mut rounds: mpsc::UnboundedReceiver<Round>,
    events: mpsc::UnboundedSender<Event>,
    progress: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let forges = BTreeMap::from([(name.clone(), forge.clone())]);
    while let Some(round) = rounds.recv().await {
        let span = tracing::info_span!("round", forge = %name, cycle = round.cycle);
        let before = Box::new(forge.stats());
        let results = poll(&round.targets, &round.held, &forges, &shutdown, &progress)
            .instrument(span)
            .await;
        let event = Event::Polled {
            forge: name.clone(),
            cycle: round.cycle,
            before,
            results,
        };
        if events.send(event).is_err() {
            return;
        }
    }
}
