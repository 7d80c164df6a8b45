//! Commit status posts through the real GitHub and GitLab clients against a scripted
//! HTTP server on 127.0.0.1: what each client sends (route, credential, JSON body with
//! the forge's state names, the description cut to 140 characters, no `target_url`
//! when there is none) and what each answer becomes — GitLab's "Cannot transition
//! status" 400 is done, a 401/403/404 is `NoPermission`, a 403 secondary limit pauses
//! the forge like a GET's would, a 502 is `Http` — and that the write budget refuses
//! a post without sending it while reads go on.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use forgewatch_adapters::forge::{Forge, ForgeError, RequestStats};
use forgewatch_adapters::github::{GitHubClient, GitHubOptions};
use forgewatch_adapters::gitlab::{GitLabClient, GitLabOptions};
use forgewatch_adapters::governor::RatePolicy;
use forgewatch_adapters::http::{ClientOptions, MemoryStore};
use forgewatch_adapters::results::{BuildState, CommitStatus};
use forgewatch_adapters::{RepoId, Secret};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "t0ken";

/// One scripted answer: status and JSON body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: Value,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body,
    }
}

/// What the server saw of one request.
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn answer(State(script): State<Script>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    script.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body,
    });
    let Some(reply) = script.replies.lock().unwrap().pop_front() else {
        return (StatusCode::IM_A_TEAPOT, "unscripted request").into_response();
    };
    let mut response = Response::builder()
        .status(reply.status)
        .header("content-type", "application/json");
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body.to_string())).unwrap()
}

struct Server {
    url: String,
    script: Script,
}

impl Server {
    async fn start(replies: Vec<Reply>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let script = Script::default();
        script.replies.lock().unwrap().extend(replies);
        let app = Router::new().fallback(answer).with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { url, script }
    }

    /// Method, path and JSON body of every request so far.
    fn seen(&self) -> Vec<(String, String, Value)> {
        let seen = self.script.seen.lock().unwrap();
        let body = |b: &Bytes| serde_json::from_slice(b).unwrap_or(Value::Null);
        seen.iter()
            .map(|s| (s.method.clone(), s.path.clone(), body(&s.body)))
            .collect()
    }

    fn header(&self, index: usize, name: &str) -> Option<String> {
        let seen = self.script.seen.lock().unwrap();
        let value = seen[index].headers.get(name)?;
        Some(value.to_str().unwrap().to_owned())
    }
}

fn options(rate: RatePolicy) -> ClientOptions {
    ClientOptions {
        rate,
        ..ClientOptions::default()
    }
}

fn github(server: &Server, rate: RatePolicy) -> GitHubClient {
    let options = GitHubOptions {
        host: "github.com".into(),
        api_url: server.url.clone(),
        token: Some(Secret::new(TOKEN.to_owned())),
        client: options(rate),
    };
    GitHubClient::new(options, Arc::new(MemoryStore::default())).unwrap()
}

fn gitlab(server: &Server) -> GitLabClient {
    let options = GitLabOptions {
        host: "gitlab.example.org".into(),
        api_url: format!("{}/api/v4", server.url),
        token: Some(Secret::new(TOKEN.to_owned())),
        client: options(RatePolicy::default()),
    };
    GitLabClient::new(options, Arc::new(MemoryStore::default())).unwrap()
}

fn gh_repo() -> RepoId {
    RepoId::parse("https://github.com/acme/repo").unwrap()
}

fn gl_repo() -> RepoId {
    RepoId::parse("https://gitlab.example.org/sensors/drivers/lidar-x").unwrap()
}

fn status(state: BuildState, target_url: Option<&str>, description: &str) -> CommitStatus {
    CommitStatus {
        state,
        target_url: target_url.map(str::to_owned),
        description: description.to_owned(),
        context: "forgewatch/mainline".to_owned(),
    }
}

