//! Politeness towards one forge (per client): pauses when the rate-limit budget
//! falls under a reserve (until the reset), honours `Retry-After` exactly, backs off
//! exponentially from a configured minimum after a secondary limit or a 429 that
//! says nothing, and keeps an optional requests-per-minute cap. While paused, the
//! client refuses requests at once instead of waiting, so a paused forge never holds
//! up anything else.
//!
//! A pause answers a burst, not each request of it: [`Governor::admit`] hands every
//! request a [`Ticket`] naming the pause generation it was admitted in, and a limited
//! answer to a request admitted before the current pause began does not back off
//! again (it only lengthens the pause when it asks a longer wait itself). The backoff
//! doubles per pause, not per answer: limited again after a pause ended. It ends with
//! a success once the forge has taken requests for as long as the last wait; the
//! successes of the burst that is limited again right after a pause do not end it.
//! A pause is state: with a [`PauseStore`] attached, every change is saved, and a
//! client built later (a restart, a reload, `once`) starts from it.
//!
//! Writes (commit statuses) pass the same pauses and cap, and also a write budget
//! (`writes`: per minute and per hour); a write over it is refused at once
//! ([`Refusal::WriteLimited`]), never delayed. Reads never wait for the write budget.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::forge::RateLimit;

mod writes;

use writes::WriteBudget;

/// The longest any pause lasts, whatever a forge (or a stored record) says.
pub const MAX_PAUSE: Duration = Duration::from_secs(24 * 3600);
/// Beyond this many doublings every wait is the cap anyway.
const MAX_STEP: u32 = 32;
/// An answer in the middle of a pause lengthens it only by more than this (waits are
/// given in whole seconds, so the answers of one burst ask the same end give or take).
const EXTEND_MARGIN: Duration = Duration::from_secs(1);

/// Tunables (SPEC §8: configuration keys with these defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct RatePolicy {
    /// Pause when `remaining < reserve · limit` (0.0–1.0).
    pub reserve: f64,
    /// The first wait after a secondary limit (or header-less 429); doubles with each
    /// consecutive pause.
    pub secondary_wait: Duration,
    pub max_backoff: Duration,
    pub requests_per_minute: Option<u32>,
    /// At most this many writes (commit statuses) in any minute (`None`: no budget).
    pub writes_per_minute: Option<u32>,
    /// At most this many writes in any hour (`None`: no budget).
    pub writes_per_hour: Option<u32>,
}

impl Default for RatePolicy {
    fn default() -> Self {
        RatePolicy {
            reserve: 0.10,
            secondary_wait: Duration::from_secs(60),
            max_backoff: Duration::from_secs(3600),
            requests_per_minute: None,
            writes_per_minute: None,
            writes_per_hour: None,
        }
    }
}

/// Why and until when a forge is paused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    pub until: SystemTime,
    pub reason: String,
}

/// A forge's pause as it is kept between processes: the latest pause (possibly
/// over) and how many pauses without a wait given came in a row since the backoff last
/// ended (the next such one lasts `secondary_wait · 2^backoff_step`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PauseRecord {
    pub until: SystemTime,
    pub reason: String,
    pub backoff_step: u32,
}

/// Where pauses are kept between clients, keyed by the forge's API origin (the daemon
/// keeps them in its state database). `None` means nothing to remember: no pause, and
/// the backoff at its start.
pub trait PauseStore: Send + Sync {
    fn load_pause(&self, key: &str) -> Option<PauseRecord>;
    /// Failures are the store's to report; the pause holds in memory regardless.
    fn save_pause(&self, key: &str, record: Option<&PauseRecord>);
}

/// What [`Governor::admit`] hands a request, to give back with its answer: the pause
/// generation it was admitted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
}

struct Inner {
    /// The latest pause, kept after it ended until a success (its backoff step holds).
    pause: Option<Pause>,
    /// Advanced whenever a pause begins with none in force: a ticket of an older
    /// generation answers for a request sent before the current pause.
    generation: u64,
    /// Pauses without a wait given in a row, with no success since that ended the
    /// backoff.
    step: u32,
    /// Start times of the requests of the last minute (for the per-minute cap).
    sent: VecDeque<Instant>,
    writes: WriteBudget,
}

impl Inner {
    fn in_force(&self, now: SystemTime) -> Option<&Pause> {
        self.pause.as_ref().filter(|p| p.until > now)
    }

