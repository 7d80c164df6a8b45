//! Hostile and broken forge answers, end to end through the real GitHub and GitLab
//! clients. SPEC: "forge garbage confined to that item, the daemon keeps running";
//! this file is the proof for the forge side. An in-process axum server on
//! 127.0.0.1 answers every request from a script (status, headers, body); a seeded
//! fuzz loop and targeted cases then check that no answer panics a client, that a
//! broken answer fails only the request that carried it, always as the expected
//! [`ForgeError`], and that in a list the garbage items are skipped while the
//! well-formed ones are still returned.
//!
//! Where garbage is *not* confined to its item, the limit is pinned here too: a list
//! page is parsed as a whole first (`decode::list_items`: invalid UTF-8 replaced by
//! U+FFFD, then `Vec<serde_json::Value>`). Invalid UTF-8 inside one item's strings is
//! therefore confined to that item (read with replacement characters, or skipped when
//! it then fails to decode), but whatever serde_json refuses while parsing the page (a
//! lone surrogate escape, a number beyond `f64`, nesting deeper than its 128 levels),
//! even in an unknown field of one item, fails that whole page with a decode error. A
//! single-object answer is parsed from its raw bytes (`serde_json::from_slice`):
//! invalid UTF-8 in a field the client reads fails it, while unknown fields are
//! skipped without checking, so the same garbage there is harmless. Every decode error
//! message is one line of at most 300 characters (plus `…`).
//!
//! The credential stays on the forge's origin: a `rel="next"` link or a redirect to
//! another scheme, host or port is not followed, and a second server standing in for
//! the other host proves that no request reached it.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use forgewatch_adapters::forge::{Forge, ForgeError, PrState, PullRequest, WatchTarget};
use forgewatch_adapters::github::{GitHubClient, GitHubOptions};
use forgewatch_adapters::gitlab::{GitLabClient, GitLabOptions};
use forgewatch_adapters::http::{ClientOptions, MemoryStore};
use forgewatch_adapters::{RepoId, Secret};

/// The clients' body cap (`MAX_BODY_BYTES` in `http.rs`).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
const BRANCH: &str = "main";
/// The numbers of the pull requests in a valid list answer.
const LISTED: [u64; 3] = [101, 102, 103];
/// The number asked for from the single-pull-request endpoints.
const SINGLE: u64 = 102;
const BASE_SHA: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const BRANCH_SHA: &str = "cccccccccccccccccccccccccccccccccccccccc";
/// 2026-01-01T00:00:00Z, the `updated_at` of every valid pull request.
const UPDATED_AT: i64 = 1_767_225_600;

// ---------------------------------------------------------------------------
// The scripted forge.

/// One scripted answer.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl Reply {
    fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            body: body.into(),
        }
    }

    fn json(body: impl Into<Bytes>) -> Reply {
        Reply::new(200, "application/json", body)
    }

    fn value(value: &Value) -> Reply {
        Reply::json(serde_json::to_vec(value).unwrap())
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// What the server saw of one request.
struct Seen {
    uri: String,
    headers: HeaderMap,
}

#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Answers with the next scripted reply; an unscripted request gets a 418.
async fn answer(State(script): State<Script>, request: Request) -> Response {
    script.seen.lock().unwrap().push(Seen {
        uri: request.uri().to_string(),
        headers: request.headers().clone(),
    });
    let next = script.replies.lock().unwrap().pop_front();
    let Some(reply) = next else {
        return (StatusCode::IM_A_TEAPOT, "unscripted request").into_response();
    };
    let mut response = Response::builder().status(reply.status);
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).unwrap()
}

struct Server {
    url: String,
    script: Script,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let script = Script::default();
        let app = Router::new().fallback(answer).with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { url, script }
    }

    fn push(&self, reply: Reply) {
        self.script.replies.lock().unwrap().push_back(reply);
    }

    fn unanswered(&self) -> usize {
        self.script.replies.lock().unwrap().len()
    }

    fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.script.seen.lock().unwrap())
    }
}

// ---------------------------------------------------------------------------
// The clients under test.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    GitHub,
    GitLab,
}

const FLAVORS: [Flavor; 2] = [Flavor::GitHub, Flavor::GitLab];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    /// `open_pull_requests`
    List,
    /// `branch_head`
    Branch,
    /// `pull_request(SINGLE)`
    Single,
    /// `default_branch`
    Project,
}

const ENDPOINTS: [Endpoint; 4] = [
    Endpoint::List,
    Endpoint::Branch,
    Endpoint::Single,
    Endpoint::Project,
];

fn repo(flavor: Flavor) -> RepoId {
    match flavor {
        Flavor::GitHub => RepoId::parse("https://github.com/acme/widget").unwrap(),
        Flavor::GitLab => RepoId::parse("https://gitlab.example.org/group/sub/widget").unwrap(),
    }
}

fn target(flavor: Flavor) -> WatchTarget {
    WatchTarget {
        repo: repo(flavor),
        branch: BRANCH.to_owned(),
    }
}

/// The path and query each call requests.
fn path(flavor: Flavor, endpoint: Endpoint) -> &'static str {
    match (flavor, endpoint) {
        (Flavor::GitHub, Endpoint::List) => {
            "/repos/acme/widget/pulls?state=open&base=main&per_page=100"
        }
        (Flavor::GitHub, Endpoint::Branch) => "/repos/acme/widget/branches/main",
        (Flavor::GitHub, Endpoint::Single) => "/repos/acme/widget/pulls/102",
        (Flavor::GitHub, Endpoint::Project) => "/repos/acme/widget",
        (Flavor::GitLab, Endpoint::List) => {
            "/api/v4/projects/group%2Fsub%2Fwidget/merge_requests?state=opened&target_branch=main&per_page=100"
        }
        (Flavor::GitLab, Endpoint::Branch) => {
            "/api/v4/projects/group%2Fsub%2Fwidget/repository/branches/main"
        }
        (Flavor::GitLab, Endpoint::Single) => {
            "/api/v4/projects/group%2Fsub%2Fwidget/merge_requests/102"
        }
        (Flavor::GitLab, Endpoint::Project) => "/api/v4/projects/group%2Fsub%2Fwidget",
    }
}

#[derive(Debug)]
enum Outcome {
    Pulls(Result<Vec<PullRequest>, ForgeError>),
    Text(Result<String, ForgeError>),
    Pull(Box<Result<PullRequest, ForgeError>>),
}

struct Forges {
    server: Server,
    github: GitHubClient,
    gitlab: GitLabClient,
}

impl Forges {
    async fn start() -> Forges {
        let server = Server::start().await;
        let (github, gitlab) = clients(&server.url);
        Forges {
            server,
            github,
            gitlab,
        }
    }

    fn forge(&self, flavor: Flavor) -> &dyn Forge {
        match flavor {
            Flavor::GitHub => &self.github,
            Flavor::GitLab => &self.gitlab,
        }
    }

    fn url(&self, flavor: Flavor, endpoint: Endpoint) -> String {
        format!("{}{}", self.server.url, path(flavor, endpoint))
    }

    async fn call(&self, flavor: Flavor, endpoint: Endpoint) -> Outcome {
        let forge = self.forge(flavor);
        let target = target(flavor);
        match endpoint {
            Endpoint::List => Outcome::Pulls(forge.open_pull_requests(&target).await),
            Endpoint::Branch => Outcome::Text(forge.branch_head(&target).await),
            Endpoint::Single => {
                Outcome::Pull(Box::new(forge.pull_request(&target.repo, SINGLE).await))
            }
            Endpoint::Project => Outcome::Text(forge.default_branch(&target.repo).await),
        }
    }

