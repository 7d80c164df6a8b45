//! Conditional GETs against a forge API: the stored `ETag` and `Last-Modified` of
//! every URL are sent back, a 304 is answered from the stored body, `Link`
//! pagination is followed page by page (each page revalidated on its own), and
//! the rate-limit headers of every response are recorded. Writes (`post`) go
//! through the same credential, concurrency cap and governor, never conditional.
//!
//! Validators and bodies live in a [`ValidatorStore`] the caller provides (the daemon
//! keeps them in its state database, so a restart costs no rate limit). Keys are
//! partitioned per credential, since GitHub ETags are per token.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{self, HeaderMap};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::forge::{ForgeError, RateLimit, RequestStats};
use crate::governor::{Access, Governor, Pause, PauseStore, RatePolicy, Refusal, Ticket};
use crate::{BoxFuture, Secret};

mod headers;
mod post;
mod timing;
mod transport;

use headers::{header_string, next_page_url};
pub use headers::{next_link, parse_rate_limit};
pub use timing::{REQUEST_SECONDS_BUCKETS, RequestDurations};
use transport::{Answered, read_body};
pub(crate) use transport::{read_body_at_most, transport_error};

/// Largest response body read from a forge; beyond it the answer is an error.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Largest number of pages followed for one list (100 items each).
const MAX_PAGES: usize = 200;

/// What is remembered of one URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CachedResponse {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The `rel="next"` link of that response, for paginated lists.
    pub next_url: Option<String>,
    pub body: Vec<u8>,
}

/// Where validators and bodies are kept between requests (and restarts). Its calls
/// are awaited inside forge requests: a store that does I/O (the daemon's SQLite
/// database) does it off the async runtime's threads and answers through the future.
pub trait ValidatorStore: Send + Sync {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<CachedResponse>>;
    /// [`ValidatorStore::load`] without the body (left empty): what a conditional
    /// request needs when the caller does not want the body of a 304.
    fn load_validators<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<CachedResponse>> {
        Box::pin(async move {
            self.load(key).await.map(|c| CachedResponse {
                body: Vec::new(),
                ..c
            })
        })
    }
    /// Failures are the store's to report; the request already succeeded.
    fn save<'a>(&'a self, key: &'a str, response: &'a CachedResponse) -> BoxFuture<'a, ()>;
}

/// A store that forgets everything at exit.
#[derive(Default)]
pub struct MemoryStore(Mutex<std::collections::HashMap<String, CachedResponse>>);

impl MemoryStore {
    fn get(&self, key: &str) -> Option<CachedResponse> {
        self.0.lock().ok()?.get(key).cloned()
    }
}

impl ValidatorStore for MemoryStore {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<CachedResponse>> {
        Box::pin(std::future::ready(self.get(key)))
    }
    fn save<'a>(&'a self, key: &'a str, response: &'a CachedResponse) -> BoxFuture<'a, ()> {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key.to_owned(), response.clone());
        }
        Box::pin(std::future::ready(()))
    }
}

/// Connection settings of one forge client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub max_concurrency: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub user_agent: String,
    pub rate: RatePolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_concurrency: 8,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            user_agent: concat!("forgewatch/", env!("CARGO_PKG_VERSION")).to_owned(),
            rate: RatePolicy::default(),
        }
    }
}

/// One answer: fresh from the server or revalidated from the store.
#[derive(Debug)]
pub struct Page {
    /// Empty for a 304 asked without its body ([`ConditionalClient::get_if_changed`]).
    pub body: Vec<u8>,
    pub next: Option<String>,
    pub not_modified: bool,
}

