//! Politeness towards one forge (per credential): pauses when the rate-limit budget
//! falls under a reserve (until the reset), honours `Retry-After` exactly, backs off
//! exponentially from a configured minimum after a secondary limit or a 429 that
//! says nothing, and keeps an optional requests-per-minute cap. While paused, the
//! client refuses requests at once instead of waiting, so a paused forge never holds
//! up anything else.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::forge::RateLimit;

/// The longest any pause lasts, whatever a forge says.
pub const MAX_PAUSE: Duration = Duration::from_secs(24 * 3600);

/// Tunables (SPEC §8: configuration keys with these defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct RatePolicy {
    /// Pause when `remaining < reserve · limit` (0.0–1.0).
    pub reserve: f64,
    /// The first wait after a secondary limit (or header-less 429); doubles each time.
    pub secondary_wait: Duration,
    pub max_backoff: Duration,
    pub requests_per_minute: Option<u32>,
}

impl Default for RatePolicy {
    fn default() -> Self {
        RatePolicy {
            reserve: 0.10,
            secondary_wait: Duration::from_secs(60),
            max_backoff: Duration::from_secs(3600),
            requests_per_minute: None,
        }
    }
}

/// Why and until when a forge is paused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    pub until: SystemTime,
    pub reason: String,
}

struct Inner {
    pause: Option<Pause>,
    /// The next wait for a limit that names none.
    backoff: Duration,
    /// Start times of the requests of the last minute (for the per-minute cap).
    sent: VecDeque<Instant>,
}

pub struct Governor {
    policy: RatePolicy,
    inner: Mutex<Inner>,
}

