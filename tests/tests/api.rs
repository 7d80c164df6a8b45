//! End-to-end: `forgewatch run` as a service — the HTTP API (health, readiness,
//! status, events, metrics, manual triggers behind the admin token), signed
//! webhooks that make exactly one extra poll of their repository, reloads (an
//! invalid file keeps the running configuration; a new workspace triggers only
//! itself), and systemd's notify protocol on a fake `NOTIFY_SOCKET`.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use forgewatch_tests::wait::eventually;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use support::{DEADLINE, Env, Ws};

const MAIN: &str = "main";

struct Daemon {
    child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Daemon {
    async fn start(env: &Env, cmd: Option<tokio::process::Command>) -> Daemon {
        let mut cmd = cmd.unwrap_or_else(|| env.command(&["run"]));
        let child = cmd.spawn().unwrap();
        let address = env.listen_address().await;
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Daemon {
            child,
            base: format!("http://{address}"),
            http,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
        let mut r = self.http.post(format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The status of a POST whose body is read by the server while it is still
    /// being sent (a refusal of an oversized body arrives before the upload ends).
    async fn post_raw_status(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.base.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let writer = tokio::spawn(async move {
            let _ = write.write_all(head.as_bytes()).await;
            let _ = write.write_all(&body).await;
            write
        });
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(DEADLINE, read.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "the server closed without answering");
            answer.extend_from_slice(&buf[..n]);
        }
        writer.abort();
        let status = String::from_utf8_lossy(&answer);
        status.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    async fn ready(&self) {
        eventually(DEADLINE, || async {
            (self.get("/readyz").await.0 == 200).then_some(())
        })
        .await
        .expect("never ready");
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id().unwrap() as i32), signal).unwrap();
    }

    async fn stop(self) {
        support::stop(self.child).await;
    }
}

fn configure(env: &Env, interval: &str) {
    env.github.create_repo("acme/app", MAIN);
    env.github.create_repo("acme/other", MAIN);
    env.configure(&[
        Ws {
            name: "app",
            ci: "bb",
            packages: &[("app", "acme/app", MAIN)],
            pull_requests: true,
        },
        Ws {
            name: "other",
            ci: "bb",
            packages: &[("other", "acme/other", MAIN)],
            pull_requests: true,
        },
    ]);
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("poll_interval: 1s", &format!("poll_interval: {interval}"));
    std::fs::write(env.config_path(), config).unwrap();
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reports_status_events_and_metrics_and_triggers_on_demand() {
    let env = Env::new().await;
    configure(&env, "10m");
    let daemon = Daemon::start(&env, None).await;
    assert_eq!(daemon.get("/healthz").await.0, 200);
    daemon.ready().await;
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);

    // The daemon records an accepted delivery just after the CI has it.
    let status = eventually(DEADLINE, || async {
        let status = daemon.json("/api/v1/status").await;
        let build = &status["workspaces"]["app"]["builds"][0];
        (build["delivered_fingerprint"] == build["fingerprint"]).then_some(status)
    })
    .await
    .expect("the delivery shows in the status");
    assert_eq!(status["ready"], true);
    let app = &status["workspaces"]["app"];
    assert_eq!(app["packages"][0]["repository"], "github.com/acme/app");
    assert_eq!(app["builds"][0]["build_key"], "app/mainline");
    assert_eq!(
        app["builds"][0]["delivered_fingerprint"],
        app["builds"][0]["fingerprint"]
    );
    let list = daemon.json("/api/v1/workspaces").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let ws = daemon.json("/api/v1/workspaces/app").await;
    assert_eq!(ws["name"], "app");
    assert_eq!(daemon.get("/api/v1/workspaces/nope").await.0, 404);
    let (status, body) = daemon.get("/api/v1/jobs/42").await;
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["error"]
                .as_str()
                .is_some()
        ),
        (404, true)
    );