/// An HTTP client bound to one credential of one forge.
pub struct ConditionalClient {
    http: reqwest::Client,
    store: Arc<dyn ValidatorStore>,
    /// Header name and full value (e.g. `Authorization`, `Bearer …`).
    auth: Option<(&'static str, Secret)>,
    default_headers: Vec<(&'static str, &'static str)>,
    scope: String,
    permits: Semaphore,
    stats: Mutex<RequestStats>,
    rate: Mutex<Option<RateLimit>>,
    governor: Governor,
}

impl ConditionalClient {
    pub fn new(
        options: &ClientOptions,
        store: Arc<dyn ValidatorStore>,
        auth: Option<(&'static str, Secret)>,
        default_headers: Vec<(&'static str, &'static str)>,
    ) -> Result<ConditionalClient, ForgeError> {
        let http = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .redirect(same_origin_redirects())
            // `Accept-Encoding: gzip`, decoded as it is read (a 100-PR page is ~1.8 MB
            // uncompressed). `MAX_BODY_BYTES` bounds the decoded body.
            .gzip(true)
            .build()
            .map_err(|e| ForgeError::Transport {
                url: String::new(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        let scope = auth
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |(_, s)| s.fingerprint());
        Ok(ConditionalClient {
            http,
            store,
            auth,
            default_headers,
            scope,
            permits: Semaphore::new(options.max_concurrency.max(1)),
            stats: Mutex::new(RequestStats::default()),
            rate: Mutex::new(None),
            governor: Governor::new(options.rate.clone()),
        })
    }

    pub fn stats(&self) -> RequestStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.rate.lock().ok().and_then(|r| r.clone())
    }

    /// The pause the forge's rate limit imposes now, if any.
    pub fn pause(&self) -> Option<Pause> {
        self.governor.pause()
    }

    /// Keeps this client's pauses in `store` under `key`, taking over the one saved
    /// there (see [`Governor::keep_in`]).
    pub fn keep_pauses(&mut self, store: Arc<dyn PauseStore>, key: &str) {
        self.governor.keep_in(store, key);
    }

    /// Counts one request sent at `sent`, now answered (or failed).
    fn count(&self, sent: tokio::time::Instant, f: impl FnOnce(&mut RequestStats)) {
        if let Ok(mut stats) = self.stats.lock() {
            f(&mut stats);
            stats.durations.observe(sent.elapsed());
        }
    }

    /// One conditional GET; a 304 is answered with the stored body.
    pub async fn get(&self, url: &str) -> Result<Page, ForgeError> {
        self.get_with(url, true).await
    }

    /// One conditional GET for a caller that may hold (`held`) the answer of the
    /// last response: then a 304 is `None`, its stored body not even read.
    pub async fn get_if_changed(&self, url: &str, held: bool) -> Result<Option<Page>, ForgeError> {
        let page = self.get_with(url, !held).await?;
        Ok((!(held && page.not_modified)).then_some(page))
    }

    async fn get_with(&self, url: &str, body_on_304: bool) -> Result<Page, ForgeError> {
        use tracing::Instrument;
        let span = tracing::debug_span!("forge_request", %url);
        self.get_in_span(url, body_on_304).instrument(span).await
    }

    /// A place under the concurrency cap and the governor's ticket, or why the
    /// request is not sent.
    async fn admit(
        &self,
        url: &str,
        access: Access,
    ) -> Result<(SemaphorePermit<'_>, Ticket), ForgeError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ForgeError::Transport {
                url: url.to_owned(),
                message: "client closed".to_owned(),
            })?;
        let url = url.to_owned();
        match self.governor.admit(access).await {
            Ok(ticket) => Ok((permit, ticket)),
            Err(Refusal::Paused(pause)) => Err(ForgeError::Paused {
                url,
                until: pause.until,
            }),
            Err(Refusal::WriteLimited { until }) => Err(ForgeError::WriteLimited { url, until }),
        }
    }