    /// Scripts `reply`, calls, and checks that exactly that one request was made.
    async fn one(&self, flavor: Flavor, endpoint: Endpoint, reply: Reply) -> Outcome {
        self.server.push(reply);
        let outcome = self.call(flavor, endpoint).await;
        let seen = self.server.take_seen();
        assert_eq!(
            seen.iter().map(|s| s.uri.as_str()).collect::<Vec<_>>(),
            [path(flavor, endpoint)]
        );
        assert_eq!(self.server.unanswered(), 0);
        outcome
    }
}

/// A GitHub and a GitLab client of the forge at `url`.
fn clients(url: &str) -> (GitHubClient, GitLabClient) {
    let client = ClientOptions {
        request_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    };
    let github = GitHubClient::new(
        GitHubOptions {
            host: "github.com".into(),
            api_url: url.to_owned(),
            token: Some(Secret::new("gh-token")),
            client: client.clone(),
        },
        Arc::new(MemoryStore::default()),
    )
    .unwrap();
    let gitlab = GitLabClient::new(
        GitLabOptions {
            host: "gitlab.example.org".into(),
            api_url: format!("{url}/api/v4"),
            token: Some(Secret::new("gl-token")),
            client,
        },
        Arc::new(MemoryStore::default()),
    )
    .unwrap();
    (github, gitlab)
}

#[track_caller]
fn pulls(outcome: Outcome) -> Result<Vec<PullRequest>, ForgeError> {
    match outcome {
        Outcome::Pulls(result) => result,
        other => panic!("not a list outcome: {other:?}"),
    }
}

#[track_caller]
fn pull(outcome: Outcome) -> Result<PullRequest, ForgeError> {
    match outcome {
        Outcome::Pull(result) => *result,
        other => panic!("not a pull request outcome: {other:?}"),
    }
}

/// The message of a decode error of `url`; anything else fails the test.
#[track_caller]
fn decode_error<T: std::fmt::Debug>(result: Result<T, ForgeError>, url: &str) -> String {
    match result {
        Err(ForgeError::Decode { url: u, message }) if u == url => message,
        other => panic!("expected a decode error of {url}, got {other:?}"),
    }
}

/// The same for an outcome of any endpoint.
#[track_caller]
fn outcome_decode_error(outcome: Outcome, url: &str) -> String {
    match outcome {
        Outcome::Pulls(r) => decode_error(r, url),
        Outcome::Text(r) => decode_error(r, url),
        Outcome::Pull(r) => decode_error(*r, url),
    }
}

/// The result of an outcome of any endpoint, without its value.
fn discard(outcome: Outcome) -> Result<(), ForgeError> {
    match outcome {
        Outcome::Pulls(r) => r.map(|_| ()),
        Outcome::Text(r) => r.map(|_| ()),
        Outcome::Pull(r) => (*r).map(|_| ()),
    }
}

/// The status and message of an HTTP error of `url`; anything else fails the test.
#[track_caller]
fn http_error(outcome: Outcome, url: &str) -> (u16, String) {
    match discard(outcome) {
        Err(ForgeError::Http {
            url: u,
            status,
            message,
        }) if u == url => (status, message),
        other => panic!("expected an HTTP error of {url}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Valid answers and what they decode to.

fn head_sha(number: u64) -> String {
    format!("{number:040x}")
}

fn github_pull(number: u64) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/acme/widget/pulls/{number}"),
        "id": 9000 + number,
        "number": number,
        "state": "open",
        "locked": false,
        "title": format!("Fix number {number}"),
        "body": "Body text.\r\nSecond line.",
        "user": {"login": "alice", "id": 5, "type": "User"},
        "labels": [{"id": 1, "name": "ci", "color": "ededed"}],
        "draft": false,
        "created_at": "2025-12-31T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "merged_at": null,
        "head": {
            "label": format!("alice:fix-{number}"),
            "ref": format!("fix-{number}"),
            "sha": head_sha(number),
            "repo": {"id": 2, "full_name": "alice/widget", "private": false}
        },
        "base": {
            "label": "acme:main",
            "ref": "main",
            "sha": BASE_SHA,
            "repo": {"id": 1, "full_name": "acme/widget", "private": false}
        },
        "author_association": "CONTRIBUTOR",
        "html_url": format!("https://github.com/acme/widget/pull/{number}")
    })
}

fn gitlab_merge_request(number: u64) -> Value {
    json!({
        "id": 5000 + number,
        "iid": number,
        "project_id": 7,
        "title": format!("Fix number {number}"),
        "description": "Body text.\r\nSecond line.",
        "state": "opened",
        "created_at": "2025-12-31T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
        "target_branch": "main",
        "source_branch": format!("fix-{number}"),
        "author": {"id": 3, "username": "bob", "name": "Bob"},
        "source_project_id": 7,
        "target_project_id": 7,
        "labels": ["ci"],
        "draft": false,
        "work_in_progress": false,
        "merge_status": "can_be_merged",
        "detailed_merge_status": "mergeable",
        "sha": head_sha(number),
        "web_url": format!("https://gitlab.example.org/group/sub/widget/-/merge_requests/{number}")
    })
}

/// A list item.
fn item(flavor: Flavor, number: u64) -> Value {
    match flavor {
        Flavor::GitHub => github_pull(number),
        Flavor::GitLab => gitlab_merge_request(number),
    }
}

/// What a valid list item decodes to.
fn expected_item(flavor: Flavor, number: u64) -> PullRequest {
    match flavor {
        Flavor::GitHub => PullRequest {
            number,
            title: format!("Fix number {number}"),
            body: Some("Body text.\r\nSecond line.".into()),
            author: "alice".into(),
            author_association: Some("CONTRIBUTOR".into()),
            labels: vec!["ci".into()],
            draft: false,
            updated_at: Some(UPDATED_AT),
            head_sha: head_sha(number),
            head_ref: format!("fix-{number}"),
            head_repo: Some(RepoId::from_host_path("github.com", "alice/widget").unwrap()),
            head_repo_numeric_id: Some(2),
            base_repo: repo(flavor),
            base_branch: BRANCH.into(),
            base_sha: Some(BASE_SHA.into()),
            state: PrState::Open,
            web_url: format!("https://github.com/acme/widget/pull/{number}"),
            mergeable: None,
            refs_prefix: format!("refs/pull/{number}"),
        },
        Flavor::GitLab => PullRequest {
            number,
            title: format!("Fix number {number}"),
            body: Some("Body text.\r\nSecond line.".into()),
            author: "bob".into(),
            author_association: None,
            labels: vec!["ci".into()],
            draft: false,
            updated_at: Some(UPDATED_AT),
            head_sha: head_sha(number),
            head_ref: format!("fix-{number}"),
            head_repo: Some(repo(flavor)),
            head_repo_numeric_id: Some(7),
            base_repo: repo(flavor),
            base_branch: BRANCH.into(),
            base_sha: None,
            state: PrState::Open,
            web_url: format!(
                "https://gitlab.example.org/group/sub/widget/-/merge_requests/{number}"
            ),
            mergeable: Some(true),
            refs_prefix: format!("refs/merge-requests/{number}"),
        },
    }
}

