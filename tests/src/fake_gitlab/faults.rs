//! Fault injection for the fake GitLab, in GitLab's shape, for end-to-end tests of the
//! daemon's rate-limit handling (`forge-apis.md` §2.2), timeouts and secrecy: a budget that
//! runs out (429 `Retry later` with `RateLimit-*` and `Retry-After`) and refills at its reset
//! time, requests that hang until released, and a hostile 401 that echoes the request's
//! headers back. [`FakeGitLab::fail_next`]'s failures share the queue with the hangs. The
//! hang gate and the helpers come from the fake GitHub, which offers the same faults.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::json;

use super::http::{Reply, error_message};
use super::{Failure, FakeGitLab, GlState, Inner};
use crate::fake_github::{echo_request_headers, epoch_after, reached};

/// A fault queued for one of the next requests, taken in the order queued.
enum Queued {
    Fail(Failure),
    Hang,
}

/// A budget set by [`FakeGitLab::set_budget`].
#[derive(Clone, Copy)]
struct Budget {
    /// Requests each credential may make from when it was set.
    remaining: u64,
    /// Epoch seconds.
    reset_at: u64,
}

/// The faults in force, kept in the fake's state.
#[derive(Default)]
pub(super) struct Faults {
    queue: VecDeque<Queued>,
    hang_prefixes: Vec<String>,
    budget: Option<Budget>,
    echo_headers_on_401: bool,
}

impl Faults {
    pub(super) fn fail_next(&mut self, n: usize, failure: Failure) {
        self.queue
            .extend(std::iter::repeat_n(failure, n).map(Queued::Fail));
    }

    /// The next queued failure, if a failure (not a hang) is next.
    pub(super) fn next_failure(&mut self) -> Option<Failure> {
        match self.queue.front() {
            Some(Queued::Fail(failure)) => {
                let failure = *failure;
                self.queue.pop_front();
                Some(failure)
            }
            _ => None,
        }
    }

    /// Whether a request for `path` hangs; takes one queued hang if it is next.
    fn hangs(&mut self, path: &str) -> bool {
        if self
            .hang_prefixes
            .iter()
            .any(|p| path.starts_with(p.as_str()))
        {
            return true;
        }
        let next = matches!(self.queue.front(), Some(Queued::Hang));
        if next {
            self.queue.pop_front();
        }
        next
    }
}

/// Dropped with the last handle a test holds (the server keeps a handle without one):
/// hung requests are then answered, and no more requests hang.
pub(super) struct Owner(pub(super) Arc<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.hang.close();
    }
}

impl FakeGitLab {
    /// The next `n` requests hang: accepted and read, recorded at once with status 0, then
    /// not answered until [`Self::release_hung`] or until the test's last handle on the fake
    /// is dropped (they then get a 503). Other requests are served meanwhile.
    pub fn hang_next(&self, n: usize) {
        let hangs = std::iter::repeat_with(|| Queued::Hang).take(n);
        self.lock().faults.queue.extend(hangs);
    }

    /// Every request whose raw (still percent-encoded) path starts with `prefix`, e.g.
    /// `/api/v4/projects/sensors%2Fdrivers%2Flidar-x`, hangs like with [`Self::hang_next`],
    /// until [`Self::release_hung`]. Takes precedence over queued faults.
    pub fn hang_path(&self, prefix: &str) {
        self.lock().faults.hang_prefixes.push(prefix.to_owned());
    }

    /// Answers every hung request (503) and ends the pending hang rules: the rest of
    /// [`Self::hang_next`]'s count and every [`Self::hang_path`] prefix.
    pub fn release_hung(&self) {
        let mut st = self.lock();
        st.faults.queue.retain(|q| !matches!(q, Queued::Hang));
        st.faults.hang_prefixes.clear();
        self.inner.hang.release();
    }

