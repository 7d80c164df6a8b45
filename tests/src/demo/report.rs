//! What the demo prints, one line per thing that happened, and the CI's side of the
//! loop: every change the Buildbot-style receiver accepts is printed (build key, why,
//! delivery id), and a second later its result is reported back to the daemon's
//! `POST /api/v1/results`, as Buildbot's `HttpStatusPush` would, so the status page
//! shows each build's outcome.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;

use crate::fake_ci::{Delivery, FakeCi};

/// How long the demo's pretend CI "builds" before it reports a result: a pause
/// the viewer sees (the delivered line, then the result), not a wait for anything.
const BUILD_TIME: Duration = Duration::from_secs(1);

/// Prints `MM:SS  KIND       TEXT` lines, the time counted from the demo's start.
#[derive(Clone, Copy)]
pub struct Printer {
    start: Instant,
}

impl Printer {
    pub fn new() -> Printer {
        Printer {
            start: Instant::now(),
        }
    }

    pub fn line(&self, kind: &str, text: &str) {
        let elapsed = self.start.elapsed().as_secs();
        println!("{:02}:{:02}  {kind:<9}  {text}", elapsed / 60, elapsed % 60);
    }
}

impl Default for Printer {
    fn default() -> Printer {
        Printer::new()
    }
}

/// The build key, the reason and the delivery id of a change the receiver accepted:
/// the `build_key` and `delivery_id` properties and the `comments` field (the daemon
/// puts its reason there).
pub fn describe(delivery: &Delivery) -> (String, String, String) {
    let properties = delivery.properties();
    let text = |name: &str| properties[name].as_str().unwrap_or("?").to_owned();
    let reason = delivery.field("comments").unwrap_or("?").to_owned();
    (text("build_key"), reason, text("delivery_id"))
}

/// A delivery id as printed: its first 8 digits.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The state the fake CI reports for a build: the one in `failing`, a failure.
fn outcome(key: &str, failing: &[String]) -> (&'static str, &'static str) {
    if failing.iter().any(|f| f == key) {
        ("failure", "2 tests failed")
    } else {
        ("success", "all tests passed")
    }
}

/// Prints each change `ci` accepts, counting them in `printed` (the script waits on
/// it, so that a change's triggers are printed before the next change), and reports
/// its result to the daemon at `api` (`http://ADDRESS`) with `secret` a second
/// later; builds in `failing` fail. Never returns: the demo drops it when it stops,
/// and the results still to come with it.
pub async fn follow(
    ci: &FakeCi,
    printed: &watch::Sender<usize>,
    printer: Printer,
    api: String,
    secret: String,
    failing: Vec<String>,
) -> std::convert::Infallible {
    let http = match reqwest::Client::builder().no_proxy().build() {
        Ok(http) => http,
        Err(e) => {
            printer.line("error", &format!("no HTTP client to report results: {e}"));
            reqwest::Client::new()
        }
    };
    let mut accepted = ci.subscribe();
    let mut results = tokio::task::JoinSet::new();
    loop {
        let done = *printed.borrow();
        for delivery in ci.accepted().iter().skip(done) {
            let (key, reason, id) = describe(delivery);
            printer.line(
                "delivered",
                &format!("{key}  ({reason}; delivery {}…)", short(&id)),
            );
            let (state, summary) = outcome(&key, &failing);
            let (http, api, secret) = (http.clone(), api.clone(), secret.clone());
            results.spawn(async move {
                tokio::time::sleep(BUILD_TIME).await;
                let body = json!({"delivery_id": id, "state": state, "summary": summary});
                let answer = http
                    .post(format!("{api}/api/v1/results"))
                    .bearer_auth(secret)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().is_success() => {
                        printer.line("result", &format!("{key}  {state}: {summary}"));
                    }
                    Ok(r) => {
                        printer.line("error", &format!("{key}: result refused ({})", r.status()))
                    }
                    Err(e) => {
                        printer.line("error", &format!("{key}: cannot report the result: {e}"))
                    }
                }
            });
            printed.send_modify(|n| *n += 1);
        }
        // Finished result tasks are reaped as they go.
        while results.try_join_next().is_some() {}
        if accepted.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