impl Governor {
    pub fn new(policy: RatePolicy) -> Governor {
        let backoff = policy.secondary_wait;
        Governor {
            policy,
            inner: Mutex::new(Inner {
                pause: None,
                backoff,
                sent: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current pause, if it has not ended.
    pub fn pause(&self) -> Option<Pause> {
        let mut inner = self.lock();
        if inner
            .pause
            .as_ref()
            .is_some_and(|p| p.until <= SystemTime::now())
        {
            inner.pause = None;
        }
        inner.pause.clone()
    }

    /// Before a request: refused while paused; waits for the per-minute cap.
    pub async fn admit(&self) -> Result<(), Pause> {
        loop {
            if let Some(pause) = self.pause() {
                return Err(pause);
            }
            let wait = {
                let mut inner = self.lock();
                let now = Instant::now();
                while inner
                    .sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
                {
                    inner.sent.pop_front();
                }
                match self.policy.requests_per_minute {
                    Some(cap) if inner.sent.len() >= cap as usize => inner
                        .sent
                        .front()
                        .map(|t| Duration::from_secs(60).saturating_sub(now.duration_since(*t))),
                    _ => {
                        inner.sent.push_back(now);
                        None
                    }
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => return Ok(()),
            }
        }
    }

    fn pause_until(&self, inner: &mut Inner, until: SystemTime, reason: String) {
        // A hostile reset time or Retry-After must not silence a forge for good.
        let until = until.min(SystemTime::now() + MAX_PAUSE);
        if inner.pause.as_ref().is_none_or(|p| p.until < until) {
            tracing::warn!(
                until = %humantime::format_rfc3339_seconds(until),
                "rate limit: pausing this forge: {reason}"
            );
            inner.pause = Some(Pause { until, reason });
        }
    }

    /// A successful answer (2xx or 304) with its rate-limit figures.
    pub fn observe_ok(&self, rate: Option<&RateLimit>) {
        let mut inner = self.lock();
        inner.backoff = self.policy.secondary_wait;
        let Some(rate) = rate else { return };
        if let (Some(limit), Some(remaining), Some(reset_at)) =
            (rate.limit, rate.remaining, rate.reset_at)
            && (remaining as f64) < self.policy.reserve * limit as f64
            && reset_at > SystemTime::now()
        {
            let reason = format!("{remaining} of {limit} requests left, under the reserve");
            self.pause_until(&mut inner, reset_at, reason);
        }
    }

    /// A rate-limit answer (403/429): wait as told, else until the reset when the
    /// budget is spent, else back off.
    pub fn observe_limited(&self, retry_after: Option<Duration>, rate: Option<&RateLimit>) {
        let mut inner = self.lock();
        let now = SystemTime::now();
        let exhausted_until = rate
            .filter(|r| r.remaining == Some(0))
            .and_then(|r| r.reset_at)
            .filter(|reset| *reset > now);
        let (until, reason) = match (retry_after, exhausted_until) {
            (Some(wait), _) => (
                // Honoured as sent, unless it does not fit the clock.
                now.checked_add(wait)
                    .unwrap_or(now + self.policy.max_backoff),
                format!("Retry-After: {}s", wait.as_secs()),
            ),
            (None, Some(reset)) => (reset, "budget exhausted until its reset".to_owned()),
            (None, None) => {
                let wait = inner.backoff;
                inner.backoff = (wait * 2).min(self.policy.max_backoff);
                (
                    now.checked_add(wait)
                        .unwrap_or(now + self.policy.max_backoff),
                    format!(
                        "limited without a wait given: backing off {}s",
                        wait.as_secs()
                    ),
                )
            }
        };
        self.pause_until(&mut inner, until, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(limit: u64, remaining: u64, reset_in: u64) -> RateLimit {
        RateLimit {
            limit: Some(limit),
            remaining: Some(remaining),
            used: None,
            reset_at: Some(SystemTime::now() + Duration::from_secs(reset_in)),
            resource: None,
        }
    }

    #[test]
    fn pauses_under_the_reserve_until_the_reset() {
        let g = Governor::new(RatePolicy::default());
        g.observe_ok(Some(&rate(5000, 500, 100)));
        assert!(g.pause().is_none(), "10% left is not under 10%");
        g.observe_ok(Some(&rate(5000, 499, 100)));
        let pause = g.pause().unwrap();
        let left = pause.until.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(95) && left <= Duration::from_secs(100));
    }

    #[test]
    fn retry_after_is_honoured_as_sent_and_backoff_doubles() {
        let g = Governor::new(RatePolicy {
            secondary_wait: Duration::from_secs(2),
            ..RatePolicy::default()
        });
        g.observe_limited(Some(Duration::from_secs(7)), None);
        let left = g
            .pause()
            .unwrap()
            .until
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(6) && left <= Duration::from_secs(7));

        let g = Governor::new(RatePolicy {
            secondary_wait: Duration::from_secs(2),
            ..RatePolicy::default()
        });
        g.observe_limited(None, None);
        let first = g.pause().unwrap().until;
        g.observe_limited(None, None);
        let second = g.pause().unwrap().until;
        let gap = second.duration_since(first).unwrap();
        assert!(
            gap >= Duration::from_millis(1900),
            "second wait is 4s: {gap:?}"
        );
        g.observe_ok(None);
        assert_eq!(
            g.lock().backoff,
            Duration::from_secs(2),
            "success resets the backoff"
        );
    }

    #[test]
    fn an_exhausted_budget_pauses_until_its_reset() {
        let g = Governor::new(RatePolicy::default());
        g.observe_limited(None, Some(&rate(60, 0, 30)));
        let left = g
            .pause()
            .unwrap()
            .until
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(25) && left <= Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn the_per_minute_cap_spaces_requests() {
        let g = Governor::new(RatePolicy {
            requests_per_minute: Some(2),
            ..RatePolicy::default()
        });
        let start = Instant::now();
        g.admit().await.unwrap();
        g.admit().await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The third waits until the first is a minute old.
        g.admit().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test]
    async fn refuses_while_paused() {
        let g = Governor::new(RatePolicy::default());
        assert!(g.admit().await.is_ok());
        g.observe_limited(Some(Duration::from_secs(60)), None);
        assert!(g.admit().await.is_err());
    }
}