    /// A request with the forge's headers and credential.
    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, url);
        for (name, value) in &self.default_headers {
            request = request.header(*name, *value);
        }
        if let Some((name, value)) = &self.auth {
            request = request.header(*name, value.expose());
        }
        request
    }

    /// Keeps the rate-limit figures an answer carries, and returns them.
    fn note_rate(&self, headers: &HeaderMap) -> Option<RateLimit> {
        let rate = parse_rate_limit(headers);
        if let (Some(rate), Ok(mut slot)) = (rate.clone(), self.rate.lock()) {
            *slot = Some(rate);
        }
        rate
    }

    async fn get_in_span(&self, url: &str, body_on_304: bool) -> Result<Page, ForgeError> {
        let (_permit, ticket) = self.admit(url, Access::Read).await?;
        let key = format!("{}|{}", self.scope, url);
        let cached = if body_on_304 {
            self.store.load(&key).await
        } else {
            self.store.load_validators(&key).await
        };

        let mut request = self.request(reqwest::Method::GET, url);
        if let Some(cached) = &cached {
            if let Some(etag) = &cached.etag {
                request = request.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &cached.last_modified {
                request = request.header(header::IF_MODIFIED_SINCE, lm);
            }
        }
        let Answered {
            response,
            status,
            headers,
            rate,
            sent,
        } = self.send(url, request).await?;
        if status == 304 || (200..300).contains(&status) {
            self.governor.observe_ok(ticket, rate.as_ref());
        }

        if status == 304 {
            let Some(mut cached) = cached else {
                self.count(sent, |s| s.failed += 1);
                return Err(ForgeError::Decode {
                    url: url.to_owned(),
                    message: "304 Not Modified to an unconditional request".to_owned(),
                });
            };
            self.count(sent, |s| s.not_modified += 1);
            tracing::debug!(status, "not modified");
            // A 304 may omit the ETag (keep ours) or carry a newer one (take it).
            let new_etag = header_string(&headers, header::ETAG);
            if new_etag.is_some() && new_etag != cached.etag {
                let mut stored = if body_on_304 {
                    cached.clone()
                } else {
                    self.store
                        .load(&key)
                        .await
                        .unwrap_or_else(|| cached.clone())
                };
                stored.etag = new_etag.clone();
                cached.etag = new_etag;
                self.store.save(&key, &stored).await;
            }
            return Ok(Page {
                body: cached.body,
                next: cached.next_url,
                not_modified: true,
            });
        }

        let body = match read_body(url, response).await {
            Ok(b) => b,
            Err(e) => {
                self.count(sent, |s| s.failed += 1);
                return Err(e);
            }
        };
        if !(200..300).contains(&status) {
            self.count(sent, |s| s.failed += 1);
            tracing::debug!(status, "request failed");
            let error = status_error(url, status, &headers, &body);
            if let ForgeError::RateLimited { retry_after, .. } = &error {
                self.governor
                    .observe_limited(ticket, *retry_after, rate.as_ref());
            }
            return Err(error);
        }
        self.count(sent, |s| s.fresh += 1);
        tracing::debug!(status, bytes = body.len(), "fresh");
        let fresh = CachedResponse {
            etag: header_string(&headers, header::ETAG),
            last_modified: header_string(&headers, header::LAST_MODIFIED),
            next_url: next_link(&headers).or_else(|| next_page_url(url, &headers)),
            body,
        };
        if fresh.etag.is_some() || fresh.last_modified.is_some() {
            self.store.save(&key, &fresh).await;
        }
        Ok(Page {
            body: fresh.body,
            next: fresh.next_url,
            not_modified: false,
        })
    }

    /// Every page of a list, following `rel="next"` verbatim; each page is a
    /// conditional request of its own. A next page on another origin is refused:
    /// the credential must not travel to a host the forge names.
    pub async fn get_all_pages(&self, first_url: &str) -> Result<Vec<Page>, ForgeError> {
        let pages = self.pages(first_url, true).await?;
        Ok(pages.into_iter().map(|(_, page)| page).collect())
    }

    /// [`ConditionalClient::get_all_pages`] for a caller that may hold (`held`) the
    /// list of the last call: then `None` when every page answered 304 (no stored
    /// body read). When any page changed, every page comes with its body.
    pub async fn get_all_pages_if_changed(
        &self,
        first_url: &str,
        held: bool,
    ) -> Result<Option<Vec<Page>>, ForgeError> {
        if !held {
            return self.get_all_pages(first_url).await.map(Some);
        }
        let pages = self.pages(first_url, false).await?;
        if pages.iter().all(|(_, p)| p.not_modified) {
            return Ok(None);
        }
        // A page changed: the unchanged ones are needed whole after all.
        let mut whole = Vec::with_capacity(pages.len());
        for (url, mut page) in pages {
            if page.not_modified {
                let key = format!("{}|{}", self.scope, url);
                let stored = self
                    .store
                    .load(&key)
                    .await
                    .ok_or_else(|| ForgeError::Decode {
                        url: url.clone(),
                        message: "the stored body of a 304 is gone".to_owned(),
                    })?;
                page.body = stored.body;
            }
            whole.push(page);
        }
        Ok(Some(whole))
    }

    /// Every page from `first_url` on, each with its URL.
    async fn pages(
        &self,
        first_url: &str,
        bodies_on_304: bool,
    ) -> Result<Vec<(String, Page)>, ForgeError> {
        let mut pages = Vec::new();
        let mut url = Some(first_url.to_owned());
        let origin = url::Url::parse(first_url).map(|u| u.origin()).ok();
        while let Some(current) = url {
            let same_origin = url::Url::parse(&current).ok().map(|u| u.origin());
            if same_origin.is_none() || same_origin != origin {
                return Err(ForgeError::Decode {
                    url: first_url.to_owned(),
                    message: format!(
                        "refusing a next page on another origin: {}",
                        one_line(&current, 200)
                    ),
                });
            }
            if pages.len() >= MAX_PAGES {
                return Err(ForgeError::Decode {
                    url: first_url.to_owned(),
                    message: format!("more than {MAX_PAGES} pages"),
                });
            }
            let page = self.get_with(&current, bodies_on_304).await?;
            url = page.next.clone();
            pages.push((current, page));
        }
        Ok(pages)
    }
}