    fn record(&self) -> Option<PauseRecord> {
        self.pause.as_ref().map(|p| PauseRecord {
            until: p.until,
            reason: p.reason.clone(),
            backoff_step: self.step,
        })
    }
}

/// What a request does: a write also spends the write budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why a request is not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The forge is paused by its rate limit.
    Paused(Pause),
    /// A write over the write budget; there is room again at `until`.
    WriteLimited { until: SystemTime },
}

/// The outcome of one attempt to admit a request.
enum Admission {
    Go(Ticket),
    /// The per-minute cap: try again after this.
    Wait(Duration),
    Refused(Refusal),
}

pub struct Governor {
    policy: RatePolicy,
    inner: Mutex<Inner>,
    /// Where changes are saved, and under which key (also named in the logs).
    store: Option<(Arc<dyn PauseStore>, String)>,
}

impl Governor {
    pub fn new(policy: RatePolicy) -> Governor {
        Governor {
            inner: Mutex::new(Inner {
                pause: None,
                generation: 0,
                step: 0,
                sent: VecDeque::new(),
                writes: WriteBudget::new(policy.writes_per_minute, policy.writes_per_hour),
            }),
            policy,
            store: None,
        }
    }

    /// From now on every change is saved in `store` under `key`; the pause saved
    /// there before (by an earlier client) is taken over.
    pub fn keep_in(&mut self, store: Arc<dyn PauseStore>, key: &str) {
        if let Some(record) = store.load_pause(key) {
            self.restore(record, key, SystemTime::now());
        }
        self.store = Some((store, key.to_owned()));
    }