/// The client's (fresh, failed) requests; none answered 304, and each has its duration.
fn counted(stats: RequestStats) -> (u64, u64) {
    assert_eq!(stats.not_modified, 0);
    assert_eq!(stats.durations.count, stats.total());
    (stats.fresh, stats.failed)
}

const GH_PATH: &str = "/repos/acme/repo/statuses/0123456789abcdef0123456789abcdef01234567";
const GL_PATH: &str = "/api/v4/projects/sensors%2Fdrivers%2Flidar-x/statuses/0123456789abcdef0123456789abcdef01234567";

#[tokio::test]
async fn github_posts_statuses_with_its_state_names() {
    let created = || reply(201, json!({"id": 1}));
    let server = Server::start(vec![created(), created(), created()]).await;
    let client = github(&server, RatePolicy::default());
    let long = "ü".repeat(150);
    let posts = [
        status(BuildState::Running, None, "started"),
        status(BuildState::Cancelled, Some("https://ci/b/1"), &long),
        status(BuildState::Failure, Some("https://ci/b/1"), "failed"),
    ];
    for post in &posts {
        client.post_status(&gh_repo(), SHA, post).await.unwrap();
    }
    let post = |body: Value| ("POST".to_owned(), GH_PATH.to_owned(), body);
    assert_eq!(
        server.seen(),
        [
            post(
                json!({"state": "pending", "description": "started", "context": "forgewatch/mainline"})
            ),
            post(json!({
                "state": "error", "description": "ü".repeat(140),
                "context": "forgewatch/mainline", "target_url": "https://ci/b/1"
            })),
            post(json!({
                "state": "failure", "description": "failed",
                "context": "forgewatch/mainline", "target_url": "https://ci/b/1"
            })),
        ]
    );
    assert_eq!(
        server.header(0, "authorization").as_deref(),
        Some("Bearer t0ken")
    );
    assert_eq!(
        server.header(0, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(counted(client.stats()), (3, 0));
}

#[tokio::test]
async fn github_refusals_are_no_permission_and_a_502_is_http() {
    let not_accessible = json!({
        "message": "Resource not accessible by integration",
        "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
        "status": "403"
    });
    let server = Server::start(vec![
        reply(403, not_accessible),
        reply(401, json!({"message": "Bad credentials"})),
        reply(404, json!({"message": "Not Found"})),
        reply(502, json!({"message": "Server Error"})),
    ])
    .await;
    let client = github(&server, RatePolicy::default());
    let post = status(BuildState::Success, None, "ok");
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(
            client
                .post_status(&gh_repo(), SHA, &post)
                .await
                .unwrap_err(),
        );
    }
    let refused: Vec<(u16, String)> = answers[..3]
        .iter()
        .map(|e| match e {
            ForgeError::NoPermission {
                status, message, ..
            } => (*status, message.clone()),
            other => panic!("not NoPermission: {other:?}"),
        })
        .collect();
    assert_eq!(
        refused,
        [
            (403, "Resource not accessible by integration".to_owned()),
            (401, "Bad credentials".to_owned()),
            (404, "Not Found".to_owned()),
        ]
    );
    assert!(
        matches!(&answers[3], ForgeError::Http { status: 502, message, .. } if message == "Server Error"),
        "{:?}",
        answers[3]
    );
    // Refusals do not pause the forge.
    assert_eq!(client.paused_until(), None);
    assert_eq!(counted(client.stats()), (0, 4));
}

#[tokio::test]
async fn a_secondary_limit_on_a_post_pauses_the_forge_like_a_get() {
    let secondary = json!({
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
    });
    let server = Server::start(vec![Reply {
        status: 403,
        headers: vec![("retry-after", "120")],
        body: secondary,
    }])
    .await;
    let client = github(&server, RatePolicy::default());
    let post = status(BuildState::Pending, None, "queued");
    let before = SystemTime::now();
    let error = client
        .post_status(&gh_repo(), SHA, &post)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ForgeError::RateLimited { status: 403, retry_after: Some(d), .. } if d == Duration::from_secs(120)),
        "{error:?}"
    );
    let until = client.paused_until().expect("the forge is paused");
    assert!(until >= before + Duration::from_secs(120));
    // Paused: neither a post nor a read is sent.
    let error = client
        .post_status(&gh_repo(), SHA, &post)
        .await
        .unwrap_err();
    assert!(matches!(error, ForgeError::Paused { .. }), "{error:?}");
    let error = client.default_branch(&gh_repo()).await.unwrap_err();
    assert!(matches!(error, ForgeError::Paused { .. }), "{error:?}");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn the_write_budget_refuses_posts_without_sending_them_and_reads_go_on() {
    let created = || reply(201, json!({"id": 1}));
    let server = Server::start(vec![
        created(),
        created(),
        reply(200, json!({"default_branch": "main"})),
    ])
    .await;
    let rate = RatePolicy {
        writes_per_minute: Some(2),
        writes_per_hour: Some(500),
        ..RatePolicy::default()
    };
    let client = github(&server, rate);
    let post = status(BuildState::Success, None, "ok");
    let start = SystemTime::now();
    client.post_status(&gh_repo(), SHA, &post).await.unwrap();
    client.post_status(&gh_repo(), SHA, &post).await.unwrap();
    let error = client
        .post_status(&gh_repo(), SHA, &post)
        .await
        .unwrap_err();
    let ForgeError::WriteLimited { until, url } = error else {
        panic!("not WriteLimited: {error:?}");
    };
    assert!(url.ends_with(GH_PATH), "{url}");
    // Room again when the first post is a minute old.
    assert!(until >= start + Duration::from_secs(59), "{until:?}");
    assert!(
        until <= SystemTime::now() + Duration::from_secs(60),
        "{until:?}"
    );
    assert_eq!(client.default_branch(&gh_repo()).await.unwrap(), "main");
    assert_eq!(server.seen().len(), 3);
    assert_eq!(counted(client.stats()), (3, 0));
    assert_eq!(client.paused_until(), None);
}

