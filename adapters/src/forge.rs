//! What the daemon asks of a forge, independent of which forge it is: the head of a
//! watched branch and the open pull/merge requests against it, and what differs
//! between forges as objects ([`Forge::references`], [`Forge::webhooks`]) or
//! answers ([`Forge::mergeable_needs_single_request`]), and the one write: a commit
//! status ([`Forge::post_status`]). The GitHub and GitLab clients implement
//! [`Forge`]; the daemon cannot tell them apart.

use std::time::{Duration, SystemTime};

use crate::hooks::WebhookReceiver;
use crate::references::ReferenceSyntax;
use crate::results::CommitStatus;
use crate::{BoxFuture, RepoId};

/// A polled unit: one branch of one repository.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchTarget {
    pub repo: RepoId,
    pub branch: String,
}

impl std::fmt::Display for WatchTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.repo, self.branch)
    }
}

/// An open pull request (GitHub) or merge request (GitLab), forge-neutral.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    /// The visible number (GitLab: the IID).
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub author: String,
    /// GitHub's `author_association` (`OWNER`, `MEMBER`, …); `None` on GitLab.
    pub author_association: Option<String>,
    pub labels: Vec<String>,
    pub draft: bool,
    /// `updated_at` as unix seconds, when the forge sent a parseable one.
    pub updated_at: Option<i64>,
    pub head_sha: String,
    /// The source branch name.
    pub head_ref: String,
    /// The repository the head lives in; `None` when it was deleted (a deleted fork).
    pub head_repo: Option<RepoId>,
    /// The forge's numeric id of the head repository (`source_project_id`).
    pub head_repo_numeric_id: Option<u64>,
    pub base_repo: RepoId,
    pub base_branch: String,
    /// The head of the base branch as the forge last computed it.
    pub base_sha: Option<String>,
    pub state: PrState,
    pub web_url: String,
    /// Only known from single-PR endpoints; `None` until computed.
    pub mergeable: Option<bool>,
    /// Where the forge keeps the PR's refs in the base repository:
    /// `refs/pull/N` (GitHub), `refs/merge-requests/N` (GitLab).
    pub refs_prefix: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrState {
    Open,
    Closed,
    Merged,
}

impl PrState {
    pub fn as_str(self) -> &'static str {
        match self {
            PrState::Open => "open",
            PrState::Closed => "closed",
            PrState::Merged => "merged",
        }
    }
}

/// Which ref of a pull request the CI builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TestRef {
    /// The PR head as pushed (survives deletion of a fork).
    Head,
    /// The forge's test merge of the head into the base.
    Merge,
}

impl TestRef {
    pub fn as_str(self) -> &'static str {
        match self {
            TestRef::Head => "head",
            TestRef::Merge => "merge",
        }
    }
}

impl PullRequest {
    /// The full ref name, e.g. `refs/pull/12/merge`.
    pub fn test_ref(&self, which: TestRef) -> String {
        format!("{}/{}", self.refs_prefix, which.as_str())
    }
}

/// The last rate-limit figures a forge reported (`x-ratelimit-*` / `RateLimit-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub used: Option<u64>,
    pub reset_at: Option<SystemTime>,
    pub resource: Option<String>,
}

/// Counts of responses by outcome since the client was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// 2xx with a body.
    pub fresh: u64,
    /// 304 Not Modified.
    pub not_modified: u64,
    /// Any other status, or no response at all.
    pub failed: u64,
    /// How long they took, from sent to answered.
    pub durations: crate::http::RequestDurations,
}

/// The counts of two clients of one forge (before and after a reload).
impl std::ops::Add for RequestStats {
    type Output = RequestStats;
    fn add(self, other: RequestStats) -> RequestStats {
        RequestStats {
            fresh: self.fresh + other.fresh,
            not_modified: self.not_modified + other.not_modified,
            failed: self.failed + other.failed,
            durations: self.durations + other.durations,
        }
    }
}

impl RequestStats {
    pub fn total(&self) -> u64 {
        self.fresh + self.not_modified + self.failed
    }
}

/// Errors a caller acts on. A 304 is not one of them: it is an answer.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("{url}: not found (HTTP 404){}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    NotFound {
        url: String,
        message: Option<String>,
    },
    #[error("{url}: rate limited (HTTP {status}){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        url: String,
        status: u16,
        retry_after: Option<Duration>,
        reset_at: Option<SystemTime>,
    },
    #[error("{url}: HTTP {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: timed out")]
    Timeout { url: String },
    /// Not sent: the forge is paused by its rate limit.
    #[error("{url}: not sent, the forge is paused by its rate limit until {}", humantime::format_rfc3339_seconds(*until))]
    Paused { url: String, until: SystemTime },
    /// A write refused 401, 403 (not a rate limit) or 404: the token may not write
    /// there, or the repository is gone. Retrying does not help.
    #[error("{url}: no permission to write (HTTP {status}){}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    NoPermission {
        url: String,
        status: u16,
        message: String,
    },
    /// Not sent: the forge's write budget is spent; there is room again at `until`.
    #[error("{url}: not sent, the forge's write budget is spent until {}", humantime::format_rfc3339_seconds(*until))]
    WriteLimited { url: String, until: SystemTime },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: unexpected response: {message}")]
    Decode { url: String, message: String },
}

