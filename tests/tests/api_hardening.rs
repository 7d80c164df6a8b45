//! End-to-end: the HTTP API's refusals (issue 14, items 7, 9 and 10) — every error
//! is a JSON `{"error": …}` whatever rejected the request (routing, method, path or
//! query parsing, body and URI limits, the token, the signature, the `Host`), a
//! body over 1 MiB is refused on every endpoint, a webhook delivery redelivered
//! polls nothing more, and only the daemon's own names are accepted as `Host`.
//!
//! Requests are written byte by byte on a fresh connection, so a test chooses what
//! a client library would not let it (the `Host`, an over-long URI, a chunked body).

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use serde_json::Value;
use support::{DEADLINE, Env, Kind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAIN: &str = "main";
const LIDAR: &str = "acme/robots/lidar";
const MIB: usize = 1024 * 1024;

/// A request as written on the wire.
#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    target: String,
    /// The `Host` header: empty (the default) for the listen address, `None` for
    /// none at all.
    host: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
}

fn req(method: &'static str, target: impl Into<String>) -> Req {
    Req {
        method,
        target: target.into(),
        host: Some(String::new()),
        headers: Vec::new(),
        body: Vec::new(),
        chunked: false,
    }
}

impl Req {
    fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    fn host(mut self, host: Option<&str>) -> Req {
        self.host = host.map(str::to_owned);
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = body.into();
        self
    }
    fn chunked(mut self) -> Req {
        self.chunked = true;
        self
    }
    fn admin(self) -> Req {
        let bearer = format!("Bearer {}", support::ADMIN_TOKEN);
        self.header("authorization", &bearer)
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: String,
}

impl Answer {
    /// The message of a JSON error: the body is exactly `{"error": "…"}`.
    fn error(&self) -> Option<String> {
        if self.content_type.as_deref() != Some("application/json") {
            return None;
        }
        let value: Value = serde_json::from_str(&self.body).ok()?;
        let object = value.as_object().filter(|o| o.len() == 1)?;
        let message = object.get("error")?.as_str()?;
        (!message.is_empty()).then(|| message.to_owned())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

struct Daemon {
    child: tokio::process::Child,
    address: String,
}

impl Daemon {
    async fn start(env: &Env) -> Daemon {
        let child = env.command(&["run"]).spawn().unwrap();
        let address = env.listen_address().await;
        let daemon = Daemon { child, address };
        forgewatch_tests::wait::eventually(DEADLINE, || async {
            (daemon.send(req("GET", "/readyz")).await.status == 200).then_some(())
        })
        .await
        .expect("never ready");
        daemon
    }

    fn port(&self) -> u16 {
        self.address.rsplit_once(':').unwrap().1.parse().unwrap()
    }

    /// Sends `r` on a new connection (`connection: close`) and reads the answer to
    /// the end, while the body is still being written (a refusal of an oversized
    /// body comes before the upload ends).
    async fn send(&self, r: Req) -> Answer {
        let stream = tokio::net::TcpStream::connect(&self.address).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let mut head = format!(
            "{} {} HTTP/1.1\r\nconnection: close\r\n",
            r.method, r.target
        );
        match r.host.as_deref() {
            Some("") => head.push_str(&format!("host: {}\r\n", self.address)),
            Some(host) => head.push_str(&format!("host: {host}\r\n")),
            None => {}
        }
        let mut body = r.body;
        if r.chunked {
            head.push_str("transfer-encoding: chunked\r\n");
            let mut chunk = format!("{:x}\r\n", body.len()).into_bytes();
            chunk.append(&mut body);
            chunk.extend_from_slice(b"\r\n0\r\n\r\n");
            body = chunk;
        } else if !body.is_empty() {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        for (name, value) in &r.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let writer = tokio::spawn(async move {
            let _ = write.write_all(head.as_bytes()).await;
            let _ = write.write_all(&body).await;
            write
        });
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(DEADLINE, read.read(&mut buf))
                .await
                .expect("no answer before the deadline")
            {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        writer.abort();
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no answer: {text:?}"))
            .parse()
            .unwrap();
        let content_type = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        });
        Answer {
            status,
            content_type,
            body: body.to_owned(),
        }
    }

    async fn reloads(&self) -> usize {
        let events = self.send(req("GET", "/api/v1/events")).await.json();
        let events = events.as_array().unwrap();
        events.iter().filter(|e| e["kind"] == "reloaded").count()
    }

    async fn stop(self) {
        support::stop(self.child).await;
    }
}

/// Workspace `app` (GitHub `acme/app`) and `lidar` (a GitLab project), polled every
/// ten minutes (only webhooks poll in between); `http` gets `more` lines.
fn configure(env: &Env, more_http: &str) {
    env.configure_app_and_lidar();
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("poll_interval: 1s", "poll_interval: 10m")
        .replace("http:\n", &format!("http:\n{more_http}"));
    std::fs::write(env.config_path(), config).unwrap();
}

const APP_PUSH: &str = r#"{"ref":"refs/heads/main","repository":{"full_name":"acme/app"}}"#;
const LIDAR_PUSH: &str =
    r#"{"object_kind":"push","project":{"path_with_namespace":"acme/robots/lidar"}}"#;

/// A push hook as GitHub sends it, with its delivery id.
fn github_push(delivery: &str) -> Req {
    req("POST", "/hooks/github")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            &support::github_signature(APP_PUSH.as_bytes()),
        )
        .header("content-type", "application/json")
        .body(APP_PUSH)
}

/// A push hook as GitLab sends it, with its event UUID.
fn gitlab_push(delivery: &str) -> Req {
    req("POST", "/hooks/gitlab")
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-event-uuid", delivery)
        .header("x-gitlab-token", support::GITLAB_HOOK_SECRET)
        .header("content-type", "application/json")
        .body(LIDAR_PUSH)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_json_error_and_no_body_over_a_mebibyte_is_taken() {
    let env = Env::new().await;
    configure(&env, "");
    let daemon = Daemon::start(&env).await;
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
    env.clear_requests();
    let big = vec![b'{'; 2 * MIB];
    let foreign = format!("evil.example:{}", daemon.port());
    let cases: Vec<(Req, u16)> = vec![
        (req("GET", "/nope"), 404),
        (req("GET", "/api/v1/workspaces/nope"), 404),
        (req("GET", "/api/v1/jobs/42"), 404),
        // Path and query parsing.
        (req("GET", "/api/v1/jobs/abc"), 400),
        (req("GET", "/api/v1/jobs/99999999999999999999999"), 400),
        (req("GET", "/api/v1/jobs/abc/log"), 400),
        (req("GET", "/api/v1/workspaces/%FF"), 400),
        (req("GET", "/api/v1/events?limit=many"), 400),
        (req("GET", "/api/v1/events?since=yesterday"), 400),
        // Methods.
        (req("DELETE", "/api/v1/status"), 405),
        (req("GET", "/api/v1/reload"), 405),
        (req("POST", "/healthz"), 405),
        (req("PUT", "/hooks/github"), 405),
        // The admin token and the webhook signature.
        (req("POST", "/api/v1/reload"), 401),
        (req("POST", "/api/v1/workspaces/app/trigger"), 401),
        (req("POST", "/hooks/github").body(APP_PUSH), 401),
        (
            req("POST", "/api/v1/workspaces/app/trigger")
                .admin()
                .body("{not json"),
            400,
        ),
        (req("POST", "/api/v1/workspaces/nope/trigger").admin(), 404),
        // Bodies over 1 MiB, on every endpoint, announced or chunked.
        (
            req("POST", "/api/v1/reload")
                .admin()
                .body(vec![b' '; 20 * MIB]),
            413,
        ),
        (
            req("POST", "/api/v1/reload")
                .admin()
                .body(big.clone())
                .chunked(),
            413,
        ),
        (req("POST", "/hooks/github").body(big.clone()), 413),
        (
            req("POST", "/api/v1/workspaces/app/trigger")
                .admin()
                .body(big.clone()),
            413,
        ),
        (req("GET", "/healthz").body(big.clone()), 413),
        (req("GET", "/api/v1/status").body(big).chunked(), 413),
        // URIs over 8 KiB.
        (
            req("GET", format!("/api/v1/status?pad={}", "x".repeat(9000))),
            414,
        ),
        (req("GET", format!("/{}", "x".repeat(9000))), 414),
        // A name that is not the daemon's (DNS rebinding).
        (req("GET", "/api/v1/status").host(Some(&foreign)), 421),
        (
            req("POST", "/api/v1/reload").admin().host(Some(&foreign)),
            421,
        ),
    ];
    let mut wrong = Vec::new();
    for (r, status) in cases {
        let answer = daemon.send(r.clone()).await;
        if answer.status != status || answer.error().is_none() {
            wrong.push(format!(
                "{} {:.60} → {status} expected, got {answer:.200?}",
                r.method, r.target
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Past 64 KiB hyper answers before any handler runs: 414 with an empty body.
    let answer = daemon
        .send(req("GET", format!("/?{}", "x".repeat(70_000))))
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (414, ""));

    // None of the refused reloads, triggers or hooks did anything.
    assert_eq!(daemon.reloads().await, 0);
    assert_eq!(env.ci.accepted().len(), 2);
    assert_eq!(env.requests().len(), 0);
    // A reload with a body within the limit is still a reload.
    let answer = daemon
        .send(req("POST", "/api/v1/reload").admin().body("{}"))
        .await;
    assert_eq!(
        (answer.status, answer.json()),
        (200, serde_json::json!({"reloaded": true}))
    );
    assert_eq!(daemon.reloads().await, 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_webhook_polls_once_and_a_new_delivery_polls_again() {
    let env = Env::new().await;
    configure(&env, "");
    let daemon = Daemon::start(&env).await;
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
    env.clear_requests();
    for (n, kind) in [Kind::GitHub, Kind::GitLab].into_iter().enumerate() {
        let (hook, path, repo): (fn(&str) -> Req, _, _) = match kind {
            Kind::GitHub => (github_push, "acme/app", "github.com/acme/app"),
            Kind::GitLab => (gitlab_push, LIDAR, "gitlab.example.org/acme/robots/lidar"),
        };
        let forge = env.forge(kind);
        let head = forge.push(path, MAIN);
        let first = format!("3f6e1c2a-0000-4000-8000-00000000000{n}");
        let answer = daemon.send(hook(&first)).await;
        assert_eq!(
            (answer.status, answer.json()),
            (202, serde_json::json!({"polled": repo}))
        );
        assert!(env.ci.wait_for_accepted(3 + n, DEADLINE).await);
        assert_eq!(
            env.ci.accepted()[2 + n].field("revision"),
            Some(head.as_str())
        );
        // The same delivery 199 times more: accepted, nothing polled.
        for _ in 0..199 {
            let answer = daemon.send(hook(&first)).await;
            assert_eq!(
                (answer.status, answer.json()),
                (
                    202,
                    serde_json::json!({"polled": false, "redelivery": true})
                )
            );
        }
        // A redelivery still has to be signed; an id seen only unsigned is not
        // remembered.
        let second = format!("3f6e1c2a-0000-4000-8000-00000000001{n}");
        for delivery in [&first, &second] {
            let mut unsigned = hook(delivery);
            unsigned
                .headers
                .retain(|(name, _)| !name.starts_with("x-hub") && name != "x-gitlab-token");
            assert_eq!(daemon.send(unsigned).await.status, 401);
        }
        // Another delivery of the same event polls again.
        let answer = daemon.send(hook(&second)).await;
        assert_eq!(
            (answer.status, answer.json()),
            (202, serde_json::json!({"polled": repo}))
        );
        forgewatch_tests::wait::eventually(DEADLINE, || async {
            (forge.requests().len() >= 4).then_some(())
        })
        .await
        .expect("the second delivery never polled");
    }
    daemon.stop().await;
    // Two polls of each repository (two requests each: branch and pull requests),
    // nothing else; no build was delivered twice.
    for (kind, prefix) in [
        (Kind::GitHub, "/repos/acme/app/"),
        (Kind::GitLab, "/api/v4/projects/acme%2Frobots%2Flidar/"),
    ] {
        let requests = env.forge(kind).requests();
        assert_eq!(requests.len(), 4, "{kind:?}: {requests:#?}");
        assert!(
            requests.iter().all(|r| r.path.starts_with(prefix)),
            "{requests:#?}"
        );
    }
    assert_eq!(env.ci.accepted().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_listen_address_localhost_and_the_public_url_are_hosts() {
    let env = Env::new().await;
    configure(
        &env,
        "  public_url: https://ForgeWatch.example.org/forgewatch/\n",
    );
    let daemon = Daemon::start(&env).await;
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
    env.clear_requests();
    let port = daemon.port();
    for (host, status) in [
        (Some(format!("127.0.0.1:{port}")), 200),
        (Some(format!("localhost:{port}")), 200),
        (Some(format!("LocalHost:{port}")), 200),
        (Some("forgewatch.example.org".to_owned()), 200),
        (Some("forgewatch.example.org:443".to_owned()), 200),
        // No browser sends a request without a `Host`: nothing to rebind.
        (None, 200),
        (Some(format!("127.0.0.1:{}", port.wrapping_add(1))), 421),
        (Some("127.0.0.1".to_owned()), 421),
        (Some(format!("127.0.0.2:{port}")), 421),
        (Some(format!("evil.example:{port}")), 421),
        (Some(format!("localhost.evil.example:{port}")), 421),
        (Some("forgewatch.example.org:8443".to_owned()), 421),
        (Some("forgewatch.example.org.evil.example".to_owned()), 421),
        (Some("not a host".to_owned()), 421),
    ] {
        let answer = daemon
            .send(req("GET", "/api/v1/status").host(host.as_deref()))
            .await;
        assert_eq!(answer.status, status, "{host:?}: {answer:?}");
        if status == 421 {
            assert!(answer.error().unwrap().contains("Host"), "{answer:?}");
        }
    }
    // A signed webhook through the reverse proxy of `public_url` polls; the same
    // with a foreign name does nothing.
    let head = env.github.push("acme/app", MAIN);
    let foreign = github_push("d1").host(Some("evil.example"));
    let answer = daemon.send(foreign).await;
    assert_eq!((answer.status, answer.error().is_some()), (421, true));
    let proxied = github_push("d1").host(Some("forgewatch.example.org"));
    assert_eq!(daemon.send(proxied).await.status, 202);
    assert!(env.ci.wait_for_accepted(3, DEADLINE).await);
    assert_eq!(env.ci.accepted()[2].field("revision"), Some(head.as_str()));
    assert_eq!(env.github.requests().len(), 2);
    // The command-line client talks to the listen address.
    let run = env.forgewatch(&["status"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    daemon.stop().await;
}
