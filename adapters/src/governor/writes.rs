//! The write budget of one forge (`forge-apis.md` §7.2: GitHub takes at most 80
//! content-creating requests a minute and 500 an hour per token): sliding windows of
//! the writes of the last minute and of the last hour, on tokio's clock (so tests can
//! pause time). A write that would exceed either budget is refused, never delayed:
//! the caller (the status outbox) learns when the oldest write leaves the window and
//! reschedules. Reads never pass through here.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// One sliding window: the start times of the writes admitted in the last `span`.
#[derive(Debug)]
struct Window {
    span: Duration,
    cap: usize,
    sent: VecDeque<Instant>,
}

impl Window {
    fn new(span: Duration, cap: Option<u32>) -> Option<Window> {
        cap.map(|cap| Window {
            span,
            cap: cap as usize,
            sent: VecDeque::new(),
        })
    }

    /// Forgets the writes that left the window by `now`; when the window is full,
    /// the instant its oldest write leaves it.
    fn full_until(&mut self, now: Instant) -> Option<Instant> {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.span)
        {
            self.sent.pop_front();
        }
        (self.sent.len() >= self.cap)
            .then(|| self.sent.front().map_or(now, |oldest| *oldest + self.span))
    }
}

/// The write budget: per minute and per hour, each optional.
#[derive(Debug)]
pub(super) struct WriteBudget {
    minute: Option<Window>,
    hour: Option<Window>,
}

impl WriteBudget {
    pub(super) fn new(per_minute: Option<u32>, per_hour: Option<u32>) -> WriteBudget {
        WriteBudget {
            minute: Window::new(MINUTE, per_minute),
            hour: Window::new(HOUR, per_hour),
        }
    }

    /// `Ok` and the write is counted when both windows have room at `now`; else
    /// `Err(when)`: the instant the fuller window has room again (the later of the
    /// two when both are full), and nothing is counted.
    pub(super) fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let windows = [self.minute.as_mut(), self.hour.as_mut()];
        let until = windows
            .into_iter()
            .flatten()
            .filter_map(|w| w.full_until(now))
            .max();
        if let Some(until) = until {
            return Err(until);
        }
        for window in [self.minute.as_mut(), self.hour.as_mut()]
            .into_iter()
            .flatten()
        {
            window.sent.push_back(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_minute_window_admits_its_budget_then_refuses_until_the_oldest_leaves() {
        let mut budget = WriteBudget::new(Some(3), None);
        let first = Instant::now();
        assert_eq!(budget.take(first), Ok(()));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(budget.take(Instant::now()), Ok(()));
        assert_eq!(budget.take(Instant::now()), Ok(()));
        // The fourth: refused, until the first write is a minute old.
        assert_eq!(budget.take(Instant::now()), Err(first + MINUTE));
        assert_eq!(budget.take(Instant::now()), Err(first + MINUTE));
        tokio::time::advance(Duration::from_secs(49)).await;
        assert_eq!(budget.take(Instant::now()), Err(first + MINUTE));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(budget.take(Instant::now()), Ok(()));
        // The two of second 10 are still in the window.
        let second = first + Duration::from_secs(10);
        assert_eq!(budget.take(Instant::now()), Err(second + MINUTE));
    }

    #[tokio::test(start_paused = true)]
    async fn the_hour_window_holds_after_the_minute_window_has_room() {
        let mut budget = WriteBudget::new(Some(2), Some(3));
        let start = Instant::now();
        assert_eq!(budget.take(start), Ok(()));
        assert_eq!(budget.take(start), Ok(()));
        assert_eq!(budget.take(start), Err(start + MINUTE));
        tokio::time::advance(MINUTE).await;
        assert_eq!(budget.take(Instant::now()), Ok(()));
        // Minute: one of two; hour: three of three, until the first is an hour old.
        assert_eq!(budget.take(Instant::now()), Err(start + HOUR));
        tokio::time::advance(HOUR - MINUTE).await;
        assert_eq!(budget.take(Instant::now()), Ok(()));
        assert_eq!(budget.take(Instant::now()), Ok(()));
        // Both full now: the later of the two ends.
        let third = start + MINUTE;
        assert_eq!(budget.take(Instant::now()), Err(third + HOUR));
    }

    #[tokio::test(start_paused = true)]
    async fn no_budget_admits_everything() {
        let mut budget = WriteBudget::new(None, None);
        for _ in 0..10_000 {
            assert_eq!(budget.take(Instant::now()), Ok(()));
        }
    }
}
