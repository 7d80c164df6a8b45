//! What the run loop reacts to, one event at a time: the closed set of things
//! that can change the engine. Forge tasks, delivery tasks, HTTP handlers and
//! signal handlers only send these; nothing else mutates the engine. Timers (the
//! next slice of the interval, the watchdog) and shutdown are the loop's own.

use forgewatch_adapters::RepoId;
use forgewatch_adapters::forge::RequestStats;
use tokio::sync::oneshot;

use crate::engine::cycle::Outcome;
use crate::plan::answers::PollResults;
use crate::plan::ids::BuildKey;

/// Something the loop must handle.
#[derive(Debug)]
pub enum Event {
    /// A forge's round of polls ended (with answers, failures or its pause).
    Polled {
        forge: String,
        /// The cycle that started the round.
        cycle: u64,
        /// The forge's request counters when the round began (boxed: they carry
        /// the request durations' buckets).
        before: Box<RequestStats>,
        results: PollResults,
    },
    /// A CI target's due deliveries were attempted.
    Delivered(Vec<Outcome>),
    /// A question asked in the background (a dependency lookup, a mergeability)
    /// was answered: the builds that waited for it can be computed.
    Answered,
    /// From the HTTP API or a signal.
    Request(Request),
}

/// What the outside (HTTP handlers, signals) asks of the loop.
#[derive(Debug)]
pub enum Request {
    /// Poll this repository now (a webhook arrived).
    Poll(RepoId),
    /// Re-read the configuration; the answer says whether it was applied.
    Reload(oneshot::Sender<Result<(), String>>),
    /// Send the last computed build of this key again, under a fresh delivery id;
    /// the answer is the delivery id.
    Trigger(BuildKey, oneshot::Sender<Result<String, String>>),
}
