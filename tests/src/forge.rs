//! One interface over the fake GitHub and the fake GitLab, so an end-to-end test
//! written once runs against both forges and proves the daemon cannot tell them
//! apart. Paths are `owner/repo` or `group/sub/project`; "pull request" means a
//! GitLab merge request on GitLab.

use crate::fake_github::{self, FakeGitHub, NewPr};
use crate::fake_gitlab::{self, FakeGitLab, NewMr};

/// A request as either fake recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub query: String,
    pub status: u16,
    pub conditional: bool,
    /// The credential header's value (`Authorization` or `PRIVATE-TOKEN`).
    pub credential: Option<String>,
    /// When it arrived.
    pub arrived: std::time::SystemTime,
    /// The request's `Accept-Encoding`.
    pub accept_encoding: Option<String>,
    /// The response body went gzip-compressed.
    pub gzip: bool,
}

impl From<fake_github::RequestRecord> for Request {
    fn from(r: fake_github::RequestRecord) -> Request {
        Request {
            path: r.path,
            query: r.query,
            status: r.status,
            conditional: r.conditional,
            credential: r.authorization,
            arrived: r.arrived,
            accept_encoding: r.accept_encoding,
            gzip: r.gzip,
        }
    }
}

impl From<fake_gitlab::RequestRecord> for Request {
    fn from(r: fake_gitlab::RequestRecord) -> Request {
        Request {
            path: r.path,
            query: r.query,
            status: r.status,
            conditional: r.conditional,
            credential: r.authorization,
            arrived: r.arrived,
            accept_encoding: r.accept_encoding,
            gzip: r.gzip,
        }
    }
}

pub trait FakeForge: Send + Sync {
    /// `github` or `gitlab`, as in the configuration.
    fn kind(&self) -> &'static str;
    /// The host of repository URLs.
    fn host(&self) -> &'static str;
    fn api_url(&self) -> String;
    /// The credential header value the daemon sends for `token`.
    fn credential(&self, token: &str) -> String;
    fn require_token(&self, token: Option<&str>);
    fn create_repo(&self, path: &str, branch: &str) -> String;
    fn push(&self, path: &str, branch: &str) -> String;
    /// A same-repository pull request by `alice`.
    fn open_pr(&self, path: &str, base: &str, head: &str) -> u64;
    /// A pull request from `fork` (created here) by `author`.
    fn open_fork_pr(&self, path: &str, base: &str, head: &str, fork: &str, author: &str) -> u64;
    fn push_pr(&self, path: &str, number: u64) -> String;
    fn close_pr(&self, path: &str, number: u64);
    fn set_pr_title(&self, path: &str, number: u64, title: &str);
    fn set_pr_body(&self, path: &str, number: u64, body: &str);
    fn set_labels(&self, path: &str, number: u64, labels: &[&str]);
    fn set_draft(&self, path: &str, number: u64, draft: bool);
    /// Moves its `updated_at` `days` into the past.
    fn age_pr(&self, path: &str, number: u64, days: u64);
    /// The ref the daemon should build for an open, non-draft, mergeable PR of this
    /// fake with `pr_ref: auto`: the merge ref.
    fn test_ref(&self, number: u64) -> String;
    fn pr_url(&self, path: &str, number: u64) -> String;
    /// Request path prefixes of one repository's branch and pull-request routes.
    fn branch_path(&self, path: &str) -> String;
    fn pulls_path(&self, path: &str) -> String;
    /// Whether `path` is the single-PR endpoint (asked for mergeability, lookups).
    fn is_single_pr(&self, path: &str) -> bool;
    fn requests(&self) -> Vec<Request>;
    fn clear_requests(&self);
}

