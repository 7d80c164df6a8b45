//! Fault injection for the fake GitHub, for end-to-end tests of the daemon's rate-limit
//! handling (`forge-apis.md` §1.2), timeouts and secrecy: a primary budget that runs out and
//! refills at its reset time, secondary rate limits (current and old-style) and 429s for the next requests, requests
//! that hang until released, and a hostile 401 that echoes the request's headers (secrets
//! included) back. Nothing here is in force until a test asks for it.
//!
//! [`HangGate`], [`echo_request_headers`] and the reset-time helpers are shared with the
//! fake GitLab, which offers the same faults in GitLab's shape.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::http::Reply;
use super::{FakeGitHub, GhState, Inner};

/// GitHub's primary-limit answer (403, no `Retry-After`).
const PRIMARY_BODY: &str = r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}"#;
const SECONDARY_BODY: &str = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
/// GitHub's old-style secondary limit (403, no `Retry-After`, the budget not spent).
const ABUSE_BODY: &str = r#"{"message":"You have triggered an abuse detection mechanism. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#abuse-rate-limits"}"#;
const TOO_MANY_BODY: &str = r#"{"message":"Too Many Requests"}"#;
const UNAVAILABLE_BODY: &str = r#"{"message":"Service Unavailable"}"#;

/// A fault queued for one of the next requests, taken in the order queued.
enum Fault {
    Hang,
    /// 403 secondary limit, with `Retry-After` when `Some`.
    Secondary(Option<u64>),
    /// 429, with `Retry-After` when `Some`.
    TooMany(Option<u64>),
    /// 403 "abuse detection mechanism", without `Retry-After`.
    Abuse,
}

/// The faults in force, kept in the fake's state.
#[derive(Default)]
pub(super) struct Faults {
    queue: VecDeque<Fault>,
    hang_prefixes: Vec<String>,
    /// `Some(remaining)` while a budget set by [`FakeGitHub::set_budget`] is in force: each
    /// budget (token or anonymous) then has `remaining` minus what it spent since.
    budget: Option<u64>,
    echo_headers_on_401: bool,
}

impl Faults {
    /// Whether a request for `path` hangs; takes one queued hang if it is next.
    fn hangs(&mut self, path: &str) -> bool {
        if self
            .hang_prefixes
            .iter()
            .any(|p| path.starts_with(p.as_str()))
        {
            return true;
        }
        let next = matches!(self.queue.front(), Some(Fault::Hang));
        if next {
            self.queue.pop_front();
        }
        next
    }

