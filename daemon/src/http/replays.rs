//! Webhook redeliveries (issue 14, item 9): a forge delivers the same event again
//! when it retries or someone presses "redeliver", under the same delivery id
//! (`WebhookReceiver::delivery_id`). A verified delivery whose id was seen on the
//! same endpoint within the last hour schedules no poll. Only deliveries whose
//! signature verified are remembered, so nobody can block an id in advance; the
//! memory holds at most [`CAPACITY`] ids (the oldest go first), in memory only: a
//! restarted daemon polls once more, which costs one poll.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use forgewatch_adapters::hooks::HookDeliveryId;

use crate::engine::clock::Clock;

/// How long a delivery id is remembered.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// The most delivery ids remembered at once.
pub const CAPACITY: usize = 10_000;

type Key = (&'static str, HookDeliveryId);

/// The delivery ids seen within the [`WINDOW`], on the injected clock.
pub struct Replays {
    clock: Arc<dyn Clock>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    ids: HashSet<Key>,
    /// `(forgotten at, id)`, oldest first.
    order: VecDeque<(i64, Key)>,
}

impl Replays {
    pub fn new(clock: Arc<dyn Clock>) -> Replays {
        Replays {
            clock,
            seen: Mutex::default(),
        }
    }

    /// Whether `id` is new on `endpoint` within the window; it is remembered from
    /// now on. Call it only for a verified delivery.
    pub fn first_delivery(&self, endpoint: &'static str, id: HookDeliveryId) -> bool {
        let now = self.clock.unix_ms();
        let window = i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        while seen.order.front().is_some_and(|(until, _)| *until <= now) {
            seen.forget_oldest();
        }
        let key = (endpoint, id);
        if seen.ids.contains(&key) {
            return false;
        }
        if seen.order.len() >= CAPACITY {
            seen.forget_oldest();
        }
        seen.ids.insert(key.clone());
        seen.order.push_back((now.saturating_add(window), key));
        true
    }
}

impl Seen {
    fn forget_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.ids.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    struct ManualClock(Mutex<SystemTime>);

    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    fn replays() -> (Arc<ManualClock>, Replays) {
        let clock = Arc::new(ManualClock(Mutex::new(SystemTime::UNIX_EPOCH)));
        (clock.clone(), Replays::new(clock))
    }

    fn advance(clock: &ManualClock, by: Duration) {
        *clock.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }

    fn id(s: &str) -> HookDeliveryId {
        HookDeliveryId::parse(s.as_bytes()).expect("an id")
    }

    #[test]
    fn an_id_is_remembered_for_an_hour_per_endpoint() {
        let (clock, replays) = replays();
        assert!(replays.first_delivery("one", id("a")));
        assert!(!replays.first_delivery("one", id("a")));
        assert!(replays.first_delivery("other", id("a")));
        assert!(replays.first_delivery("one", id("b")));
        advance(&clock, WINDOW - Duration::from_millis(1));
        assert!(!replays.first_delivery("one", id("a")));
        advance(&clock, Duration::from_millis(1));
        assert!(replays.first_delivery("one", id("a")), "an hour later");
        assert!(!replays.first_delivery("one", id("a")));
    }

    #[test]
    fn at_most_capacity_ids_are_held_the_oldest_go_first() {
        let (_clock, replays) = replays();
        for n in 0..CAPACITY + 5 {
            assert!(replays.first_delivery("one", id(&n.to_string())));
        }
        let seen = replays.seen.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!((seen.ids.len(), seen.order.len()), (CAPACITY, CAPACITY));
        drop(seen);
        assert!(!replays.first_delivery("one", id(&(CAPACITY + 4).to_string())));
        assert!(replays.first_delivery("one", id("0")), "forgotten");
    }
}