/// The valid answer of each endpoint.
fn valid(flavor: Flavor, endpoint: Endpoint) -> Value {
    match (flavor, endpoint) {
        (_, Endpoint::List) => Value::Array(LISTED.iter().map(|&n| item(flavor, n)).collect()),
        (Flavor::GitHub, Endpoint::Branch) => json!({
            "name": "main",
            "commit": {"sha": BRANCH_SHA, "url": "https://api.github.com/repos/acme/widget/commits/c"},
            "protected": true
        }),
        (Flavor::GitLab, Endpoint::Branch) => json!({
            "name": "main",
            "commit": {"id": BRANCH_SHA, "short_id": "cccccccc", "title": "Last commit"},
            "merged": false,
            "protected": true
        }),
        (Flavor::GitHub, Endpoint::Single) => {
            let mut pull = github_pull(SINGLE);
            pull["mergeable"] = json!(true);
            pull["merged"] = json!(false);
            pull
        }
        (Flavor::GitLab, Endpoint::Single) => {
            let mut pull = gitlab_merge_request(SINGLE);
            pull["diff_refs"] =
                json!({"base_sha": BASE_SHA, "head_sha": head_sha(SINGLE), "start_sha": BASE_SHA});
            pull
        }
        (Flavor::GitHub, Endpoint::Project) => {
            json!({"id": 1, "full_name": "acme/widget", "default_branch": "main", "private": false})
        }
        (Flavor::GitLab, Endpoint::Project) => {
            json!({"id": 7, "path_with_namespace": "group/sub/widget", "default_branch": "main"})
        }
    }
}

/// What the valid single-pull-request answer decodes to.
fn expected_single(flavor: Flavor) -> PullRequest {
    let mut pull = expected_item(flavor, SINGLE);
    match flavor {
        Flavor::GitHub => pull.mergeable = Some(true),
        Flavor::GitLab => pull.base_sha = Some(BASE_SHA.into()),
    }
    pull
}

/// Where the answer of a text endpoint is in its JSON.
fn text_pointer(flavor: Flavor, endpoint: Endpoint) -> &'static str {
    match (flavor, endpoint) {
        (Flavor::GitHub, Endpoint::Branch) => "/commit/sha",
        (Flavor::GitLab, Endpoint::Branch) => "/commit/id",
        _ => "/default_branch",
    }
}

fn number_key(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::GitHub => "number",
        Flavor::GitLab => "iid",
    }
}

/// `value` with the member at `pointer` replaced by `new`.
fn with(mut value: Value, pointer: &str, new: Value) -> Value {
    *value.pointer_mut(pointer).unwrap() = new;
    value
}

/// A list answer of the valid items 101 and 103 around `middle`.
fn list_around(flavor: Flavor, middle: Value) -> Vec<u8> {
    serde_json::to_vec(&json!([item(flavor, 101), middle, item(flavor, 103)])).unwrap()
}

/// `depth` nested arrays.
fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// `body` with the JSON string `"RAW"` (serialised) replaced by `raw`.
fn splice(body: &[u8], raw: &[u8]) -> Vec<u8> {
    let at = body
        .windows(RAW_MARK_JSON.len())
        .position(|w| w == RAW_MARK_JSON)
        .unwrap();
    [&body[..at], raw, &body[at + RAW_MARK_JSON.len()..]].concat()
}

/// A string value that [`splice`] replaces with raw bytes after serialisation.
const RAW_MARK: &str = "\u{1}raw\u{1}";
const RAW_MARK_JSON: &[u8] = br#""\u0001raw\u0001""#;

/// `value` serialised with `raw` at `pointer`.
fn with_raw(value: &Value, pointer: &str, raw: &[u8]) -> Vec<u8> {
    let value = with(value.clone(), pointer, json!(RAW_MARK));
    splice(&serde_json::to_vec(&value).unwrap(), raw)
}

// ---------------------------------------------------------------------------
// Seeded mutations.

/// xorshift64: deterministic randomness without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A byte in `low..=255`.
    fn byte(&mut self, low: u8) -> u8 {
        low + (self.next() % (256 - u64::from(low))) as u8
    }
}

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// The paths of every object member under `value`.
fn member_paths(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                prefix.push(Step::Key(key.clone()));
                out.push(prefix.clone());
                member_paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(Step::Index(i));
                member_paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at<'v>(value: &'v mut Value, path: &[Step]) -> &'v mut Value {
    path.iter().fold(value, |v, step| match step {
        Step::Key(key) => v.get_mut(key.as_str()).unwrap(),
        Step::Index(i) => v.get_mut(*i).unwrap(),
    })
}

fn show(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => format!("/{k}"),
            Step::Index(i) => format!("/{i}"),
        })
        .collect()
}

/// Values swapped in for any member.
fn swaps() -> Vec<Value> {
    vec![
        json!("x"),
        json!(""),
        json!(0),
        json!(-1),
        json!(null),
        json!(true),
        json!([]),
        json!([1, "a"]),
        json!({}),
        json!({"x": 1}),
    ]
}