impl FakeForge for FakeGitHub {
    fn kind(&self) -> &'static str {
        "github"
    }
    fn host(&self) -> &'static str {
        "github.com"
    }
    fn api_url(&self) -> String {
        FakeGitHub::api_url(self)
    }
    fn credential(&self, token: &str) -> String {
        format!("Bearer {token}")
    }
    fn require_token(&self, token: Option<&str>) {
        FakeGitHub::require_token(self, token);
    }
    fn create_repo(&self, path: &str, branch: &str) -> String {
        FakeGitHub::create_repo(self, path, branch)
    }
    fn push(&self, path: &str, branch: &str) -> String {
        FakeGitHub::push(self, path, branch)
    }
    fn open_pr(&self, path: &str, base: &str, head: &str) -> u64 {
        FakeGitHub::open_pr(self, path, NewPr::new(base, head))
    }
    fn open_fork_pr(&self, path: &str, base: &str, head: &str, fork: &str, author: &str) -> u64 {
        let mut pr = NewPr::new(base, head);
        pr.head_repo = Some(fork.to_owned());
        pr.author = author.to_owned();
        pr.author_association = "CONTRIBUTOR".to_owned();
        FakeGitHub::open_pr(self, path, pr)
    }
    fn push_pr(&self, path: &str, number: u64) -> String {
        FakeGitHub::push_pr(self, path, number)
    }
    fn close_pr(&self, path: &str, number: u64) {
        FakeGitHub::close_pr(self, path, number);
    }
    fn set_pr_title(&self, path: &str, number: u64, title: &str) {
        FakeGitHub::set_pr_title(self, path, number, title);
    }
    fn set_pr_body(&self, path: &str, number: u64, body: &str) {
        FakeGitHub::set_pr_body(self, path, number, Some(body));
    }
    fn set_labels(&self, path: &str, number: u64, labels: &[&str]) {
        FakeGitHub::set_labels(self, path, number, labels);
    }
    fn set_draft(&self, path: &str, number: u64, draft: bool) {
        FakeGitHub::set_draft(self, path, number, draft);
    }
    fn age_pr(&self, path: &str, number: u64, days: u64) {
        FakeGitHub::age_pr(self, path, number, days);
    }
    fn test_ref(&self, number: u64) -> String {
        format!("refs/pull/{number}/merge")
    }
    fn pr_url(&self, path: &str, number: u64) -> String {
        format!("https://github.com/{path}/pull/{number}")
    }
    fn branch_path(&self, path: &str) -> String {
        format!("/repos/{path}/branches/")
    }
    fn pulls_path(&self, path: &str) -> String {
        format!("/repos/{path}/pulls")
    }
    fn is_single_pr(&self, path: &str) -> bool {
        path.rsplit_once("/pulls/")
            .is_some_and(|(_, n)| n.parse::<u64>().is_ok())
    }
    fn requests(&self) -> Vec<Request> {
        FakeGitHub::requests(self)
            .into_iter()
            .map(Request::from)
            .collect()
    }
    fn clear_requests(&self) {
        FakeGitHub::clear_requests(self);
    }
}

/// `group/sub/project` as one encoded path segment.
fn encoded(path: &str) -> String {
    path.replace('/', "%2F")
}

impl FakeForge for FakeGitLab {
    fn kind(&self) -> &'static str {
        "gitlab"
    }
    fn host(&self) -> &'static str {
        "gitlab.example.org"
    }
    fn api_url(&self) -> String {
        FakeGitLab::api_url(self)
    }
    fn credential(&self, token: &str) -> String {
        token.to_owned()
    }
    fn require_token(&self, token: Option<&str>) {
        FakeGitLab::require_token(self, token);
    }
    fn create_repo(&self, path: &str, branch: &str) -> String {
        FakeGitLab::create_project(self, path, branch)
    }
    fn push(&self, path: &str, branch: &str) -> String {
        FakeGitLab::push(self, path, branch)
    }
    fn open_pr(&self, path: &str, base: &str, head: &str) -> u64 {
        FakeGitLab::open_mr(self, path, NewMr::new(head, base))
    }
    fn open_fork_pr(&self, path: &str, base: &str, head: &str, fork: &str, author: &str) -> u64 {
        FakeGitLab::fork_project(self, path, fork);
        let mut mr = NewMr::new(head, base);
        mr.source_project = Some(fork.to_owned());
        mr.author = author.to_owned();
        FakeGitLab::open_mr(self, path, mr)
    }
    fn push_pr(&self, path: &str, number: u64) -> String {
        FakeGitLab::push_mr(self, path, number)
    }
    fn close_pr(&self, path: &str, number: u64) {
        FakeGitLab::close_mr(self, path, number);
    }
    fn set_pr_title(&self, path: &str, number: u64, title: &str) {
        FakeGitLab::set_mr_title(self, path, number, title);
    }
    fn set_pr_body(&self, path: &str, number: u64, body: &str) {
        FakeGitLab::set_mr_description(self, path, number, Some(body));
    }
    fn set_labels(&self, path: &str, number: u64, labels: &[&str]) {
        FakeGitLab::set_labels(self, path, number, labels);
    }
    fn set_draft(&self, path: &str, number: u64, draft: bool) {
        FakeGitLab::set_draft(self, path, number, draft);
    }
    fn age_pr(&self, path: &str, number: u64, days: u64) {
        FakeGitLab::age_mr(self, path, number, days);
    }
    fn test_ref(&self, number: u64) -> String {
        format!("refs/merge-requests/{number}/merge")
    }
    fn pr_url(&self, path: &str, number: u64) -> String {
        format!("https://gitlab.example.org/{path}/-/merge_requests/{number}")
    }
    fn branch_path(&self, path: &str) -> String {
        format!("/api/v4/projects/{}/repository/branches/", encoded(path))
    }
    fn pulls_path(&self, path: &str) -> String {
        format!("/api/v4/projects/{}/merge_requests", encoded(path))
    }
    fn is_single_pr(&self, path: &str) -> bool {
        path.rsplit_once("/merge_requests/")
            .is_some_and(|(_, n)| n.parse::<u64>().is_ok())
    }
    fn requests(&self) -> Vec<Request> {
        FakeGitLab::requests(self)
            .into_iter()
            .map(Request::from)
            .collect()
    }
    fn clear_requests(&self) {
        FakeGitLab::clear_requests(self);
    }
}
