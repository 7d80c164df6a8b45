//! The questions `run` asks in the background (dependency lookups,
//! mergeability): which are out (each is asked once at a time), how many were
//! answered, and the wake-up of the loop when one is. The loop computes once per
//! burst of answers it has not computed from yet, not once per answer.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::plan::dependencies::parse::PrRef;

/// What a question asked in the background is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Question {
    /// A PR referenced from outside the watched targets.
    Lookup(PrRef),
    /// GitHub's `mergeable` of a PR.
    Mergeability(PrRef),
}

#[derive(Debug, Default)]
pub struct Background {
    out: Mutex<BTreeSet<Question>>,
    answered: AtomicU64,
    wake: Notify,
}

impl Background {
    fn out(&self) -> std::sync::MutexGuard<'_, BTreeSet<Question>> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `question` may be asked now: false while it is out already.
    pub fn ask(&self, question: &Question) -> bool {
        self.out().insert(question.clone())
    }

    /// `question` was answered (its answer is where the computation reads it).
    pub fn answered(&self, question: &Question) {
        self.out().remove(question);
        self.answered.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Questions asked and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.out().len()
    }

    /// Answers so far: a computation that began after reading `n` saw the first `n`.
    pub fn answers(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    /// Until an answer comes (at once if one came since the last wait).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(number: u64) -> PrRef {
        PrRef {
            host: "github.com".into(),
            path: "acme/app".into(),
            number,
        }
    }

    #[tokio::test]
    async fn a_question_is_out_once_and_its_answer_counts_and_wakes_once() {
        let background = Background::default();
        let (lookup, mergeability) = (Question::Lookup(pr(1)), Question::Mergeability(pr(1)));
        assert!(background.ask(&lookup));
        assert!(!background.ask(&lookup), "already out");
        assert!(
            background.ask(&mergeability),
            "another question about the PR"
        );
        assert_eq!((background.in_flight(), background.answers()), (2, 0));
        background.answered(&lookup);
        background.answered(&mergeability);
        assert_eq!((background.in_flight(), background.answers()), (0, 2));
        assert!(background.ask(&lookup), "answered: may be asked again");
        // Both answers came before the wait: one wake-up for them.
        background.woken().await;
        let again = tokio::time::timeout(std::time::Duration::ZERO, background.woken()).await;
        assert!(again.is_err(), "a second wake-up without an answer");
    }
}