/// Raw JSON text (or not quite JSON) put in for any member.
fn raw_fragments() -> Vec<Vec<u8>> {
    let mut raws: Vec<Vec<u8>> = [
        "1e400",
        "-1e400",
        "18446744073709551616",
        "18446744073709551615",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "-0",
        "1.5",
        "1E+2",
        r#""\ud800""#,
        r#""\udc00 tail""#,
        r#""\ud83d\ude00""#,
        r#""\u0000""#,
        r#""\uZZZZ""#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    raws.extend([
        b"\"\xff\xfe\"".to_vec(),
        b"\"caf\xc3\"".to_vec(),
        b"\"\xed\xa0\x80\"".to_vec(),
        b"\"\xc0\xaf\"".to_vec(),
    ]);
    raws.push(nested_arrays(10_000).into_bytes());
    raws.push(nested_arrays(100).into_bytes());
    raws.push(format!("{}0{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes());
    raws.push("[".repeat(10_000).into_bytes());
    raws.push(format!("\"{}\"", "x".repeat(100_000)).into_bytes());
    raws
}

/// Valid JSON strings that are hostile as names, paths and timestamps.
fn nasty_strings() -> Vec<String> {
    [
        "",
        " ",
        "/",
        "//",
        "a",
        "../..",
        "a/b/c/d",
        "%2F",
        "\0",
        "\u{202e}gnp.exe",
        "\u{1F600}",
        "9999-12-31T23:59:60Z",
        "0000-00-00T00:00:00Z",
        "2026-02-30T25:61:61+99:99",
        "-0001-01-01T00:00:00Z",
        "99999999999-01-01T00:00:00Z",
        "2026-01-01T00:00:00.99999999999999999999Z",
        "2026-01-01 00:00:00",
        "1767225600",
        "closed",
        "merged",
        "locked",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(["x".repeat(10_000)])
    .collect()
}

/// Whole answers that are not the expected JSON at all.
fn whole_bodies(valid: &[u8]) -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = [
        "",
        "null",
        "{}",
        "[]",
        "\"x\"",
        "42",
        "true",
        "  \n\t ",
        "[null]",
        "[[]]",
        "[{}]",
        "<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    bodies.push([b"\xef\xbb\xbf".as_slice(), valid].concat());
    bodies.push([valid, b"]]".as_slice()].concat());
    bodies.push([valid, valid].concat());
    bodies.push(b"\xff\xfe".to_vec());
    bodies.push(nested_arrays(10_000).into_bytes());
    bodies
}

/// Items put into a list answer.
fn garbage_items() -> Vec<Value> {
    vec![
        json!(null),
        json!(42),
        json!("pr"),
        json!([]),
        json!({}),
        json!({"number": "x", "iid": "x"}),
        json!({"number": 7, "iid": 7}),
    ]
}

struct Mutator {
    swaps: Vec<Value>,
    raws: Vec<Vec<u8>>,
    strings: Vec<String>,
    items: Vec<Value>,
}

impl Mutator {
    fn new() -> Mutator {
        Mutator {
            swaps: swaps(),
            raws: raw_fragments(),
            strings: nasty_strings(),
            items: garbage_items(),
        }
    }

    /// One random mutation of `valid` and what it was. Structural ones touch one item
    /// of a list, byte-level ones the whole answer.
    fn mutate(&self, rng: &mut Rng, valid: &Value, is_list: bool) -> (Vec<u8>, String) {
        let serialized = serde_json::to_vec(valid).unwrap();
        let mut value = valid.clone();
        let scope = if is_list {
            vec![Step::Index(rng.below(valid.as_array().unwrap().len()))]
        } else {
            Vec::new()
        };
        let mut paths = Vec::new();
        member_paths(at(&mut value, &scope), &mut scope.clone(), &mut paths);
        let path = rng.pick(&paths).clone();
        let kinds = if is_list { 10 } else { 9 };
        match rng.below(kinds) {
            0 => {
                let cut = rng.below(serialized.len());
                (
                    serialized[..cut].to_vec(),
                    format!("truncated at byte {cut}"),
                )
            }
            1 => {
                let mut body = serialized;
                let mut flips = Vec::new();
                for _ in 0..=rng.below(3) {
                    let i = rng.below(body.len());
                    let mask = rng.byte(1);
                    body[i] ^= mask;
                    flips.push((i, mask));
                }
                (body, format!("bytes flipped (offset, xor): {flips:?}"))
            }
            2 => {
                let mut body = serialized;
                let i = rng.below(body.len() + 1);
                let byte = rng.byte(0x80);
                body.insert(i, byte);
                (body, format!("byte {byte:#x} inserted at {i}"))
            }
            3 => {
                let (key, parent) = path.split_last().unwrap();
                let Step::Key(key) = key else { unreachable!() };
                at(&mut value, parent)
                    .as_object_mut()
                    .unwrap()
                    .remove(key)
                    .unwrap();
                (
                    serde_json::to_vec(&value).unwrap(),
                    format!("{} deleted", show(&path)),
                )
            }
            4 => {
                let new = rng.pick(&self.swaps).clone();
                let description = format!("{} = {new}", show(&path));
                *at(&mut value, &path) = new;
                (serde_json::to_vec(&value).unwrap(), description)
            }
            5 => {
                let raw = rng.pick(&self.raws);
                *at(&mut value, &path) = json!(RAW_MARK);
                let description = format!("{} = raw {:?}", show(&path), abbreviate(raw));
                (
                    splice(&serde_json::to_vec(&value).unwrap(), raw),
                    description,
                )
            }
            6 => {
                let strings: Vec<&Vec<Step>> = paths
                    .iter()
                    .filter(|p| at(&mut value, p).is_string())
                    .collect();
                let path = (*rng.pick(&strings)).clone();
                let new = rng.pick(&self.strings).clone();
                let description = format!("{} = {:?}", show(&path), abbreviate(new.as_bytes()));
                *at(&mut value, &path) = json!(new);
                (serde_json::to_vec(&value).unwrap(), description)
            }
            7 => {
                let bodies = whole_bodies(&serialized);
                let body = rng.pick(&bodies).clone();
                let description = format!("whole answer {:?}", abbreviate(&body));
                (body, description)
            }
            8 => {
                let raw = rng.pick(&self.raws);
                at(&mut value, &scope)
                    .as_object_mut()
                    .unwrap()
                    .insert("unknown_field".into(), json!(RAW_MARK));
                let description =
                    format!("{}/unknown_field = raw {:?}", show(&scope), abbreviate(raw));
                (
                    splice(&serde_json::to_vec(&value).unwrap(), raw),
                    description,
                )
            }
            _ => {
                let garbage = rng.pick(&self.items).clone();
                let items = value.as_array_mut().unwrap();
                let i = rng.below(items.len() + 1);
                let description = format!("item {garbage} inserted at {i}");
                items.insert(i, garbage);
                (serde_json::to_vec(&value).unwrap(), description)
            }
        }
    }
}

/// The start of `bytes`, for messages.
fn abbreviate(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned();
    if bytes.len() > 120 {
        format!("{text}… ({} bytes)", bytes.len())
    } else {
        text
    }
}

/// What the clients make of a decode error's text: one line of at most 300 characters
/// (plus `…`).
fn one_line_300(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 300 {
        format!("{}…", line.chars().take(300).collect::<String>())
    } else {
        line
    }
}

/// Fails unless `message` is one line of at most 300 characters plus `…`.
#[track_caller]
fn assert_one_line(message: &str, context: &str) {
    assert!(
        !message.contains('\n') && message.chars().count() <= 301,
        "{context}: decode error not cut to one line: {message:?}"
    );
}

/// Checks the outcome of one fuzzed answer against what serde_json makes of the body;
/// true when the client returned `Ok`. A list body is read as the clients read it:
/// invalid UTF-8 replaced by U+FFFD, then parsed as a whole. A single-object body is
/// parsed from its raw bytes.
fn check(
    flavor: Flavor,
    endpoint: Endpoint,
    url: &str,
    body: &[u8],
    outcome: Outcome,
    context: &str,
) -> bool {
    let value = serde_json::from_slice::<Value>(body).ok();
    let well_formed = serde_json::from_slice::<IgnoredAny>(body).is_ok();
    let key = number_key(flavor);
    match outcome {
        Outcome::Pulls(result) => {
            match serde_json::from_str::<Vec<Value>>(&String::from_utf8_lossy(body)) {
                Err(e) => {
                    let message = decode_error(result, url);
                    assert_eq!(message, one_line_300(&e.to_string()), "{context}");
                    false
                }
                Ok(items) => {
                    let prs = result.unwrap_or_else(|e| {
                        panic!("{context}: a JSON array must decode, got {e:?}")
                    });
                    let numbers: Vec<Option<u64>> = items
                        .iter()
                        .map(|i| i.get(key).and_then(Value::as_u64))
                        .collect();
                    assert!(prs.len() <= items.len(), "{context}");
                    assert!(
                        prs.windows(2).all(|w| w[0].number < w[1].number),
                        "{context}: sorted and deduplicated"
                    );
                    for pr in &prs {
                        assert!(
                            numbers.contains(&Some(pr.number)),
                            "{context}: #{} comes from no item",
                            pr.number
                        );
                    }
                    // An item the mutation left alone comes out exactly as it would
                    // have, unless another item carries its number.
                    for (item, number) in items.iter().zip(&numbers) {
                        let Some(n) = LISTED
                            .iter()
                            .find(|&&n| *item == self::item(flavor, n))
                            .copied()
                        else {
                            continue;
                        };
                        if numbers.iter().filter(|m| *m == number).count() == 1 {
                            assert!(
                                prs.contains(&expected_item(flavor, n)),
                                "{context}: untouched #{n} lost or changed: {prs:?}"
                            );
                        }
                    }
                    true
                }
            }
        }
        Outcome::Pull(result) => match *result {
            Ok(pr) => {
                assert!(well_formed, "{context}: accepted invalid JSON");
                if let Some(v) = &value {
                    assert_eq!(
                        Some(pr.number),
                        v.get(key).and_then(Value::as_u64),
                        "{context}"
                    );
                    if *v == valid(flavor, Endpoint::Single) {
                        assert_eq!(pr, expected_single(flavor), "{context}");
                    }
                }
                true
            }
            Err(e) => {
                assert_one_line(&decode_error(Err::<(), _>(e), url), context);
                assert_ne!(value, Some(valid(flavor, Endpoint::Single)), "{context}");
                false
            }
        },
        Outcome::Text(result) => {
            let pointer = text_pointer(flavor, endpoint);
            let expected = value
                .as_ref()
                .and_then(|v| v.pointer(pointer))
                .and_then(Value::as_str);
            match (result, expected) {
                (Ok(text), Some(expected)) => {
                    assert_eq!(text, expected, "{context}");
                    true
                }
                // Garbage in a skipped field passes unchecked (see the file's doc).
                (Ok(_), None) => {
                    assert!(
                        value.is_none() && well_formed,
                        "{context}: accepted an answer without {pointer}"
                    );
                    true
                }
                (Err(e), Some(_)) => panic!("{context}: {pointer} is there, yet {e:?}"),
                (result, None) => {
                    assert_one_line(&decode_error(result, url), context);
                    false
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The tests.

/// 3,000 seeded mutations of valid answers, spread over both clients and all four
/// calls: no panic, exactly one request each, and the exact outcome serde_json
/// predicts for the body (see [`check`]).
#[tokio::test]
async fn fuzzed_answers_never_panic_and_fail_only_their_own_request() {
    let forges = Arc::new(Forges::start().await);
    let mutator = Mutator::new();
    let mut rng = Rng(0x5eed_f0e9_e0a7_c4e1);
    let (mut oks, mut errors) = (0, 0);
    for iteration in 0..3_000 {
        let flavor = *rng.pick(&FLAVORS);
        let endpoint = *rng.pick(&ENDPOINTS);
        let (body, mutation) = mutator.mutate(
            &mut rng,
            &valid(flavor, endpoint),
            endpoint == Endpoint::List,
        );
        let context = format!(
            "iteration {iteration}, {flavor:?} {endpoint:?}, {mutation}, answer {:?}",
            abbreviate(&body)
        );
        forges.server.push(Reply::json(body.clone()));
        let task = {
            let forges = forges.clone();
            tokio::spawn(async move { forges.call(flavor, endpoint).await })
        };
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(e) => panic!("{context}: the client panicked: {e}"),
        };
        let seen = forges.server.take_seen();
        assert_eq!(seen.len(), 1, "{context}");
        assert_eq!(seen[0].uri, path(flavor, endpoint), "{context}");
        let url = forges.url(flavor, endpoint);
        if check(flavor, endpoint, &url, &body, outcome, &context) {
            oks += 1;
        } else {
            errors += 1;
        }
    }
    // Both sides of the oracle were exercised.
    assert!(oks > 500 && errors > 500, "{oks} ok, {errors} errors");
}

/// A list of three where the middle one is garbage returns exactly the other two.
#[tokio::test]
async fn a_garbage_item_is_skipped_and_its_neighbours_are_returned() {
    let forges = Forges::start().await;
    let github = github_pull(102);
    let gitlab = gitlab_merge_request(102);
    let cases = [
        (Flavor::GitHub, with(github.clone(), "/head", json!(null))),
        (Flavor::GitHub, with(github.clone(), "/number", json!("x"))),
        (Flavor::GitHub, with(github.clone(), "/number", json!(-1))),
        (Flavor::GitHub, with(github.clone(), "/number", json!(1.5))),
        (Flavor::GitHub, with(github.clone(), "/base", json!(null))),
        (Flavor::GitHub, with(github.clone(), "/head/sha", json!(5))),
        (
            Flavor::GitHub,
            with(github.clone(), "/head/repo/full_name", json!("")),
        ),
        (
            Flavor::GitHub,
            with(github.clone(), "/base/ref", json!("develop")),
        ),
        (Flavor::GitHub, with(github.clone(), "/labels", json!("ci"))),
        (
            Flavor::GitHub,
            with(github.clone(), "/labels/0/name", json!(5)),
        ),
        (
            Flavor::GitHub,
            with(github.clone(), "/user", json!("alice")),
        ),
        (Flavor::GitHub, with(github.clone(), "/title", json!(42))),
        (Flavor::GitHub, with(github, "/draft", json!("yes"))),
        (Flavor::GitLab, with(gitlab.clone(), "/iid", json!("x"))),
        (Flavor::GitLab, with(gitlab.clone(), "/sha", json!(null))),
        (Flavor::GitLab, with(gitlab.clone(), "/sha", json!(""))),
        (
            Flavor::GitLab,
            with(gitlab.clone(), "/source_branch", json!(null)),
        ),
        (
            Flavor::GitLab,
            with(gitlab.clone(), "/target_branch", json!("develop")),
        ),
        (Flavor::GitLab, with(gitlab.clone(), "/labels", json!("ci"))),
        (
            Flavor::GitLab,
            with(gitlab.clone(), "/author", json!({"username": 5})),
        ),
        (
            Flavor::GitLab,
            with(gitlab.clone(), "/source_project_id", json!(-7)),
        ),
        (Flavor::GitLab, with(gitlab, "/draft", json!("yes"))),
    ];
    let not_objects = [json!(null), json!(42), json!("pr"), json!([]), json!({})];
    let cases = cases.into_iter().chain(
        FLAVORS
            .into_iter()
            .flat_map(|f| not_objects.iter().map(move |v| (f, v.clone()))),
    );
    for (flavor, middle) in cases {
        let outcome = forges
            .one(
                flavor,
                Endpoint::List,
                Reply::json(list_around(flavor, middle.clone())),
            )
            .await;
        assert_eq!(
            pulls(outcome).unwrap(),
            [expected_item(flavor, 101), expected_item(flavor, 103)],
            "{flavor:?}, middle item {middle}"
        );
    }
}

/// Odd but readable items are kept, with the odd part read as absent (`labels: null`
/// as no labels).
#[tokio::test]
async fn tolerable_oddities_keep_the_pull_request() {
    let forges = Forges::start().await;
    for flavor in FLAVORS {
        let (user, body) = match flavor {
            Flavor::GitHub => ("/user", "/body"),
            Flavor::GitLab => ("/author", "/description"),
        };
        let mut odd = item(flavor, 102);
        for pointer in [user, body, "/draft", "/updated_at", "/web_url", "/html_url"] {
            if let Some(v) = odd.pointer_mut(pointer) {
                *v = json!(null);
            }
        }
        odd["updated_at"] = json!("2026-02-30T25:61:61+99:99");
        odd["labels"] = json!(null);
        odd["unknown_field"] = json!({"deep": [[[[1]]]], "big": 1e300});
        let outcome = forges
            .one(
                flavor,
                Endpoint::List,
                Reply::json(list_around(flavor, odd)),
            )
            .await;
        let mut expected = expected_item(flavor, 102);
        expected.author = "ghost".into();
        expected.body = None;
        expected.updated_at = None;
        expected.labels = Vec::new();
        if flavor == Flavor::GitLab {
            expected.web_url =
                "https://gitlab.example.org/group/sub/widget/-/merge_requests/102".into();
        }
        assert_eq!(
            pulls(outcome).unwrap(),
            [
                expected_item(flavor, 101),
                expected,
                expected_item(flavor, 103)
            ],
            "{flavor:?}"
        );
    }
}

/// `head.repo: null` (the fork was deleted) is a pull request without head repository,
/// in the list and from the single endpoint.
#[tokio::test]
async fn a_deleted_fork_is_returned_without_head_repository() {
    let forges = Forges::start().await;
    let flavor = Flavor::GitHub;
    let orphan = with(github_pull(102), "/head/repo", json!(null));
    let mut expected = expected_item(flavor, 102);
    expected.head_repo = None;
    expected.head_repo_numeric_id = None;

    let outcome = forges
        .one(
            flavor,
            Endpoint::List,
            Reply::json(list_around(flavor, orphan)),
        )
        .await;
    assert_eq!(
        pulls(outcome).unwrap(),
        [
            expected_item(flavor, 101),
            expected.clone(),
            expected_item(flavor, 103)
        ]
    );

    let single = with(valid(flavor, Endpoint::Single), "/head/repo", json!(null));
    let outcome = forges
        .one(flavor, Endpoint::Single, Reply::value(&single))
        .await;
    expected.mergeable = Some(true);
    assert_eq!(pull(outcome).unwrap(), expected);
}

/// A proxy's HTML error page is an HTTP error whose message is one line of at most
/// 200 characters (plus `…`).
#[tokio::test]
async fn an_html_error_page_from_a_proxy_is_a_one_line_http_error() {
    const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
        <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    let long_page = format!(
        "<!DOCTYPE html>\n{}",
        "<p>\n  bad   gateway\n</p>\n".repeat(100)
    );
    let long_message = format!(
        "<!DOCTYPE html> {}<p> bad gateway …",
        "<p> bad gateway </p> ".repeat(8)
    );
    let json_error =
        r#"{"message": "Server Error\n\n  try again later", "documentation_url": "x"}"#;
    let forges = Forges::start().await;
    for flavor in FLAVORS {
        for endpoint in ENDPOINTS {
            let cases = [
                (502, "text/html", NGINX_502.to_owned(), 
                 "<html> <head><title>502 Bad Gateway</title></head> <body> <center><h1>502 Bad Gateway</h1></center> <hr><center>nginx</center> </body> </html>".to_owned()),
                (503, "text/html", long_page.clone(), long_message.clone()),
                (500, "application/json", json_error.to_owned(), "Server Error try again later".to_owned()),
            ];
            for (status, content_type, page, expected) in cases {
                let outcome = forges
                    .one(flavor, endpoint, Reply::new(status, content_type, page))
                    .await;
                let url = forges.url(flavor, endpoint);
                match discard(outcome) {
                    Err(ForgeError::Http {
                        url: u,
                        status: s,
                        message,
                    }) => {
                        assert_eq!((u.as_str(), s), (url.as_str(), status));
                        assert_eq!(message, expected, "{flavor:?} {endpoint:?}");
                        assert!(!message.contains('\n') && message.chars().count() <= 201);
                    }
                    other => panic!("{flavor:?} {endpoint:?} {status}: {other:?}"),
                }
            }
        }
    }
}

/// A login page or captive portal answering 200 with HTML is a decode error.
#[tokio::test]
async fn an_html_page_with_status_200_is_a_decode_error() {
    let page = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>…</body></html>";
    let forges = Forges::start().await;
    for flavor in FLAVORS {
        for endpoint in ENDPOINTS {
            let outcome = forges
                .one(flavor, endpoint, Reply::new(200, "text/html", page))
                .await;
            assert_eq!(
                outcome_decode_error(outcome, &forges.url(flavor, endpoint)),
                "expected value at line 1 column 1",
                "{flavor:?} {endpoint:?}"
            );
        }
    }
}

/// A body beyond the cap is refused, whether its length is announced or not.
#[tokio::test]
async fn a_body_larger_than_the_cap_is_a_decode_error() {
    let forges = Forges::start().await;
    let huge = Bytes::from(vec![b' '; MAX_BODY_BYTES + 1024 * 1024]);
    for flavor in FLAVORS {
        let outcome = forges
            .one(flavor, Endpoint::List, Reply::json(huge.clone()))
            .await;
        assert_eq!(
            outcome_decode_error(outcome, &forges.url(flavor, Endpoint::List)),
            format!("response body larger than {MAX_BODY_BYTES} bytes")
        );
    }
}

/// The largest endless body the raw server sends before giving up.
const ENDLESS_CAP: usize = 2 * MAX_BODY_BYTES;

/// A bare HTTP/1.1 server answering one request with a close-delimited 200 body that
/// does not end (axum streams bodies from a `Stream`, which would need one more
/// crate). Yields how many body bytes it got out before the client hung up.
async fn endless_body_server() -> (String, tokio::task::JoinHandle<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "the request ended early");
            head.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n[",
            )
            .await
            .unwrap();
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 1;
        while sent < ENDLESS_CAP {
            if socket.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    (url, sent)
}

/// An answer that never ends is cut off at the cap: the client stops reading and
/// hangs up instead of buffering it all.
#[tokio::test]
async fn an_endless_body_is_cut_off_at_the_cap() {
    let (url, sent) = endless_body_server().await;
    let (github, _) = clients(&url);
    let result = github.open_pull_requests(&target(Flavor::GitHub)).await;
    assert_eq!(
        decode_error(
            result,
            &format!("{url}{}", path(Flavor::GitHub, Endpoint::List))
        ),
        format!("response body larger than {MAX_BODY_BYTES} bytes")
    );
    let sent = sent.await.unwrap();
    assert!(
        (MAX_BODY_BYTES..ENDLESS_CAP).contains(&sent),
        "{sent} bytes sent"
    );
}

/// Invalid UTF-8 in one item of a list page is confined to that item: the page is
/// read with U+FFFD in place of the broken bytes, so the item keeps a replaced title,
/// is skipped when the replaced text no longer fits (its base branch), and is returned
/// untouched when the bytes were in an unknown field; its neighbours are returned
/// either way. What serde_json refuses while parsing the page (a lone surrogate escape,
/// a number beyond f64, too deep nesting) still fails the whole page, even in one
/// item's unknown field. A single-object answer is not replaced: all of it fails when
/// the garbage is in a field the client reads, and nothing when it is in an unknown one.
#[tokio::test]
async fn invalid_utf8_is_confined_to_its_item_but_what_serde_json_refuses_fails_the_page() {
    let forges = Forges::start().await;
    let deep = nested_arrays(10_000);
    // The raw title, what the list reads it as, and the single answer's error.
    let replaced: [(&[u8], &str, &str); 2] = [
        (
            b"\"Fix \xff\xfe\"",
            "Fix \u{fffd}\u{fffd}",
            "invalid unicode code point",
        ),
        (
            b"\"Fix \xed\xa0\x80\"",
            "Fix \u{fffd}\u{fffd}\u{fffd}",
            "invalid unicode code point",
        ),
    ];
    // The raw value, the list page's error, and the single answer's error for a title.
    let refused: [(&[u8], &str, &str); 4] = [
        (
            br#""Fix \ud800""#,
            "unexpected end of hex escape",
            "unexpected end of hex escape",
        ),
        (
            br#""Fix \ud800\u0041""#,
            "lone leading surrogate in hex escape",
            "lone leading surrogate in hex escape",
        ),
        (b"1e400", "number out of range", "number out of range"),
        (
            deep.as_bytes(),
            "recursion limit exceeded",
            "invalid type: sequence, expected a string",
        ),
    ];
    for flavor in FLAVORS {
        let list_url = forges.url(flavor, Endpoint::List);
        let single_url = forges.url(flavor, Endpoint::Single);
        let base = match flavor {
            Flavor::GitHub => "/1/base/ref",
            Flavor::GitLab => "/1/target_branch",
        };
        let list_with_raw = |pointer: &str, raw: &[u8]| {
            let mut list = valid(flavor, Endpoint::List);
            list[1]["unknown_field"] = json!(0);
            with_raw(&list, pointer, raw)
        };
        let single_with_raw = |pointer: &str, raw: &[u8]| {
            let mut answer = valid(flavor, Endpoint::Single);
            answer["unknown_field"] = json!(0);
            with_raw(&answer, pointer, raw)
        };
        let all = LISTED.map(|n| expected_item(flavor, n));
        let neighbours = [expected_item(flavor, 101), expected_item(flavor, 103)];

        for (raw, title, single_error) in replaced {
            let context = format!("{flavor:?} {}", abbreviate(raw));
            let body = list_with_raw("/1/title", raw);
            let outcome = forges.one(flavor, Endpoint::List, Reply::json(body)).await;
            let mut middle = expected_item(flavor, 102);
            middle.title = title.to_owned();
            assert_eq!(
                pulls(outcome).unwrap(),
                [neighbours[0].clone(), middle, neighbours[1].clone()],
                "{context}"
            );
            let body = list_with_raw(base, raw);
            let outcome = forges.one(flavor, Endpoint::List, Reply::json(body)).await;
            assert_eq!(pulls(outcome).unwrap(), neighbours, "{context}");
            let body = list_with_raw("/1/unknown_field", raw);
            let outcome = forges.one(flavor, Endpoint::List, Reply::json(body)).await;
            assert_eq!(pulls(outcome).unwrap(), all, "{context}");

            let body = single_with_raw("/title", raw);
            let outcome = forges
                .one(flavor, Endpoint::Single, Reply::json(body.clone()))
                .await;
            let message = outcome_decode_error(outcome, &single_url);
            assert!(
                message.starts_with(&format!("{single_error} at line 1 column ")),
                "{context}: {message}"
            );
            assert_eq!(
                message,
                serde_json::from_slice::<Value>(&body)
                    .unwrap_err()
                    .to_string(),
                "{context}"
            );
        }

        for (raw, list_error, single_error) in refused {
            let context = format!("{flavor:?} {}", abbreviate(raw));
            for pointer in ["/1/title", "/1/unknown_field"] {
                let body = list_with_raw(pointer, raw);
                let outcome = forges
                    .one(flavor, Endpoint::List, Reply::json(body.clone()))
                    .await;
                let message = outcome_decode_error(outcome, &list_url);
                assert!(
                    message.starts_with(&format!("{list_error} at line 1 column ")),
                    "{context} at {pointer}: {message}"
                );
                assert_eq!(
                    message,
                    serde_json::from_slice::<Value>(&body)
                        .unwrap_err()
                        .to_string(),
                    "{context} at {pointer}"
                );
            }
            let body = single_with_raw("/title", raw);
            let outcome = forges
                .one(flavor, Endpoint::Single, Reply::json(body))
                .await;
            let message = outcome_decode_error(outcome, &single_url);
            assert!(
                message.starts_with(&format!("{single_error} at line 1 column ")),
                "{context}: {message}"
            );
        }

        // The single answer skips an unknown field unchecked, whatever is in it.
        for raw in replaced
            .iter()
            .map(|r| r.0)
            .chain(refused.iter().map(|r| r.0))
        {
            let body = single_with_raw("/unknown_field", raw);
            let outcome = forges
                .one(flavor, Endpoint::Single, Reply::json(body))
                .await;
            assert_eq!(
                pull(outcome).unwrap(),
                expected_single(flavor),
                "{flavor:?} {}",
                abbreviate(raw)
            );
        }
    }
}

/// 10,000 nested arrays or objects as the whole answer: serde_json's recursion limit
/// turns them into decode errors instead of a stack overflow; nesting within the limit
/// in an unknown field is harmless.
#[tokio::test]
async fn deep_nesting_is_a_decode_error_not_a_stack_overflow() {
    let forges = Forges::start().await;
    let deep_objects = format!("{}0{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    for flavor in FLAVORS {
        for endpoint in ENDPOINTS {
            for body in [nested_arrays(10_000), deep_objects.clone()] {
                let outcome = forges.one(flavor, endpoint, Reply::json(body)).await;
                let message = outcome_decode_error(outcome, &forges.url(flavor, endpoint));
                if endpoint == Endpoint::List {
                    assert!(
                        message.starts_with("recursion limit exceeded")
                            || message.starts_with("invalid type: map, expected a sequence"),
                        "{flavor:?}: {message}"
                    );
                }
            }
        }
        let mut list = valid(flavor, Endpoint::List);
        list[1]["unknown_field"] = json!(RAW_MARK);
        let body = splice(
            &serde_json::to_vec(&list).unwrap(),
            nested_arrays(100).as_bytes(),
        );
        let outcome = forges.one(flavor, Endpoint::List, Reply::json(body)).await;
        assert_eq!(
            pulls(outcome).unwrap(),
            LISTED.map(|n| expected_item(flavor, n))
        );
    }
}

/// A 301 to another path of the same server is followed and the list read there; the
/// credential goes along (same host and port).
#[tokio::test]
async fn a_redirect_to_another_path_is_followed() {
    let forges = Forges::start().await;
    for (flavor, status, credential, value) in [
        (Flavor::GitHub, 301, "authorization", "Bearer gh-token"),
        (Flavor::GitLab, 308, "private-token", "gl-token"),
    ] {
        let moved = "/moved/pulls?state=open&page=1";
        forges
            .server
            .push(Reply::new(status, "text/html", "Moved").header("location", moved));
        forges
            .server
            .push(Reply::value(&valid(flavor, Endpoint::List)));
        let result = forges
            .forge(flavor)
            .open_pull_requests(&target(flavor))
            .await;
        assert_eq!(result.unwrap(), LISTED.map(|n| expected_item(flavor, n)));
        let seen = forges.server.take_seen();
        assert_eq!(
            seen.iter().map(|s| s.uri.as_str()).collect::<Vec<_>>(),
            [path(flavor, Endpoint::List), moved]
        );
        assert_eq!(seen[1].headers[credential], value);
        assert_eq!(forges.server.unanswered(), 0);
    }
}

/// A same-origin redirect loop ends with a transport error after the clients' 10
/// redirects.
#[tokio::test]
async fn a_redirect_loop_is_a_transport_error() {
    let forges = Forges::start().await;
    for flavor in FLAVORS {
        for _ in 0..20 {
            forges
                .server
                .push(Reply::new(302, "text/plain", "").header("location", "/again"));
        }
        let result = forges.forge(flavor).branch_head(&target(flavor)).await;
        let url = forges.url(flavor, Endpoint::Branch);
        match result {
            Err(ForgeError::Transport { url: u, message }) => {
                assert_eq!(u, url);
                assert_eq!(message, "error following redirect: too many redirects");
            }
            other => panic!("{flavor:?}: {other:?}"),
        }
        assert_eq!(forges.server.take_seen().len(), 11);
        forges.server.script.replies.lock().unwrap().clear();
    }
}

/// A `next` link back to the same page ends at the page limit instead of looping, and
/// a `next` link that is not a URL is refused like one to another origin, before any
/// request is made for it.
#[tokio::test]
async fn hostile_pagination_ends() {
    let forges = Forges::start().await;
    for flavor in FLAVORS {
        let url = forges.url(flavor, Endpoint::List);
        let page = serde_json::to_vec(&json!([item(flavor, 101)])).unwrap();
        for _ in 0..200 {
            let reply = Reply::json(page.clone());
            forges.server.push(match flavor {
                Flavor::GitHub => reply.header("link", format!("<{url}>; rel=\"next\"")),
                Flavor::GitLab => reply.header("x-next-page", "1"),
            });
        }
        let result = forges
            .forge(flavor)
            .open_pull_requests(&target(flavor))
            .await;
        assert_eq!(decode_error(result, &url), "more than 200 pages");
        assert_eq!(forges.server.take_seen().len(), 200);
        assert_eq!(forges.server.unanswered(), 0);

        forges
            .server
            .push(Reply::json(page.clone()).header("link", "<not a url>; rel=\"next\""));
        let result = forges
            .forge(flavor)
            .open_pull_requests(&target(flavor))
            .await;
        assert_eq!(
            decode_error(result, &url),
            "refusing a next page on another origin: not a url"
        );
        assert_eq!(forges.server.take_seen().len(), 1);
        assert_eq!(forges.server.unanswered(), 0);
    }
}

/// A 304 to a request that sent no validators has nothing to revalidate: decode error.
#[tokio::test]
async fn a_304_to_an_unconditional_request_is_a_decode_error() {
    let forges = Forges::start().await;
    for flavor in FLAVORS {
        for endpoint in ENDPOINTS {
            let outcome = forges
                .one(flavor, endpoint, Reply::new(304, "application/json", ""))
                .await;
            assert_eq!(
                outcome_decode_error(outcome, &forges.url(flavor, endpoint)),
                "304 Not Modified to an unconditional request"
            );
        }
    }
}

/// 404 is `NotFound`, with the forge's message when it sent one.
#[tokio::test]
async fn a_404_is_not_found() {
    let forges = Forges::start().await;
    for flavor in FLAVORS {
        for (body, message) in [
            (r#"{"message": "Not Found"}"#, Some("Not Found")),
            ("", None),
            ("<h1>\n404\n</h1>", Some("<h1> 404 </h1>")),
        ] {
            let outcome = forges
                .one(
                    flavor,
                    Endpoint::Single,
                    Reply::new(404, "text/plain", body),
                )
                .await;
            match pull(outcome) {
                Err(ForgeError::NotFound { url, message: m }) => {
                    assert_eq!(url, forges.url(flavor, Endpoint::Single));
                    assert_eq!(m.as_deref(), message);
                }
                other => panic!("{flavor:?}: {other:?}"),
            }
        }
    }
}

/// Rate-limit headers are forge garbage too: a reset time beyond what `SystemTime`
/// can hold must not fail (or panic) the request.
#[tokio::test]
async fn a_rate_limit_reset_beyond_the_clock_is_harmless() {
    let forges = Arc::new(Forges::start().await);
    for flavor in FLAVORS {
        let reply = Reply::value(&valid(flavor, Endpoint::Branch))
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "4999")
            .header("x-ratelimit-reset", "18446744073709551615");
        forges.server.push(reply);
        let task = {
            let forges = forges.clone();
            tokio::spawn(async move { forges.call(flavor, Endpoint::Branch).await })
        };
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(e) => panic!("{flavor:?}: the client panicked: {e}"),
        };
        match outcome {
            Outcome::Text(Ok(sha)) => assert_eq!(sha, BRANCH_SHA),
            other => panic!("{flavor:?}: {other:?}"),
        }
        let rate = forges.forge(flavor).rate_limit().unwrap();
        assert_eq!((rate.limit, rate.remaining), (Some(5000), Some(4999)));
    }
}

/// A decode error quoting a 100 KB string (the whole answer, or a number that is one)
/// is cut to one line of 300 characters plus `…`.
#[tokio::test]
async fn a_decode_error_quoting_a_huge_string_is_cut_to_300_characters() {
    let forges = Forges::start().await;
    let huge = "x".repeat(100_000);
    let quoted = "invalid type: string \"";
    let expected = format!("{quoted}{}…", "x".repeat(300 - quoted.len()));
    for flavor in FLAVORS {
        for endpoint in ENDPOINTS {
            let outcome = forges
                .one(flavor, endpoint, Reply::value(&json!(huge)))
                .await;
            let message = outcome_decode_error(outcome, &forges.url(flavor, endpoint));
            assert_eq!(message, expected, "{flavor:?} {endpoint:?}");
        }
        let answer = with(
            valid(flavor, Endpoint::Single),
            &format!("/{}", number_key(flavor)),
            json!(huge),
        );
        let outcome = forges
            .one(flavor, Endpoint::Single, Reply::value(&answer))
            .await;
        let message = outcome_decode_error(outcome, &forges.url(flavor, Endpoint::Single));
        assert_eq!(message, expected, "{flavor:?}");
    }
}

/// The port of a server's `http://127.0.0.1:PORT`.
fn port(server: &Server) -> &str {
    server.url.rsplit(':').next().unwrap()
}

/// A `next` link on the same origin is followed with the credential, and the items
/// of both pages are returned.
#[tokio::test]
async fn a_next_link_on_the_same_origin_is_followed() {
    let forges = Forges::start().await;
    for (flavor, credential, value) in [
        (Flavor::GitHub, "authorization", "Bearer gh-token"),
        (Flavor::GitLab, "private-token", "gl-token"),
    ] {
        let second = "/elsewhere/pulls?page=2&per_page=100";
        forges.server.push(
            Reply::value(&json!([item(flavor, 101), item(flavor, 102)])).header(
                "link",
                format!("<{}{second}>; rel=\"next\"", forges.server.url),
            ),
        );
        forges
            .server
            .push(Reply::value(&json!([item(flavor, 103)])));
        let result = forges
            .forge(flavor)
            .open_pull_requests(&target(flavor))
            .await;
        assert_eq!(result.unwrap(), LISTED.map(|n| expected_item(flavor, n)));
        let seen = forges.server.take_seen();
        assert_eq!(
            seen.iter().map(|s| s.uri.as_str()).collect::<Vec<_>>(),
            [path(flavor, Endpoint::List), second]
        );
        assert_eq!(seen[1].headers[credential], value, "{flavor:?}");
        assert_eq!(forges.server.unanswered(), 0);
    }
}

/// A `next` link to another origin (another port, another host name for the same
/// address and port, another scheme) is refused before any request is made for it,
/// and the whole list fails: the credential must not travel to a host the forge
/// names. A second server stands in for the other host and sees no request.
#[tokio::test]
async fn a_next_link_to_another_origin_is_refused_without_a_request() {
    let forges = Forges::start().await;
    let other = Server::start().await;
    let port = port(&forges.server);
    let elsewhere = [
        format!("{}/repos/acme/widget/pulls?page=2", other.url),
        format!("http://localhost:{port}/repos/acme/widget/pulls?page=2"),
        format!("https://127.0.0.1:{port}/repos/acme/widget/pulls?page=2"),
    ];
    for flavor in FLAVORS {
        let url = forges.url(flavor, Endpoint::List);
        for next in &elsewhere {
            let page = Reply::value(&valid(flavor, Endpoint::List))
                .header("link", format!("<{next}>; rel=\"next\""));
            let outcome = forges.one(flavor, Endpoint::List, page).await;
            assert_eq!(
                outcome_decode_error(outcome, &url),
                format!("refusing a next page on another origin: {next}"),
                "{flavor:?}"
            );
        }
    }
    assert_eq!(other.take_seen().len(), 0);
    assert_eq!(other.unanswered(), 0);
}

/// A redirect to another origin (another port, or another host name for the same
/// address and port) is not followed, directly or after a same-origin hop: the 3xx
/// is the HTTP error of the request, and the other host sees no request (GitLab's
/// `PRIVATE-TOKEN`, which reqwest does not strip across hosts, would go along).
#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed() {
    let forges = Forges::start().await;
    let other = Server::start().await;
    let port = port(&forges.server);
    let stolen = format!("{}/stolen", other.url);
    let renamed = format!("http://localhost:{port}/stolen");
    for flavor in FLAVORS {
        for endpoint in ENDPOINTS {
            let url = forges.url(flavor, endpoint);
            for (status, location) in [
                (301, &stolen),
                (302, &renamed),
                (307, &stolen),
                (308, &renamed),
            ] {
                let reply = Reply::new(status, "text/html", "Moved").header("location", location);
                let outcome = forges.one(flavor, endpoint, reply).await;
                assert_eq!(
                    http_error(outcome, &url),
                    (status, "Moved".to_owned()),
                    "{flavor:?} {endpoint:?} {location}"
                );
            }

            let hop = "/moved";
            forges
                .server
                .push(Reply::new(301, "text/html", "Moved").header("location", hop));
            forges
                .server
                .push(Reply::new(302, "text/html", "Moved again").header("location", &stolen));
            let outcome = forges.call(flavor, endpoint).await;
            assert_eq!(
                http_error(outcome, &url),
                (302, "Moved again".to_owned()),
                "{flavor:?} {endpoint:?}"
            );
            let seen = forges.server.take_seen();
            assert_eq!(
                seen.iter().map(|s| s.uri.as_str()).collect::<Vec<_>>(),
                [path(flavor, endpoint), hop]
            );
            assert_eq!(forges.server.unanswered(), 0);
        }
    }
    assert_eq!(other.take_seen().len(), 0);
}