    let events = daemon.json("/api/v1/events").await;
    let delivered: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "delivered")
        .collect();
    assert_eq!(delivered.len(), 2);
    let since = delivered[1]["time"].as_str().unwrap();
    let later = daemon.json(&format!("/api/v1/events?since={since}")).await;
    assert!(
        later
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["time"].as_str().unwrap() > since)
    );
    let filtered = daemon.json("/api/v1/events?workspace=other").await;
    assert!(
        filtered
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["workspace"] == "other")
    );

    let (status, metrics) = daemon.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("forgewatch_requests_total{forge=\"github\",status=\"fresh\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("forgewatch_builds_triggered_total 2"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.starts_with("forgewatch_"))
    );

    // A manual trigger: refused without the admin token, then sent with a fresh id.
    let (status, _) = daemon
        .post("/api/v1/workspaces/app/trigger", &[], vec![])
        .await;
    assert_eq!(status, 401);
    let bearer = format!("Bearer {}", support::ADMIN_TOKEN);
    let (status, body) = daemon
        .post(
            "/api/v1/workspaces/app/trigger",
            &[("authorization", &bearer)],
            vec![],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert!(env.ci.wait_for_accepted(3, DEADLINE).await);
    let third = env.ci.accepted()[2].properties();
    assert_eq!(third["build_key"], "app/mainline");
    assert_eq!(third["delivery_id"], answer["delivery_id"]);
    let first = env
        .ci
        .accepted()
        .iter()
        .find(|d| d.properties()["build_key"] == "app/mainline")
        .unwrap()
        .properties();
    assert_ne!(
        first["delivery_id"], third["delivery_id"],
        "a manual trigger has a new delivery id"
    );

    let (status, page) = daemon.get("/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<h2>app</h2>")
            && page.contains("<h2>other</h2>")
            && page.contains("app/mainline")
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_polls_only_its_repository_once_and_bad_ones_are_refused() {
    let env = Env::new().await;
    configure(&env, "10m");
    let daemon = Daemon::start(&env, None).await;
    daemon.ready().await;
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
    env.github.clear_requests();

    let head = env.github.push("acme/app", MAIN);
    let body = br#"{"ref":"refs/heads/main","repository":{"full_name":"acme/app"}}"#.to_vec();
    for (headers, expected) in [
        (vec![], 401),
        (vec![("x-hub-signature-256", "sha256=00")], 401),
        (
            vec![("x-hub-signature-256", sign("wrong", &body).leak() as &str)],
            401,
        ),
    ] {
        let (status, _) = daemon.post("/hooks/github", &headers, body.clone()).await;
        assert_eq!(status, expected);
    }
    // Each forge's proof on its own endpoint only: GitHub's signature is no GitLab
    // token, nor GitLab's token a GitHub signature.
    let signature = sign(support::GITHUB_HOOK_SECRET, &body);
    let github_signed = [("x-hub-signature-256", &signature[..])];
    let gitlab_token = [("x-gitlab-token", support::GITLAB_HOOK_SECRET)];
    let (status, reply) = daemon
        .post("/hooks/gitlab", &github_signed, body.clone())
        .await;
    assert_eq!(
        (status, reply.as_str()),
        (401, r#"{"error":"missing or invalid webhook signature"}"#)
    );
    let (status, _) = daemon
        .post("/hooks/github", &gitlab_token, body.clone())
        .await;
    assert_eq!(status, 401);
    // Signed, but not JSON.
    let garbage = b"{not json".to_vec();
    let signature = sign(support::GITHUB_HOOK_SECRET, &garbage);
    let (status, reply) = daemon
        .post(
            "/hooks/github",
            &[("x-hub-signature-256", &signature)],
            garbage,
        )
        .await;
    assert_eq!(
        (status, reply.as_str()),
        (400, r#"{"error":"the body is not JSON"}"#)
    );
    let huge = vec![b'x'; 2 * 1024 * 1024];
    let signature = sign(support::GITHUB_HOOK_SECRET, &huge);
    let status = daemon
        .post_raw_status(
            "/hooks/github",
            &[("x-hub-signature-256", &signature)],
            huge,
        )
        .await;
    assert_eq!(status, 413);
    assert_eq!(
        env.github.requests().len(),
        0,
        "nothing polled for refused hooks"
    );

    let signature = sign(support::GITHUB_HOOK_SECRET, &body);
    let (status, _) = daemon
        .post(
            "/hooks/github",
            &[
                ("x-hub-signature-256", &signature),
                ("x-github-event", "push"),
            ],
            body,
        )
        .await;
    assert_eq!(status, 202);
    assert!(env.ci.wait_for_accepted(3, DEADLINE).await);
    assert_eq!(env.ci.accepted()[2].field("revision"), Some(head.as_str()));
    let requests = env.github.requests();
    assert_eq!(
        requests.len(),
        2,
        "one extra poll of that repository: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.path.starts_with("/repos/acme/app/"))
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_keep_the_running_configuration_or_add_only_what_changed() {
    let env = Env::new().await;
    configure(&env, "1s");
    let daemon = Daemon::start(&env, None).await;
    daemon.ready().await;
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
    let good = std::fs::read_to_string(env.config_path()).unwrap();

    // An invalid file: refused (SIGHUP, then the API), the old configuration
    // keeps serving.
    std::fs::write(
        env.config_path(),
        good.replace("poll_interval: 1s", "poll_interval: soon"),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    eventually(DEADLINE, || async {
        (!daemon.json("/api/v1/status").await["config_error"].is_null()).then_some(())
    })
    .await
    .expect("the refused reload never showed");
    let served = env.ci.accepted().len();
    let seen = env.github.requests().len();
    assert!(
        env.github.wait_for_requests(seen + 4, DEADLINE).await,
        "still polling"
    );
    assert_eq!(env.ci.accepted().len(), served);
    let bearer = format!("Bearer {}", support::ADMIN_TOKEN);
    let (status, body) = daemon
        .post("/api/v1/reload", &[("authorization", &bearer)], vec![])
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("invalid duration `soon`"), "{body}");
    let status = daemon.json("/api/v1/status").await;
    assert!(status["config_error"].as_str().unwrap().contains("soon"));
    // A count `check` once accepted and the reload then panicked on (issue 14).
    let huge = good.replacen(
        "max_concurrency: 4",
        "max_concurrency: 4611686018427387904",
        1,
    );
    std::fs::write(env.config_path(), huge).unwrap();
    let (status, body) = daemon
        .post("/api/v1/reload", &[("authorization", &bearer)], vec![])
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("`max_concurrency` must be from 1 to 256, not 4611686018427387904"),
        "{body}"
    );
    let seen = env.github.requests().len();
    assert!(
        env.github.wait_for_requests(seen + 4, DEADLINE).await,
        "still polling after the refused reload"
    );
    assert_eq!(env.ci.accepted().len(), served);

    // SIGHUP with a new workspace: only that one is triggered.
    env.github.create_repo("acme/new", MAIN);
    let added = format!(
        "{good}  - name: added\n    ci: bb\n    packages:\n      - {{ name: new, repo: \"https://github.com/acme/new\", branch: main }}\n"
    );
    std::fs::write(env.config_path(), added).unwrap();
    daemon.signal(Signal::SIGHUP);
    assert!(env.ci.wait_for_accepted(3, DEADLINE).await);
    assert_eq!(env.delivered_keys(2), ["added/mainline"]);
    // Some more cycles: nothing else is sent.
    let seen = env.github.requests().len();
    assert!(env.github.wait_for_requests(seen + 12, DEADLINE).await);
    assert_eq!(env.ci.accepted().len(), 3);
    daemon.stop().await;
}

/// Every counter of `/metrics` (`*_total` samples), by sample name and labels.
fn counters(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(name, _)| name.split('{').next().unwrap().ends_with("_total"))
        .map(|(name, value)| (name.to_owned(), value.parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_never_go_backwards_on_a_reload_even_of_a_changed_forge() {
    let env = Env::new().await;
    configure(&env, "1s");
    let daemon = Daemon::start(&env, None).await;
    daemon.ready().await;
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
    let seen = env.github.requests().len();
    assert!(env.github.wait_for_requests(seen + 4, DEADLINE).await);
    let before = counters(&daemon.get("/metrics").await.1);
    let requests = "forgewatch_requests_total{forge=\"github\",status=\"not_modified\"}";
    assert!(before[requests] > 0.0, "{before:#?}");

    // One reload that changes the GitHub forge's settings, one that changes nothing.
    let good = std::fs::read_to_string(env.config_path()).unwrap();
    let changed = good.replacen("max_concurrency: 4", "max_concurrency: 3", 1);
    assert_ne!(changed, good);
    for (config, reloads) in [(changed, 1), (good, 2)] {
        std::fs::write(env.config_path(), config).unwrap();
        daemon.signal(Signal::SIGHUP);
        eventually(DEADLINE, || async {
            let events = daemon.json("/api/v1/events").await;
            let done = events
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "reloaded")
                .count();
            (done == reloads).then_some(())
        })
        .await
        .expect("the reload never happened");
        // Cycles of the new configuration have refreshed the figures.
        let seen = env.github.requests().len();
        assert!(env.github.wait_for_requests(seen + 4, DEADLINE).await);
        let after = counters(&daemon.get("/metrics").await.1);
        for (name, value) in &before {
            let now = after.get(name).copied().unwrap_or(0.0);
            assert!(now >= *value, "{name} went from {value} to {now}");
        }
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_status_watchdog_reloading_and_stopping_in_order() {
    let env = Env::new().await;
    configure(&env, "1s");
    let socket_path = env.dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut cmd = env.command(&["run"]);
    cmd.env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000");
    let daemon = Daemon::start(&env, Some(cmd)).await;
    let mut messages: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut receive = async |messages: &mut Vec<String>, until: &str| {
        loop {
            let n = tokio::time::timeout(DEADLINE, socket.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = m.starts_with(until);
            messages.push(m);
            if done {
                return;
            }
        }
    };
    receive(&mut messages, "READY=1").await;
    receive(&mut messages, "STATUS=").await;
    receive(&mut messages, "WATCHDOG=1").await;
    daemon.signal(Signal::SIGHUP);
    receive(&mut messages, "RELOADING=1").await;
    assert!(messages.last().unwrap().contains("MONOTONIC_USEC="));
    receive(&mut messages, "READY=1").await;
    let status = daemon.json("/api/v1/status").await;
    assert_eq!(status["config_error"], Value::Null);
    let mut daemon = daemon;
    daemon.signal(Signal::SIGTERM);
    receive(&mut messages, "STOPPING=1").await;
    assert_eq!(
        tokio::time::timeout(DEADLINE, daemon.child.wait())
            .await
            .unwrap()
            .unwrap()
            .code(),
        Some(0)
    );
    assert_eq!(messages.first().map(String::as_str), Some("READY=1"));
}
