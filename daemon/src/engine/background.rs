//! The questions `run` asks in the background (dependency lookups,
//! mergeability): how many are out, how many were answered, and the wake-up of the
//! loop when one is. The loop computes once per burst of answers it has not
//! computed from yet, not once per answer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Background {
    in_flight: AtomicUsize,
    answered: AtomicU64,
    wake: Notify,
}

impl Background {
    /// A question was asked.
    pub fn asked(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// A question was answered (its answer is where the computation reads it).
    pub fn answered(&self) {
        self.answered.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Questions asked and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
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

    #[tokio::test]
    async fn an_answer_counts_and_wakes_once() {
        let background = Background::default();
        background.asked();
        background.asked();
        assert_eq!((background.in_flight(), background.answers()), (2, 0));
        background.answered();
        background.answered();
        assert_eq!((background.in_flight(), background.answers()), (0, 2));
        // Both answers came before the wait: one wake-up for them.
        background.woken().await;
        let again = tokio::time::timeout(std::time::Duration::ZERO, background.woken()).await;
        assert!(again.is_err(), "a second wake-up without an answer");
    }
}