    /// Requests taken into a hang since start or the last [`Self::release_hung`] (including
    /// those whose client gave up waiting).
    pub fn hung_count(&self) -> usize {
        self.inner.hang.count()
    }

    /// Resolves to `true` once [`Self::hung_count`] reaches `n`, `false` after `timeout`.
    pub fn wait_for_hung(
        &self,
        n: usize,
        timeout: Duration,
    ) -> impl Future<Output = bool> + Send + use<> {
        self.inner.hang.wait_for(n, timeout)
    }

    /// Every credential (and the unauthenticated budget) may now make `remaining` more
    /// requests (304s and errors cost too), until now + `reset_in` (`RateLimit-Reset`, epoch
    /// seconds rounded up). Past that, requests get 429 `Retry later` with
    /// `RateLimit-Remaining: 0`, `RateLimit-Reset`, `RateLimit-ResetTime` and `Retry-After`
    /// (seconds until the reset). Once the reset time passes, the counts start over against
    /// [`Self::set_rate_limit`]'s limit (default 2000 per minute window).
    pub fn set_budget(&self, remaining: u64, reset_in: Duration) {
        let mut st = self.lock();
        st.used.clear();
        st.faults.budget = Some(Budget {
            remaining,
            reset_at: epoch_after(reset_in),
        });
    }

    /// When on, a 401 also echoes every request header back:
    /// `{"message":"401 Unauthorized","request_headers":{"private-token":"...", ...}}`, like
    /// a hostile or broken server would, to check the daemon never prints what it gets.
    pub fn echo_headers_on_401(&self, on: bool) {
        self.lock().faults.echo_headers_on_401 = on;
    }

    /// Takes a request for `path` into a hang when a rule says so, while `st` is locked (so
    /// [`Self::release_hung`] cannot slip in between): the future resolves once released.
    pub(super) fn take_hang(
        &self,
        st: &mut GlState,
        path: &str,
    ) -> Option<impl Future<Output = ()> + Send + use<>> {
        if st.faults.hangs(path) {
            self.inner.hang.take()
        } else {
            None
        }
    }
}

/// How the request just counted stands against the rate limit.
pub(super) struct Standing {
    pub(super) limit: u64,
    /// `RateLimit-Observed`.
    pub(super) observed: u64,
    pub(super) remaining: u64,
    /// `RateLimit-Reset`, epoch seconds.
    pub(super) reset_at: u64,
    pub(super) throttled: bool,
}

impl GlState {
    /// Ends a budget set by [`FakeGitLab::set_budget`] once its reset time has passed.
    pub(super) fn refill_if_reset(&mut self) {
        if self.faults.budget.is_some_and(|b| reached(b.reset_at)) {
            self.faults.budget = None;
            self.used.clear();
        }
    }

    /// Where a request that made `count` requests of its credential stands; `window_end` is
    /// the reset of the default accounting.
    pub(super) fn standing(&self, count: u64, window_end: u64) -> Standing {
        let limit = self.rate_limit;
        match self.faults.budget {
            None => Standing {
                limit,
                observed: count,
                remaining: limit.saturating_sub(count),
                reset_at: window_end,
                throttled: count > limit,
            },
            Some(budget) => Standing {
                limit,
                observed: limit.saturating_sub(budget.remaining) + count,
                remaining: budget.remaining.saturating_sub(count),
                reset_at: budget.reset_at,
                throttled: count > budget.remaining,
            },
        }
    }

    /// Echoes the request's headers into a 401's body when
    /// [`FakeGitLab::echo_headers_on_401`] is on.
    pub(super) fn maybe_echo(&self, reply: &mut Reply, headers: &HeaderMap) {
        if self.faults.echo_headers_on_401 && reply.status == 401 {
            echo_request_headers(&mut reply.body, headers);
        }
    }
}

/// The answer a hung request finally gets.
pub(super) fn unavailable() -> Reply {
    error_message(503, json!("503 Service Unavailable"))
}
