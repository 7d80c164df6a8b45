//! Commit statuses on the fake GitHub (`forge-apis.md` §7.2): `POST
//! /repos/{o}/{r}/statuses/{sha}` validated like GitHub (`state` one of
//! `pending|success|failure|error`, `description` at most 140 characters, 422 with
//! GitHub's error JSON otherwise; `context` defaults to `default`), answered 201 with
//! the status, and recorded in order for tests to read ([`FakeGitHub::statuses`]).
//! Faults: the next status posts answered 502, a repository whose posts are refused
//! 403 like a token without `statuses: write`. The fake GitLab records into the same
//! [`StatusPost`].

use std::collections::HashSet;
use std::time::SystemTime;

use axum::http::Method;
use serde_json::{Value, json};

use super::http::{Reply, error};
use super::{FakeGitHub, GhState};
use crate::format::{pct_decode, rfc3339};

const STATES: [&str; 4] = ["pending", "success", "failure", "error"];
const DOCS: &str = "https://docs.github.com/rest/commits/statuses#create-a-commit-status";

/// One commit status as a fake forge accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusPost {
    /// `owner/repo` (GitLab: the project's full path), lower-cased on GitHub.
    pub repo: String,
    pub sha: String,
    /// The forge's own name of the state (`failure` on GitHub, `failed` on GitLab).
    pub state: String,
    pub target_url: Option<String>,
    pub description: Option<String>,
    /// GitHub's `context`, GitLab's `name`.
    pub context: String,
    pub received: SystemTime,
}

/// The statuses accepted and the faults in force.
#[derive(Default)]
pub(super) struct Statuses {
    posts: Vec<StatusPost>,
    fail_next: usize,
    refused: HashSet<String>,
}

impl FakeGitHub {
    /// Every status post accepted so far, in order.
    pub fn statuses(&self) -> Vec<StatusPost> {
        self.lock().statuses.posts.clone()
    }

    /// The next `n` status posts are answered `502 {"message":"Server Error"}`.
    pub fn fail_status_posts(&self, n: usize) {
        self.lock().statuses.fail_next += n;
    }

    /// Status posts to `owner/repo` are refused 403 `Resource not accessible by
    /// integration`, as for a token without `statuses: write`.
    pub fn refuse_status_posts(&self, full_name: &str) {
        self.lock()
            .statuses
            .refused
            .insert(full_name.to_lowercase());
    }
}

impl GhState {
    /// The answer to `POST /repos/{o}/{r}/statuses/{sha}`; `None` for any other request.
    pub(super) fn post_status(
        &mut self,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> Option<Reply> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let ["repos", owner, name, "statuses", sha] = segments.as_slice() else {
            return None;
        };
        if method != Method::POST {
            return None;
        }
        let repo = format!("{}/{}", pct_decode(owner), pct_decode(name)).to_lowercase();
        if !self.repos.contains_key(&repo) {
            return Some(error(404, "Not Found", DOCS));
        }
        if self.statuses.refused.contains(&repo) {
            return Some(error(403, "Resource not accessible by integration", DOCS));
        }
        if self.statuses.fail_next > 0 {
            self.statuses.fail_next -= 1;
            return Some(error(502, "Server Error", DOCS));
        }
        let Ok(Value::Object(params)) = serde_json::from_slice::<Value>(body) else {
            return Some(error(400, "Problems parsing JSON", DOCS));
        };
        let text = |key: &str| params.get(key).and_then(Value::as_str).map(str::to_owned);
        let state = text("state").unwrap_or_default();
        if !STATES.contains(&state.as_str()) {
            return Some(invalid("state", "state is not included in the list"));
        }
        let description = text("description");
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 140)
        {
            let message = "description is too long (maximum is 140 characters)";
            return Some(invalid("description", message));
        }
        let post = StatusPost {
            repo: repo.clone(),
            sha: pct_decode(sha),
            state,
            target_url: text("target_url"),
            description,
            context: text("context").unwrap_or_else(|| "default".to_owned()),
            received: SystemTime::now(),
        };
        let id = self.fresh_id();
        let now = rfc3339(self.tick());
        let value = json!({
            "url": format!("{}/repos/{repo}/statuses/{}", self.api_url, post.sha),
            "id": id,
            "state": post.state,
            "description": post.description,
            "target_url": post.target_url,
            "context": post.context,
            "created_at": now,
            "updated_at": now,
        });
        self.statuses.posts.push(post);
        let mut reply = Reply {
            status: 201,
            headers: vec![("content-type", "application/json; charset=utf-8".to_owned())],
            body: serde_json::to_vec(&value).unwrap_or_default(),
        };
        reply.headers.push((
            "location",
            format!("{}/repos/{repo}/statuses/{id}", self.api_url),
        ));
        Some(reply)
    }
}

/// GitHub's 422 for a field that fails validation.
fn invalid(field: &str, message: &str) -> Reply {
    let body = json!({
        "message": "Validation Failed",
        "errors": [{"resource": "Status", "code": "custom", "field": field, "message": message}],
        "documentation_url": DOCS,
        "status": "422",
    });
    Reply {
        status: 422,
        headers: vec![("content-type", "application/json; charset=utf-8".to_owned())],
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}