/// A forge client. One instance per configured forge (and so per credential).
pub trait Forge: Send + Sync {
    /// The host whose repositories this forge owns (`github.com`).
    fn host(&self) -> &str;

    /// The repository's default branch (for packages that name no branch).
    fn default_branch<'a>(&'a self, repo: &'a RepoId) -> BoxFuture<'a, Result<String, ForgeError>>;

    /// The commit sha at the head of the target's branch.
    fn branch_head<'a>(
        &'a self,
        target: &'a WatchTarget,
    ) -> BoxFuture<'a, Result<String, ForgeError>> {
        Box::pin(async move {
            self.branch_head_if_changed(target, false)
                .await?
                .ok_or_else(|| unanswered(target))
        })
    }

    /// [`Forge::branch_head`] for a caller that holds (`held`) the answer of the
    /// last call: `None` when the forge says it did not change (a 304), without
    /// reading or decoding the stored body. Never `None` when not `held`.
    fn branch_head_if_changed<'a>(
        &'a self,
        target: &'a WatchTarget,
        held: bool,
    ) -> BoxFuture<'a, Result<Option<String>, ForgeError>>;

    /// One pull request by number, in any state, with what only the single-PR
    /// endpoint tells (GitHub's `mergeable`). `NotFound` when it does not exist.
    fn pull_request<'a>(
        &'a self,
        repo: &'a RepoId,
        number: u64,
    ) -> BoxFuture<'a, Result<PullRequest, ForgeError>>;

    /// Every open pull request whose base is the target's branch, all pages.
    fn open_pull_requests<'a>(
        &'a self,
        target: &'a WatchTarget,
    ) -> BoxFuture<'a, Result<Vec<PullRequest>, ForgeError>> {
        Box::pin(async move {
            self.open_pull_requests_if_changed(target, false)
                .await?
                .ok_or_else(|| unanswered(target))
        })
    }

    /// [`Forge::open_pull_requests`] for a caller that holds the list of the last
    /// call: `None` when every page answered 304 (no stored body read or decoded).
    fn open_pull_requests_if_changed<'a>(
        &'a self,
        target: &'a WatchTarget,
        held: bool,
    ) -> BoxFuture<'a, Result<Option<Vec<PullRequest>>, ForgeError>>;

    /// The last rate-limit figures seen.
    fn rate_limit(&self) -> Option<RateLimit>;

    /// Until when the forge's rate limit pauses it, if it does now.
    fn paused_until(&self) -> Option<SystemTime>;

    /// The pause in force now, with its reason.
    fn pause(&self) -> Option<crate::governor::Pause> {
        self.paused_until().map(|until| crate::governor::Pause {
            until,
            reason: String::new(),
        })
    }

    /// Response counts so far.
    fn stats(&self) -> RequestStats;

    /// How descriptions refer to this forge's pull requests (short forms, URLs).
    fn references(&self) -> &dyn ReferenceSyntax;

    /// How this forge's webhooks are verified and read.
    fn webhooks(&self) -> &dyn WebhookReceiver;

    /// Sets `status` on commit `sha` of `repo` (one POST, never retried here: the
    /// caller retries `Http` (5xx), `Timeout`, `Transport`, `RateLimited`, `Paused`
    /// and `WriteLimited` later, and reports `NoPermission` once). A status the forge
    /// says the commit already has is `Ok`.
    fn post_status<'a>(
        &'a self,
        repo: &'a RepoId,
        sha: &'a str,
        status: &'a CommitStatus,
    ) -> BoxFuture<'a, Result<(), ForgeError>>;

    /// Whether a pull request's `mergeable` is known only from
    /// [`Forge::pull_request`] (GitHub), the open list not carrying it; `false`
    /// when the list reports it (GitLab).
    fn mergeable_needs_single_request(&self) -> bool;
}

/// An `_if_changed` call that was not `held` answered "unchanged": a client bug.
fn unanswered(target: &WatchTarget) -> ForgeError {
    ForgeError::Decode {
        url: target.to_string(),
        message: "the client answered \"unchanged\" to a caller that holds no answer".to_owned(),
    }
}