#[tokio::test]
async fn gitlab_posts_statuses_and_a_status_already_in_force_is_done() {
    let server = Server::start(vec![
        reply(201, json!({"id": 1, "status": "running"})),
        reply(
            400,
            json!({"message": "Cannot transition status via :run from :running"}),
        ),
        reply(400, json!({"error": "state does not have a valid value"})),
        reply(403, json!({"message": "403 Forbidden"})),
        reply(502, json!({"message": "502 Bad Gateway"})),
    ])
    .await;
    let client = gitlab(&server);
    let running = status(BuildState::Running, Some("https://ci/p/1"), "running");
    client.post_status(&gl_repo(), SHA, &running).await.unwrap();
    client.post_status(&gl_repo(), SHA, &running).await.unwrap();
    let error = client
        .post_status(&gl_repo(), SHA, &running)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ForgeError::Http { status: 400, .. }),
        "{error:?}"
    );
    let error = client
        .post_status(&gl_repo(), SHA, &running)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ForgeError::NoPermission { status: 403, ref message, .. } if message == "403 Forbidden"),
        "{error:?}"
    );
    let error = client
        .post_status(&gl_repo(), SHA, &running)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ForgeError::Http { status: 502, .. }),
        "{error:?}"
    );
    let body = json!({
        "state": "running", "name": "forgewatch/mainline", "description": "running",
        "target_url": "https://ci/p/1"
    });
    let seen = server.seen();
    assert_eq!(seen.len(), 5);
    for (method, path, sent) in seen {
        assert_eq!(
            (method.as_str(), path.as_str(), &sent),
            ("POST", GL_PATH, &body)
        );
    }
    assert_eq!(server.header(0, "private-token").as_deref(), Some(TOKEN));
    // A 400 is counted failed, even the one that means done.
    assert_eq!(counted(client.stats()), (1, 4));
}
