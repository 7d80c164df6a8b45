//! `GET /api/v1/events/stream` (SPEC §14, "Live"): the event history of
//! `/api/v1/events` as Server-Sent Events, so a page or a CLI follows deliveries and
//! results as they happen. Each event is `id:` (the event's id), `event:` (its
//! kind) and `data:` (its JSON, as `/api/v1/events` lists it). A client resumes
//! after the id in its `Last-Event-ID` header (a browser's `EventSource` sends it
//! when it reconnects) or in `?after=` (a page's first connection: the newest id
//! when it was rendered); without either the stream starts with the next event.
//! `?workspace=` keeps one workspace's events.
//!
//! Each client reads the store itself, in batches of [`BATCH`] after the last id it
//! sent, and waits on the store's newest-event notification in between: a slow
//! client holds one batch, however far behind it is. Comments keep an idle
//! connection alive; the stream ends when the loop stops (the end of
//! `forgewatch run`), so a graceful shutdown does not wait for it.
//!
//! Like every connection, a stream is bounded: it ends after [`STREAM_LIFE`] (an
//! `EventSource` reconnects by itself with `Last-Event-ID`, missing nothing), and
//! at most half of `http.max_connections` are open at once (503 beyond), so pages
//! left open never take every connection from webhooks, the CLI and `/healthz`.

use std::collections::VecDeque;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::engine::event::Request;
use crate::http::api::ApiState;
use crate::http::errors::error;
use crate::state::Store;
use crate::state::events::{Event, EventQuery};

/// The most events a client's stream reads from the store at once.
pub const BATCH: i64 = 100;

/// How often an idle stream sends a comment, so proxies and clients keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long one stream lasts; the client reconnects after it.
pub const STREAM_LIFE: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    after: Option<i64>,
    workspace: Option<String>,
}

/// `GET /api/v1/events/stream`.
pub async fn stream(
    State(api): State<ApiState>,
    headers: HeaderMap,
    Query(p): Query<StreamParams>,
) -> Response {
    let resume = match headers.get("last-event-id").map(|v| v.to_str()) {
        None => p.after,
        Some(Ok(id)) => match id.trim().parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("`Last-Event-ID` must be an event id, not {id:?}"),
                );
            }
        },
        Some(Err(_)) => {
            return error(StatusCode::BAD_REQUEST, "`Last-Event-ID` is not text");
        }
    };
    let store = api.current().store().clone();
    // Subscribed before the first read: an event recorded after it wakes the stream.
    let newest = store.subscribe_events();
    if store.event_streams() > api.max_streams {
        let mut refused = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} event streams are open already, the most there may be (half of http.max_connections)",
                api.max_streams
            ),
        );
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        return refused;
    }
    let last = match resume {
        Some(id) => id,
        None => match store.call(|b| b.newest_event_id()).await {
            Ok(id) => id,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
    };
    tracing::debug!(after = last, "an event stream opened");
    let follow = Follow {
        store,
        newest,
        last,
        workspace: p.workspace,
        batch: VecDeque::new(),
        requests: api.requests.clone(),
        ends: tokio::time::Instant::now() + STREAM_LIFE,
    };
    let events = futures_util::stream::unfold(follow, Follow::next);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

/// One client's position in the history.
struct Follow {
    store: Store,
    newest: watch::Receiver<i64>,
    /// The id of the last event sent (or the resume point).
    last: i64,
    workspace: Option<String>,
    /// Read, not sent yet: at most [`BATCH`].
    batch: VecDeque<Event>,
    /// Closed when the loop stops.
    requests: mpsc::Sender<Request>,
    /// When the stream ends ([`STREAM_LIFE`]).
    ends: tokio::time::Instant,
}

impl Follow {
    /// The next event and the position after it; `None` ends the stream (the loop
    /// stopped, or the store failed: the client reconnects with `Last-Event-ID`).
    async fn next(mut self) -> Option<(Result<SseEvent, axum::Error>, Follow)> {
        loop {
            if let Some(event) = self.batch.pop_front() {
                self.last = event.id;
                let sse = SseEvent::default()
                    .id(event.id.to_string())
                    .event(event.kind.replace(['\r', '\n'], " "))
                    .json_data(&event);
                return Some((sse, self));
            }
            if tokio::time::Instant::now() >= self.ends {
                return None;
            }
            // Seen: a notification from here on is about what this read may miss.
            self.newest.borrow_and_update();
            let query = EventQuery {
                after: Some(self.last),
                workspace: self.workspace.clone(),
                limit: Some(BATCH),
                since: None,
            };
            match self.store.events(&query).await {
                Ok(events) if !events.is_empty() => {
                    self.batch.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("an event stream cannot read the history: {e}");
                    return None;
                }
            }
            tokio::select! {
                changed = self.newest.changed() => changed.ok()?,
                () = self.requests.closed() => return None,
                () = tokio::time::sleep_until(self.ends) => return None,
            }
        }
    }
}