/// Redirects are followed within one origin only (at most 10): a redirect to another
/// host would carry the forge credential there (reqwest strips `Authorization`
/// across hosts, not GitLab's `PRIVATE-TOKEN`).
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if !same {
            attempt.stop()
        } else if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// An error and its sources on one line (`a: b: c`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

fn status_error(url: &str, status: u16, headers: &HeaderMap, body: &[u8]) -> ForgeError {
    let message = error_message(body);
    let retry_after = header_string(headers, header::RETRY_AFTER)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let rate = parse_rate_limit(headers);
    let exhausted = rate.as_ref().and_then(|r| r.remaining) == Some(0);
    // GitHub's secondary limits: "You have exceeded a secondary rate limit" and the
    // old-style "You have triggered an abuse detection mechanism", often without a wait.
    let lower = message.to_ascii_lowercase();
    let says_rate_limit = lower.contains("rate limit") || lower.contains("abuse detection");
    match status {
        404 => ForgeError::NotFound {
            url: url.to_owned(),
            message: Some(message).filter(|m| !m.is_empty()),
        },
        429 => ForgeError::RateLimited {
            url: url.to_owned(),
            status,
            retry_after,
            reset_at: rate.and_then(|r| r.reset_at),
        },
        403 if retry_after.is_some() || exhausted || says_rate_limit => ForgeError::RateLimited {
            url: url.to_owned(),
            status,
            retry_after,
            reset_at: rate.and_then(|r| r.reset_at),
        },
        _ => ForgeError::Http {
            url: url.to_owned(),
            status,
            message,
        },
    }
}

/// The `message` of a JSON error body, or the start of the body as one line.
fn error_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(serde_json::Value::String(m)) = map.get("message")
    {
        return one_line(m, 200);
    }
    one_line(&String::from_utf8_lossy(body), 200)
}

/// Collapses whitespace and cuts `text` to `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > max {
        let mut cut: String = collapsed.chars().take(max).collect();
        cut.push('…');
        cut
    } else {
        collapsed
    }
}

/// Seconds since the epoch of a [`SystemTime`], saturating at 0.
pub fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn classifies_rate_limit_answers() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("30"));
        let e = status_error("u", 403, &h, b"{\"message\":\"secondary\"}");
        assert!(
            matches!(e, ForgeError::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 30)
        );
        let e = status_error(
            "u",
            403,
            &HeaderMap::new(),
            b"{\"message\":\"Resource not accessible\"}",
        );
        assert!(matches!(e, ForgeError::Http { status: 403, .. }));
        let e = status_error(
            "u",
            403,
            &HeaderMap::new(),
            b"{\"message\":\"You have triggered an abuse detection mechanism.\"}",
        );
        assert!(matches!(
            e,
            ForgeError::RateLimited {
                status: 403,
                retry_after: None,
                ..
            }
        ));
        let e = status_error(
            "u",
            502,
            &HeaderMap::new(),
            b"<html>\n<h1>Bad   gateway</h1></html>",
        );
        assert!(
            matches!(e, ForgeError::Http { ref message, .. } if message == "<html> <h1>Bad gateway</h1></html>")
        );
    }
}