    fn restore(&mut self, record: PauseRecord, key: &str, now: SystemTime) {
        let until = record.until.min(now + MAX_PAUSE);
        if until > now {
            tracing::info!(
                forge = %key,
                "rate limit: this forge stays paused until {}: {}",
                humantime::format_rfc3339_seconds(until),
                record.reason
            );
        }
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        inner.pause = Some(Pause {
            until,
            reason: record.reason,
        });
        inner.step = record.backoff_step.min(MAX_STEP);
        // Every request of this client is admitted after that pause began.
        inner.generation += 1;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current pause, if it has not ended.
    pub fn pause(&self) -> Option<Pause> {
        self.lock().in_force(SystemTime::now()).cloned()
    }

    /// Before a request: refused while paused, and a write over the write budget;
    /// waits for the per-minute cap (a write that waited is checked again).
    pub async fn admit(&self, access: Access) -> Result<Ticket, Refusal> {
        loop {
            match self.try_admit(access, SystemTime::now(), Instant::now()) {
                Admission::Go(ticket) => return Ok(ticket),
                Admission::Refused(refusal) => return Err(refusal),
                Admission::Wait(d) => tokio::time::sleep(d).await,
            }
        }
    }

    fn try_admit(&self, access: Access, now: SystemTime, instant: Instant) -> Admission {
        let mut inner = self.lock();
        if let Some(pause) = inner.in_force(now) {
            return Admission::Refused(Refusal::Paused(pause.clone()));
        }
        while inner
            .sent
            .front()
            .is_some_and(|t| instant.duration_since(*t) >= Duration::from_secs(60))
        {
            inner.sent.pop_front();
        }
        match self.policy.requests_per_minute {
            Some(cap) if inner.sent.len() >= cap as usize => {
                Admission::Wait(inner.sent.front().map_or(Duration::ZERO, |t| {
                    Duration::from_secs(60).saturating_sub(instant.duration_since(*t))
                }))
            }
            _ => {
                if access == Access::Write
                    && let Err(room) = inner.writes.take(instant)
                {
                    let until = now + room.saturating_duration_since(instant);
                    return Admission::Refused(Refusal::WriteLimited { until });
                }
                inner.sent.push_back(instant);
                Admission::Go(Ticket {
                    generation: inner.generation,
                })
            }
        }
    }

    /// Pauses until `until` (at most [`MAX_PAUSE`] away), or lengthens the pause in
    /// force when `until` is later. Logs the pause's end whenever it changes.
    fn pause_until(&self, inner: &mut Inner, until: SystemTime, reason: String, now: SystemTime) {
        // A hostile reset time or Retry-After must not silence a forge for good.
        let until = until.min(now + MAX_PAUSE);
        if until <= now {
            return;
        }
        let forge = self.store.as_ref().map_or("", |(_, key)| key.as_str());
        let end = humantime::format_rfc3339_seconds(until);
        match inner.in_force(now) {
            Some(current) if until <= current.until + EXTEND_MARGIN => return,
            Some(_) => {
                tracing::warn!(%forge, "rate limit: pause extended until {end}: {reason}");
            }
            None => {
                inner.generation += 1;
                tracing::warn!(
                    %forge,
                    "rate limit: pausing this forge until {end}: {reason}"
                );
            }
        }
        inner.pause = Some(Pause { until, reason });
    }

    /// The wait of the next pause without a wait given.
    fn backoff(&self, step: u32) -> Duration {
        let factor = 1u32 << step.min(31);
        self.policy
            .secondary_wait
            .saturating_mul(factor)
            .min(self.policy.max_backoff)
    }

    /// Whether the latest pause ended at least its backoff's last wait ago (at once
    /// when there is no backoff).
    fn backoff_over(&self, inner: &Inner, now: SystemTime) -> bool {
        match (&inner.pause, inner.step) {
            (Some(pause), step) if step > 0 => now >= pause.until + self.backoff(step - 1),
            _ => true,
        }
    }

    /// Saves the record when `change` changed it (a pause's reason changes only with
    /// its end, so the end and the step tell).
    fn changing(&self, change: impl FnOnce(&mut Inner)) {
        let mut inner = self.lock();
        let state = |inner: &Inner| (inner.pause.as_ref().map(|p| p.until), inner.step);
        let before = state(&inner);
        change(&mut inner);
        if state(&inner) != before
            && let Some((store, key)) = &self.store
        {
            // Under the lock: saves land in the order of the changes.
            store.save_pause(key, inner.record().as_ref());
        }
    }

    /// A successful answer (2xx or 304) with its rate-limit figures.
    pub fn observe_ok(&self, ticket: Ticket, rate: Option<&RateLimit>) {
        self.observe_ok_at(ticket, rate, SystemTime::now());
    }

    fn observe_ok_at(&self, ticket: Ticket, rate: Option<&RateLimit>, now: SystemTime) {
        self.changing(|inner| {
            // Sent after the latest pause began, and the forge has taken requests for as
            // long as it made us wait: the backoff is over. Sooner, a success proves
            // nothing: the first requests of a burst get through a throttle that limits
            // the rest, and restarting from the base wait would hammer it every time.
            if ticket.generation == inner.generation && self.backoff_over(inner, now) {
                inner.step = 0;
                if inner.in_force(now).is_none() {
                    inner.pause = None;
                }
            }
            let Some(rate) = rate else { return };
            if let (Some(limit), Some(remaining), Some(reset_at)) =
                (rate.limit, rate.remaining, rate.reset_at)
                && (remaining as f64) < self.policy.reserve * limit as f64
            {
                let reason = format!("{remaining} of {limit} requests left, under the reserve");
                self.pause_until(inner, reset_at, reason, now);
            }
        });
    }

    /// A rate-limit answer (403/429): wait as told, else until the reset when the
    /// budget is spent, else back off — unless the request was sent before the
    /// current pause began, which already answers it.
    pub fn observe_limited(
        &self,
        ticket: Ticket,
        retry_after: Option<Duration>,
        rate: Option<&RateLimit>,
    ) {
        self.observe_limited_at(ticket, retry_after, rate, SystemTime::now());
    }

    fn observe_limited_at(
        &self,
        ticket: Ticket,
        retry_after: Option<Duration>,
        rate: Option<&RateLimit>,
        now: SystemTime,
    ) {
        let exhausted_until = rate
            .filter(|r| r.remaining == Some(0))
            .and_then(|r| r.reset_at)
            .filter(|reset| *reset > now);
        self.changing(|inner| match (retry_after, exhausted_until) {
            (Some(wait), _) => {
                // Honoured as sent, unless it does not fit the clock.
                let until = now.checked_add(wait).unwrap_or(now + MAX_PAUSE);
                let reason = format!("Retry-After: {}s", wait.as_secs());
                self.pause_until(inner, until, reason, now);
            }
            (None, Some(reset)) => {
                let reason = "budget exhausted until its reset".to_owned();
                self.pause_until(inner, reset, reason, now);
            }
            (None, None) if ticket.generation == inner.generation => {
                let wait = self.backoff(inner.step);
                inner.step = (inner.step + 1).min(MAX_STEP);
                let reason = format!(
                    "limited without a wait given: backing off {}s",
                    wait.as_secs()
                );
                self.pause_until(inner, now + wait, reason, now);
            }
            // Sent before the current pause began: that pause is the answer.
            (None, None) => {}
        });
    }
}

#[cfg(test)]
mod tests;
