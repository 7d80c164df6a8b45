//! The outbox's senders in `run`: one long-lived task per CI target, woken by the
//! loop when that target has deliveries due (after a computation enqueued some, at
//! each slice for retries, for a manual trigger). A slow or hung CI target holds
//! only its own task; the loop and the other targets go on. Each pass reports its
//! attempts to the loop as one event.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::cycle::Status;
use crate::engine::event::Event;
use crate::engine::outbox::Outbox;

struct Sender {
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

/// The sender tasks, by CI target name (also targets no longer configured that
/// still have deliveries pending: those fail with a clear error, and are retried).
pub struct Senders {
    senders: BTreeMap<String, Sender>,
    outbox: watch::Sender<Arc<Outbox>>,
    events: mpsc::UnboundedSender<Event>,
    shutdown: CancellationToken,
}

impl Senders {
    pub fn new(
        outbox: Arc<Outbox>,
        events: mpsc::UnboundedSender<Event>,
        shutdown: CancellationToken,
    ) -> Senders {
        Senders {
            senders: BTreeMap::new(),
            outbox: watch::Sender::new(outbox),
            events,
            shutdown,
        }
    }

    /// After a reload: the next passes send with `outbox` (its CI clients).
    pub fn replace(&mut self, outbox: Arc<Outbox>) {
        self.outbox.send_replace(outbox);
    }

    /// Wakes the sender of every CI target with deliveries pending.
    pub async fn wake_pending(&mut self) {
        let outbox = self.outbox.borrow().clone();
        match outbox.targets_pending().await {
            Ok(targets) => {
                for ci in targets {
                    self.wake(&ci);
                }
            }
            Err(e) => tracing::error!("cannot read the outbox: {e}"),
        }
    }

    /// Wakes (starting it if needed) the sender of `ci`.
    pub fn wake(&mut self, ci: &str) {
        let sender = self.senders.entry(ci.to_owned()).or_insert_with(|| {
            let wake = Arc::new(Notify::new());
            let task = tokio::spawn(send_when_woken(
                ci.to_owned(),
                wake.clone(),
                self.outbox.subscribe(),
                self.events.clone(),
                self.shutdown.clone(),
            ));
            Sender { wake, task }
        });
        sender.wake.notify_one();
    }

    /// Waits for every sender to finish its delivery in flight (they stop once
    /// `shutdown` is cancelled); the caller bounds the wait.
    pub async fn wait(&mut self) {
        for sender in self.senders.values_mut() {
            let _ = (&mut sender.task).await;
        }
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        for sender in self.senders.values() {
            sender.task.abort();
        }
    }
}

async fn send_when_woken(
    ci: String,
    wake: Arc<Notify>,
    outbox: watch::Receiver<Arc<Outbox>>,
    events: mpsc::UnboundedSender<Event>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
        }
        let current = outbox.borrow().clone();
        match current.send_pending(Some(&ci), false, &shutdown).await {
            Ok(outcomes) => {
                let attempted = outcomes.iter().any(|o| o.status != Status::Pending);
                if attempted && events.send(Event::Delivered(outcomes)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!(ci = %ci, "cannot send deliveries: {e:#}"),
        }
    }
}