    /// Drops every pending hang rule (queued hangs and path prefixes).
    fn end_hangs(&mut self) {
        self.queue.retain(|f| !matches!(f, Fault::Hang));
        self.hang_prefixes.clear();
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

impl FakeGitHub {
    /// Every budget (each token's and the anonymous one) now has `remaining` requests left,
    /// resetting at now + `reset_in` (`x-ratelimit-reset`, epoch seconds rounded up). While a
    /// budget is at 0 and that time has not come, every request gets GitHub's primary-limit
    /// answer: 403 `API rate limit exceeded ...`, `x-ratelimit-remaining: 0`, no
    /// `Retry-After` (recorded with status 403, not counted). Once the reset time passes,
    /// budgets refill to their limit (5000 with a token, 60 without) and the fake is back to
    /// its default accounting, which never refuses a request.
    pub fn set_budget(&self, remaining: u64, reset_in: Duration) {
        let mut st = self.lock();
        st.used.clear();
        st.faults.budget = Some(remaining);
        st.reset_at = epoch_after(reset_in);
    }

    /// The next `n` requests get a secondary rate limit: 403 `You have exceeded a secondary
    /// rate limit ...`, with `retry-after` when `Some`, and `x-ratelimit-remaining` at the
    /// current budget (never 0, which would mean the primary limit). They cost no budget.
    pub fn secondary_limit_next(&self, n: usize, retry_after: Option<u64>) {
        let faults = std::iter::repeat_with(|| Fault::Secondary(retry_after)).take(n);
        self.lock().faults.queue.extend(faults);
    }

    /// The next `n` requests get GitHub's old-style secondary limit: 403 `You have triggered
    /// an abuse detection mechanism ...`, no `retry-after`, the rate-limit headers as for
    /// [`Self::secondary_limit_next`].
    pub fn abuse_detection_next(&self, n: usize) {
        let faults = std::iter::repeat_with(|| Fault::Abuse).take(n);
        self.lock().faults.queue.extend(faults);
    }

    /// The next `n` requests get `429 {"message":"Too Many Requests"}`, with `retry-after`
    /// when `Some` and the rate-limit headers as for [`Self::secondary_limit_next`].
    pub fn status_429_next(&self, n: usize, retry_after: Option<u64>) {
        let faults = std::iter::repeat_with(|| Fault::TooMany(retry_after)).take(n);
        self.lock().faults.queue.extend(faults);
    }

    /// The next `n` requests hang: accepted and read, recorded at once with status 0, then
    /// not answered until [`Self::release_hung`] or until the test's last handle on the fake
    /// is dropped (they then get a 503). Other requests are served meanwhile. Hangs queued
    /// here, by [`Self::secondary_limit_next`] and by [`Self::status_429_next`] are taken in
    /// the order queued; a hung request stays in [`Self::in_flight`] until it is answered.
    pub fn hang_next(&self, n: usize) {
        let faults = std::iter::repeat_with(|| Fault::Hang).take(n);
        self.lock().faults.queue.extend(faults);
    }

    /// Every request whose raw (still percent-encoded) path starts with `prefix` hangs like
    /// with [`Self::hang_next`], until [`Self::release_hung`]. Takes precedence over queued
    /// faults, which stay queued for the next other request.
    pub fn hang_path(&self, prefix: &str) {
        self.lock().faults.hang_prefixes.push(prefix.to_owned());
    }

    /// Answers every hung request (503) and ends the pending hang rules: the rest of
    /// [`Self::hang_next`]'s count and every [`Self::hang_path`] prefix.
    pub fn release_hung(&self) {
        let mut st = self.lock();
        st.faults.end_hangs();
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

    /// When on, a 401 (bad or missing token) also echoes every request header back in
    /// `request_headers` (`{"authorization": "Bearer ...", ...}`), like a hostile or broken
    /// server would, to check the daemon never prints what a server sends.
    pub fn echo_headers_on_401(&self, on: bool) {
        self.lock().faults.echo_headers_on_401 = on;
    }

    /// Takes a request for `path` into a hang when a rule says so, while `st` is locked (so
    /// [`Self::release_hung`] cannot slip in between): the future resolves once released.
    pub(super) fn take_hang(
        &self,
        st: &mut GhState,
        path: &str,
    ) -> Option<impl Future<Output = ()> + Send + use<>> {
        if st.faults.hangs(path) {
            self.inner.hang.take()
        } else {
            None
        }
    }
}

impl GhState {
    /// Ends a budget set by [`FakeGitHub::set_budget`] once its reset time has passed.
    pub(super) fn refill_if_reset(&mut self) {
        if self.faults.budget.is_some() && reached(self.reset_at) {
            self.faults.budget = None;
            self.used.clear();
            self.reset_at = now_epoch() + 3600;
        }
    }

    /// `(limit, remaining, used)` of budget `key` (`None`: anonymous).
    fn budget_of(&self, key: Option<&str>) -> (u64, u64, u64) {
        let limit: u64 = if key.is_some() { 5000 } else { 60 };
        let used = self.used.get(&key.map(str::to_owned)).copied().unwrap_or(0);
        match self.faults.budget {
            None => (limit, limit.saturating_sub(used), used),
            Some(base) => {
                let remaining = base.saturating_sub(used);
                (limit, remaining, limit.saturating_sub(remaining))
            }
        }
    }

    /// GitHub's rate-limit headers for budget `key`, as they stand now.
    pub(super) fn rate_headers(&self, key: Option<&str>) -> Vec<(&'static str, String)> {
        let (limit, remaining, used) = self.budget_of(key);
        self.headers_with(limit, remaining, used)
    }

    fn headers_with(&self, limit: u64, remaining: u64, used: u64) -> Vec<(&'static str, String)> {
        vec![
            ("x-ratelimit-limit", limit.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-used", used.to_string()),
            ("x-ratelimit-reset", self.reset_at.to_string()),
            ("x-ratelimit-resource", "core".to_owned()),
            ("x-github-api-version-selected", "2022-11-28".to_owned()),
        ]
    }

    /// The answer a request spending budget `key` gets instead of its own: the next queued
    /// secondary limit or 429, else the primary limit while a set budget is at 0.
    pub(super) fn fault_reply(&mut self, key: Option<&str>) -> Option<Reply> {
        let (limit, remaining, _) = self.budget_of(key);
        let (status, body, retry_after) = match self.faults.queue.front() {
            Some(Fault::Secondary(after)) => (403, SECONDARY_BODY, *after),
            Some(Fault::TooMany(after)) => (429, TOO_MANY_BODY, *after),
            Some(Fault::Abuse) => (403, ABUSE_BODY, None),
            _ if self.faults.budget.is_some() && remaining == 0 => {
                let mut reply = json_reply(403, PRIMARY_BODY);
                reply.headers.extend(self.headers_with(limit, 0, limit));
                return Some(reply);
            }
            _ => return None,
        };
        self.faults.queue.pop_front();
        let remaining = remaining.max(1);
        let mut reply = json_reply(status, body);
        let used = limit.saturating_sub(remaining);
        reply
            .headers
            .extend(self.headers_with(limit, remaining, used));
        if let Some(secs) = retry_after {
            reply.headers.push(("retry-after", secs.to_string()));
        }
        Some(reply)
    }

    /// Adds the request's headers to a 401's body when [`FakeGitHub::echo_headers_on_401`].
    pub(super) fn maybe_echo(&self, reply: &mut Reply, headers: &HeaderMap) {
        if self.faults.echo_headers_on_401 && reply.status == 401 {
            echo_request_headers(&mut reply.body, headers);
        }
    }
}

/// The answer a hung request finally gets.
pub(super) fn unavailable() -> Reply {
    json_reply(503, UNAVAILABLE_BODY)
}

fn json_reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json; charset=utf-8".to_owned())],
        body: body.as_bytes().to_vec(),
    }
}

/// Adds `"request_headers": {name: value, ...}` (every header, values of a repeated one
/// joined by `, `) to a JSON object body.
pub(crate) fn echo_request_headers(body: &mut Vec<u8>, headers: &HeaderMap) {
    let mut echoed = Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        echoed.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    let mut value: Value =
        serde_json::from_slice(body).unwrap_or_else(|_| Value::Object(Map::new()));
    if let Value::Object(object) = &mut value {
        object.insert("request_headers".to_owned(), Value::Object(echoed));
        *body = serde_json::to_vec(&value).unwrap_or_default();
    }
}

/// Now, in epoch seconds (rounded down).
pub(crate) fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now + `delay`, in epoch seconds rounded up.
pub(crate) fn epoch_after(delay: Duration) -> u64 {
    let at = (SystemTime::now() + delay)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    at.as_secs() + u64::from(at.subsec_nanos() > 0)
}

/// Whether the epoch second `epoch` has begun.
pub(crate) fn reached(epoch: u64) -> bool {
    SystemTime::now() >= UNIX_EPOCH + Duration::from_secs(epoch)
}

/// Whole seconds from now until `epoch` (rounded up, at least 1).
pub(crate) fn secs_until(epoch: u64) -> u64 {
    let left = (UNIX_EPOCH + Duration::from_secs(epoch))
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
}

/// Where hung requests wait: released all at once by [`HangGate::release`], or for good by
/// [`HangGate::close`] (after which nothing hangs any more).
pub(crate) struct HangGate(watch::Sender<HangState>);

#[derive(Default)]
pub(crate) struct HangState {
    /// Bumped by each release; a request waits for the one after it was taken.
    generation: u64,
    /// Taken since the last release.
    hung: usize,
    closed: bool,
}

impl HangGate {
    pub(crate) fn new() -> HangGate {
        HangGate(watch::channel(HangState::default()).0)
    }

    /// Takes one request into the hang: the future resolves once it is released. `None`
    /// when the gate is closed (the request is then answered normally).
    pub(crate) fn take(&self) -> Option<impl Future<Output = ()> + Send + use<>> {
        let mut rx = self.0.subscribe();
        let mut taken = None;
        self.0.send_if_modified(|h| {
            if !h.closed {
                h.hung += 1;
                taken = Some(h.generation);
            }
            !h.closed
        });
        let generation = taken?;
        Some(async move {
            // An error means the fake is gone altogether: released too.
            let _ = rx
                .wait_for(|h| h.generation != generation || h.closed)
                .await;
        })
    }

    /// Lets every request hung so far go.
    pub(crate) fn release(&self) {
        self.0.send_modify(|h| {
            h.generation += 1;
            h.hung = 0;
        });
    }

    /// Lets every hung request go, and takes no more.
    pub(crate) fn close(&self) {
        self.0.send_modify(|h| {
            h.closed = true;
            h.hung = 0;
        });
    }

    pub(crate) fn count(&self) -> usize {
        self.0.borrow().hung
    }

    /// Resolves to `true` once at least `n` requests are hung, `false` after `timeout`.
    pub(crate) fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
    ) -> impl Future<Output = bool> + Send + use<> {
        let mut rx = self.0.subscribe();
        async move {
            matches!(
                tokio::time::timeout(timeout, rx.wait_for(|h| h.hung >= n)).await,
                Ok(Ok(_))
            )
        }
    }
}
