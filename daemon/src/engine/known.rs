//! The latest answer of every watch target. A round polls one forge, a slice only
//! part of the targets: what a computation reads is every target's latest answer,
//! kept here, with the failures logged as they start, change and end (those of one
//! round that fail alike, a rate limit's burst, as one line with their count).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use forgewatch_adapters::forge::WatchTarget;
use tracing::Level;

use crate::engine::fold::Folded;
use crate::engine::poller::Held;
use crate::plan::answers::{PollResults, TargetNeeds};

#[derive(Default)]
pub struct Known {
    /// Shared with the computation reading them (no copy); a round absorbed
    /// afterwards copies them only if that computation still holds them.
    answers: Mutex<Arc<PollResults>>,
    /// The last failure logged per poll, so a repeating one is logged once.
    failures: Mutex<HashMap<String, String>>,
}

impl Known {
    /// Starts from the answers `old` knew (a reload).
    pub fn carry_over(&self, old: &Known) {
        *self.answers.lock().unwrap_or_else(|p| p.into_inner()) = old.answers();
    }

    /// The answers of `targets` held (successful ones): a 304 for them needs no
    /// stored body.
    pub fn held(&self, targets: &BTreeMap<WatchTarget, TargetNeeds>) -> Held {
        let known = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        let mut held = Held::new();
        for target in targets.keys() {
            if known.heads.get(target).is_some_and(Result::is_ok) {
                held.insert((target.clone(), false));
            }
            if known.pulls.get(target).is_some_and(Result::is_ok) {
                held.insert((target.clone(), true));
            }
        }
        held
    }

    /// Takes in a round of answers of `forges` (their pauses replace the ones
    /// known) over the latest known ones: targets not polled this time keep their
    /// last answer; targets no longer watched are forgotten. Says whether any
    /// known answer changed (or was added or forgotten).
    pub fn absorb(
        &self,
        polled: PollResults,
        targets: &BTreeMap<WatchTarget, TargetNeeds>,
        forges: &[&str],
    ) -> bool {
        self.log_changes(&polled);
        let mut shared = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        let known = Arc::make_mut(&mut shared);
        let before = (known.heads.len(), known.pulls.len());
        known.heads.retain(|t, _| targets.contains_key(t));
        known.pulls.retain(|t, _| targets.contains_key(t));
        let mut changed = before != (known.heads.len(), known.pulls.len());
        for (target, answer) in polled.heads {
            changed |= known.heads.get(&target) != Some(&answer);
            known.heads.insert(target, answer);
        }
        for (target, answer) in polled.pulls {
            changed |= known.pulls.get(&target) != Some(&answer);
            known.pulls.insert(target, answer);
        }
        let paused_before = known.paused.clone();
        known
            .paused
            .retain(|forge, _| !forges.contains(&forge.as_str()));
        known.paused.extend(polled.paused);
        known.interrupted = polled.interrupted;
        changed || known.paused != paused_before
    }

    /// The targets that have no answer yet (new packages): polled at once, whatever
    /// the slice.
    pub fn unanswered(
        &self,
        targets: &BTreeMap<WatchTarget, TargetNeeds>,
    ) -> BTreeMap<WatchTarget, TargetNeeds> {
        let known = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        targets
            .iter()
            .filter(|(t, _)| !known.heads.contains_key(*t))
            .map(|(t, n)| (t.clone(), n.clone()))
            .collect()
    }

    /// The latest answer of every target (what a computation reads).
    pub fn answers(&self) -> Arc<PollResults> {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Logs a target's poll failure when it starts or changes, and its recovery:
    /// a target that keeps failing the same way does not flood the log.
    fn log_changes(&self, polled: &PollResults) {
        let mut last = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let answers = polled
            .heads
            .iter()
            .map(|(t, r)| (format!("{t} head"), r.as_ref().err()))
            .chain(
                polled
                    .pulls
                    .iter()
                    .map(|(t, r)| (format!("{t} pull requests"), r.as_ref().err())),
            );
        // The targets of a burst fail alike: one line per reason, with the count.
        let (mut failed, mut recovered) = (Folded::default(), Folded::default());
        for (what, error) in answers {
            match (error, last.get(&what)) {
                (Some(e), Some(previous)) if previous == e => {
                    tracing::debug!("{what}: still failing: {e}")
                }
                (Some(e), _) => {
                    failed.add_error(what.clone(), e);
                    last.insert(what, e.clone());
                }
                (None, Some(_)) => {
                    last.remove(&what);
                    let again = "polled again successfully";
                    recovered.add(what, again.to_owned(), again.to_owned());
                }
                (None, None) => {}
            }
        }
        failed.log(Level::WARN, "poll failed: ");
        recovered.log(Level::INFO, "");
    }
}
