//! End-to-end: `GET /api/v1/events/stream` (SPEC §14, "Live") of `forgewatch run`.
//! A client connected with `?after=0` receives the history's events in order, the
//! deliveries among them, and then a result as it is posted; a client connected
//! without a resume point receives only what happens next; a client reconnecting
//! with `Last-Event-ID` receives exactly the events it missed, then the next one.
//! Every event is `id:` = the event's id, `event:` = its kind and `data:` = its
//! JSON as `GET /api/v1/events` lists it. Open streams do not hold up the stop, and
//! they take at most half of `http.max_connections` (503 beyond).

#![allow(clippy::unwrap_used)] // helpers of the test below

mod support;

use forgewatch_tests::wait::eventually;
use serde_json::{Value, json};
use support::{DEADLINE, Env, Ws, post_result};

const SECRET: &str = "results-secret-for-sse";
const PR_KEY: &str = "app/pr/github.com/acme/app/1";
const MAINLINE: &str = "app/mainline";

/// One event of a stream.
#[derive(Debug)]
struct Received {
    id: i64,
    kind: String,
    data: Value,
}

/// A Server-Sent Events client over a streamed response.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    /// Connects to `url`, resuming after `last_event_id` if given.
    async fn connect(http: &reqwest::Client, url: &str, last_event_id: Option<i64>) -> Stream {
        let mut request = http.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream",
            "{url}"
        );
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), within the deadline.
    async fn next(&mut self) -> Received {
        tokio::time::timeout(DEADLINE, self.read())
            .await
            .expect("no event before the deadline")
    }

    async fn read(&mut self) -> Received {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    } else {
                        assert!(
                            line.is_empty() || line.starts_with(':'),
                            "unexpected line {line:?}"
                        );
                    }
                }
                if let (Some(id), Some(kind)) = (id, kind) {
                    let data = serde_json::from_str(&data).unwrap();
                    return Received { id, kind, data };
                }
            }
            let chunk = self
                .response
                .chunk()
                .await
                .unwrap()
                .expect("the stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// The delivery id the CI accepted for `key`.
fn delivery_id(env: &Env, key: &str) -> Option<String> {
    env.ci
        .accepted()
        .iter()
        .map(|d| d.properties())
        .find(|p| p["build_key"] == key)
        .map(|p| p["delivery_id"].as_str().unwrap().to_owned())
}

fn kinds(events: &[Received]) -> Vec<(&str, Option<&str>)> {
    events
        .iter()
        .map(|e| (e.kind.as_str(), e.data["build_key"].as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_follows_deliveries_and_results_and_resumes_after_the_last_event_id() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", "main");
    env.github.open_pr(
        "acme/app",
        forgewatch_tests::fake_github::NewPr::new("main", "feature"),
    );
    env.configure(&[Ws {
        name: "app",
        ci: "bb",
        packages: &[("app", "acme/app", "main")],
        pull_requests: true,
    }]);
    env.set_results_secret(SECRET);
    let daemon = env.command(&["run"]).spawn().unwrap();
    let base = format!("http://{}", env.listen_address().await);
    let stream_url = format!("{base}/api/v1/events/stream");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let (pr, mainline) = eventually(DEADLINE, || async {
        Some((delivery_id(&env, PR_KEY)?, delivery_id(&env, MAINLINE)?))
    })
    .await
    .expect("the PR and the mainline were never delivered");

    // From the start of the history: both deliveries, in the history's order.
    let mut first = Stream::connect(&http, &format!("{stream_url}?after=0"), None).await;
    let mut history = Vec::new();
    while kinds(&history)
        .iter()
        .filter(|(kind, _)| *kind == "delivered")
        .count()
        < 2
    {
        history.push(first.next().await);
    }
    let listed = http.get(format!("{base}/api/v1/events")).send().await;
    let listed: Value = serde_json::from_str(&listed.unwrap().text().await.unwrap()).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(
        history.iter().map(|e| &e.data).collect::<Vec<_>>(),
        listed.iter().take(history.len()).collect::<Vec<_>>(),
        "the stream's events are those of /api/v1/events, in order"
    );
    for e in &history {
        assert_eq!(e.data["id"], e.id);
        assert_eq!(e.data["kind"], e.kind.as_str());
    }
    let mut delivered: Vec<_> = kinds(&history)
        .into_iter()
        .filter(|(kind, _)| *kind == "delivered")
        .map(|(_, key)| key.unwrap())
        .collect();
    delivered.sort_unstable();
    assert_eq!(delivered, [MAINLINE, PR_KEY]);

    // A client without a resume point starts with the next event: the result.
    let mut live = Stream::connect(&http, &stream_url, None).await;
    let running = json!({"delivery_id": pr, "state": "running", "url": "http://ci/builds/1"});
    let (status, answer) = post_result(&http, &base, SECRET, &running).await;
    assert_eq!(status, 200, "{answer}");
    let result = first.next().await;
    assert_eq!(
        (result.kind.as_str(), result.data["build_key"].as_str()),
        ("result", Some(PR_KEY))
    );
    assert!(result.id > history.last().unwrap().id);
    assert_eq!(
        result.data["message"],
        format!("running http://ci/builds/1 (delivery {pr})")
    );
    let seen = live.next().await;
    assert_eq!((seen.id, &seen.data), (result.id, &result.data));
    let last_seen = result.id;
    drop(first);

    // Two results while the first client is away; it comes back with its last id.
    for (delivery, state) in [(&pr, "success"), (&mainline, "failure")] {
        let body = json!({"delivery_id": delivery, "state": state, "url": "http://ci/builds/2"});
        let (status, answer) = post_result(&http, &base, SECRET, &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let missed = [live.next().await, live.next().await];
    assert_eq!(
        kinds(&missed),
        [("result", Some(PR_KEY)), ("result", Some(MAINLINE))]
    );
    let mut back = Stream::connect(&http, &stream_url, Some(last_seen)).await;
    for expected in &missed {
        let got = back.next().await;
        assert_eq!((got.id, &got.data), (expected.id, &expected.data));
    }
    // And then the next event, nothing in between.
    let body = json!({"delivery_id": mainline, "state": "error", "url": "http://ci/builds/3"});
    let (status, answer) = post_result(&http, &base, SECRET, &body).await;
    assert_eq!(status, 200, "{answer}");
    let next = back.next().await;
    assert_eq!(
        kinds(std::slice::from_ref(&next)),
        [("result", Some(MAINLINE))]
    );
    assert_eq!(
        next.data["message"],
        format!("error http://ci/builds/3 (delivery {mainline})")
    );
    assert_eq!(live.next().await.id, next.id);

    // A resume point that is not an id is refused.
    let refused = http
        .get(&stream_url)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let refused: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(
        refused["error"],
        "`Last-Event-ID` must be an event id, not \"yesterday\""
    );

    // The open streams (`live`, `back`) do not hold up the stop.
    support::stop(daemon).await;
    drop((live, back));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_take_at_most_half_the_connections() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", "main");
    env.configure(&[Ws {
        name: "app",
        ci: "bb",
        packages: &[("app", "acme/app", "main")],
        pull_requests: false,
    }]);
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replacen(
            "  listen: 127.0.0.1:0\n",
            "  listen: 127.0.0.1:0\n  max_connections: 4\n",
            1,
        );
    std::fs::write(env.config_path(), config).unwrap();
    let daemon = env.command(&["run"]).spawn().unwrap();
    let base = format!("http://{}", env.listen_address().await);
    let stream_url = format!("{base}/api/v1/events/stream");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let open = [
        Stream::connect(&http, &stream_url, None).await,
        Stream::connect(&http, &stream_url, None).await,
    ];
    let refused = http.get(&stream_url).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "10");
    let refused: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(
        refused["error"],
        "2 event streams are open already, the most there may be (half of http.max_connections)"
    );
    // The other half of the connections still serves.
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    support::stop(daemon).await;
    drop(open);
}
