//! The GitLab REST v4 client (gitlab.com and self-hosted): branch heads and open
//! merge requests of watch targets, with the same contract as the GitHub client.
//!
//! Project paths of any subgroup depth and branch names travel URL-encoded as one
//! path segment. One merge-request list per project and target branch, all pages,
//! each revalidated with its ETag (GitLab still counts a 304 against its rate
//! limit, so the number of requests is kept to that). No `GET /user` at start.
//! Commit statuses go to `POST /projects/:id/statuses/:sha`; GitLab refuses a
//! status that is already in force with a 400 ("Cannot transition status"), which
//! is the state wanted, so it counts as done.

use std::sync::Arc;

use serde::Deserialize;

use crate::forge::{Forge, ForgeError, PrState, PullRequest, RateLimit, RequestStats, WatchTarget};
use crate::governor::PauseStore;
use crate::hooks::WebhookReceiver;
use crate::http::{ClientOptions, ConditionalClient, ValidatorStore};
use crate::references::ReferenceSyntax;
use crate::results::{BuildState, CommitStatus};
use crate::{BoxFuture, RepoId, Secret};

pub mod hooks;
pub mod references;

#[derive(Clone, Debug)]
pub struct GitLabOptions {
    /// The host of the repositories (`gitlab.com`, `gitlab.example.org`).
    pub host: String,
    /// `https://HOST/api/v4`.
    pub api_url: String,
    /// Sent as `PRIVATE-TOKEN` (personal, group or project access token).
    pub token: Option<Secret>,
    pub client: ClientOptions,
}

pub struct GitLabClient {
    host: String,
    api_url: url::Url,
    http: ConditionalClient,
}

impl GitLabClient {
    pub fn new(
        options: GitLabOptions,
        store: Arc<dyn ValidatorStore>,
    ) -> Result<GitLabClient, ForgeError> {
        let api_url = url::Url::parse(options.api_url.trim_end_matches('/')).map_err(|e| {
            ForgeError::Transport {
                url: options.api_url.clone(),
                message: format!("invalid API URL: {e}"),
            }
        })?;
        let auth = options.token.map(|t| ("PRIVATE-TOKEN", t));
        let headers = vec![("Accept", "application/json")];
        let http = ConditionalClient::new(&options.client, store, auth, headers)?;
        Ok(GitLabClient {
            host: options.host,
            api_url,
            http,
        })
    }

    /// Keeps this client's rate-limit pauses in `store`, keyed by the API's origin
    /// (so a new client of the same forge, after a restart or a reload, even with
    /// another token, starts paused when this one was).
    pub fn with_pauses(mut self, store: Arc<dyn PauseStore>) -> GitLabClient {
        let key = self.api_url.origin().ascii_serialization();
        self.http.keep_pauses(store, &key);
        self
    }

    /// `API/projects/PATH/…segments`, the project path and each segment encoded as
    /// one path segment (`sensors%2Fdrivers%2Flidar-x`).
    fn project_url(&self, repo: &RepoId, segments: &[&str]) -> String {
        let mut url = self.api_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("projects").push(repo.path());
            for s in segments {
                path.push(s);
            }
        }
        url.to_string()
    }

    async fn fetch_branch_head(
        &self,
        target: &WatchTarget,
        held: bool,
    ) -> Result<Option<String>, ForgeError> {
        let url = self.project_url(&target.repo, &["repository", "branches", &target.branch]);
        let Some(page) = self.http.get_if_changed(&url, held).await? else {
            return Ok(None);
        };
        let branch: GlBranch = decode(&url, &page.body)?;
        Ok(Some(branch.commit.id))
    }

    async fn fetch_open_merge_requests(
        &self,
        target: &WatchTarget,
        held: bool,
    ) -> Result<Option<Vec<PullRequest>>, ForgeError> {
        let mut url = url::Url::parse(&self.project_url(&target.repo, &["merge_requests"]))
            .map_err(|e| ForgeError::Decode {
                url: target.repo.to_string(),
                message: e.to_string(),
            })?;
        url.query_pairs_mut()
            .append_pair("state", "opened")
            .append_pair("target_branch", &target.branch)
            .append_pair("per_page", "100");
        let url = url.to_string();
        let Some(pages) = self.http.get_all_pages_if_changed(&url, held).await? else {
            return Ok(None);
        };
        crate::decode::pull_requests_of(&url, &pages, "merge request", |mr: GlMergeRequest| {
            mr.into_pull_request(&target.repo, Some(&target.branch))
        })
        .map(Some)
    }
}

fn decode<T: for<'de> Deserialize<'de>>(url: &str, body: &[u8]) -> Result<T, ForgeError> {
    serde_json::from_slice(body).map_err(|e| crate::decode::decode_error(url, &e))
}

impl Forge for GitLabClient {
    fn host(&self) -> &str {
        &self.host
    }

    fn default_branch<'a>(&'a self, repo: &'a RepoId) -> BoxFuture<'a, Result<String, ForgeError>> {
        Box::pin(async move {
            let url = self.project_url(repo, &[]);
            let page = self.http.get(&url).await?;
            let project: GlProject = decode(&url, &page.body)?;
            project.default_branch.ok_or_else(|| ForgeError::Decode {
                url,
                message: "the project has no default branch (empty repository?)".to_owned(),
            })
        })
    }

    fn branch_head_if_changed<'a>(
        &'a self,
        target: &'a WatchTarget,
        held: bool,
    ) -> BoxFuture<'a, Result<Option<String>, ForgeError>> {
        Box::pin(self.fetch_branch_head(target, held))
    }

    fn pull_request<'a>(
        &'a self,
        repo: &'a RepoId,
        number: u64,
    ) -> BoxFuture<'a, Result<PullRequest, ForgeError>> {
        Box::pin(async move {
            let url = self.project_url(repo, &["merge_requests", &number.to_string()]);
            let page = self.http.get(&url).await?;
            let mr: GlMergeRequest = decode(&url, &page.body)?;
            mr.into_pull_request(repo, None)
                .map_err(|message| ForgeError::Decode { url, message })
        })
    }

    fn open_pull_requests_if_changed<'a>(
        &'a self,
        target: &'a WatchTarget,
        held: bool,
    ) -> BoxFuture<'a, Result<Option<Vec<PullRequest>>, ForgeError>> {
        Box::pin(self.fetch_open_merge_requests(target, held))
    }

    fn post_status<'a>(
        &'a self,
        repo: &'a RepoId,
        sha: &'a str,
        status: &'a CommitStatus,
    ) -> BoxFuture<'a, Result<(), ForgeError>> {
        Box::pin(async move {
            let url = self.project_url(repo, &["statuses", sha]);
            match self.http.post_json(&url, &status_body(status)).await {
                Ok(_) => Ok(()),
                Err(ForgeError::Http {
                    status: 400,
                    message,
                    ..
                }) if message.contains("Cannot transition status") => {
                    tracing::debug!(%url, "the commit already has that status: {message}");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
    }

    fn rate_limit(&self) -> Option<RateLimit> {
        self.http.rate_limit()
    }

    fn paused_until(&self) -> Option<std::time::SystemTime> {
        self.http.pause().map(|p| p.until)
    }

    fn pause(&self) -> Option<crate::governor::Pause> {
        self.http.pause()
    }

    fn stats(&self) -> RequestStats {
        self.http.stats()
    }

    fn references(&self) -> &dyn ReferenceSyntax {
        &references::GitLabReferences
    }

    fn webhooks(&self) -> &dyn WebhookReceiver {
        &hooks::GitLabHooks
    }

    /// The merge-request list carries `detailed_merge_status` (or the legacy
    /// `merge_status`).
    fn mergeable_needs_single_request(&self) -> bool {
        false
    }
}

/// GitLab's states are `pending|running|success|failed|canceled` (and `skipped`).
fn state_name(state: BuildState) -> &'static str {
    match state {
        BuildState::Pending => "pending",
        BuildState::Running => "running",
        BuildState::Success => "success",
        BuildState::Failure | BuildState::Error => "failed",
        BuildState::Cancelled => "canceled",
    }
}

/// The body of a status post (GitLab takes JSON): the context is its `name`.
fn status_body(status: &CommitStatus) -> serde_json::Value {
    let mut body = serde_json::json!({
        "state": state_name(status.state),
        "name": status.context,
        "description": status.short_description(),
    });
    if let Some(url) = &status.target_url {
        body["target_url"] = serde_json::json!(url);
    }
    body
}

#[derive(Deserialize)]
struct GlProject {
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct GlBranch {
    commit: GlCommit,
}

#[derive(Deserialize)]
struct GlCommit {
    id: String,
}

#[derive(Deserialize)]
struct GlMergeRequest {
    iid: u64,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    diff_refs: Option<GlDiffRefs>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    author: Option<GlUser>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    #[serde(default)]
    draft: Option<bool>,
    /// Deprecated spelling of `draft` on older servers.
    #[serde(default)]
    work_in_progress: Option<bool>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    sha: Option<String>,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    source_project_id: Option<u64>,
    #[serde(default)]
    target_project_id: Option<u64>,
    #[serde(default)]
    web_url: Option<String>,
    #[serde(default)]
    detailed_merge_status: Option<String>,
    /// Deprecated: `can_be_merged`, `cannot_be_merged`, `unchecked`, `checking`.
    #[serde(default)]
    merge_status: Option<String>,
}

#[derive(Deserialize)]
struct GlDiffRefs {
    #[serde(default)]
    base_sha: Option<String>,
}

#[derive(Deserialize)]
struct GlUser {
    username: String,
}

impl GlMergeRequest {
    /// `Some(true)` when GitLab says the MR merges cleanly, `Some(false)` when it
    /// says it does not, `None` while it is still checking.
    fn mergeable(&self) -> Option<bool> {
        if let Some(detailed) = &self.detailed_merge_status {
            return match detailed.as_str() {
                "mergeable" => Some(true),
                "checking" | "unchecked" | "preparing" | "approvals_syncing" => None,
                _ => Some(false),
            };
        }
        match self.merge_status.as_deref() {
            Some("can_be_merged") => Some(true),
            Some("cannot_be_merged" | "cannot_be_merged_recheck") => Some(false),
            _ => None,
        }
    }

    fn into_pull_request(
        self,
        base_repo: &RepoId,
        expected_branch: Option<&str>,
    ) -> Result<PullRequest, String> {
        if let Some(branch) = expected_branch
            && self.target_branch != branch
        {
            return Err(format!(
                "!{} targets `{}`, asked for `{branch}`",
                self.iid, self.target_branch
            ));
        }
        let state = match self.state.as_deref() {
            Some("merged") => PrState::Merged,
            Some("closed" | "locked") => PrState::Closed,
            _ => PrState::Open,
        };
        let mergeable = self.mergeable();
        let Some(head_sha) = self.sha.filter(|s| !s.is_empty()) else {
            return Err(format!("!{} has no head sha", self.iid));
        };
        // The source project's path is not in the list; a fork's is left unknown.
        let same_project =
            self.source_project_id.is_some() && self.source_project_id == self.target_project_id;
        Ok(PullRequest {
            number: self.iid,
            title: self.title.unwrap_or_default(),
            body: self.description,
            author: self
                .author
                .map(|a| a.username)
                .unwrap_or_else(|| "ghost".to_owned()),
            author_association: None,
            labels: self.labels.unwrap_or_default(),
            draft: self.draft.or(self.work_in_progress).unwrap_or(false),
            updated_at: self
                .updated_at
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                .map(crate::http::unix_seconds),
            head_sha,
            head_ref: self.source_branch,
            head_repo: same_project.then(|| base_repo.clone()),
            head_repo_numeric_id: self.source_project_id,
            base_repo: base_repo.clone(),
            base_branch: self.target_branch,
            base_sha: self.diff_refs.and_then(|d| d.base_sha),
            state,
            web_url: self.web_url.unwrap_or_else(|| {
                format!("{}/-/merge_requests/{}", base_repo.web_url(), self.iid)
            }),
            mergeable,
            refs_prefix: format!("refs/merge-requests/{}", self.iid),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::TestRef;
    use crate::http::MemoryStore;

    fn target() -> WatchTarget {
        WatchTarget {
            repo: RepoId::parse("https://gitlab.example.org/Sensors/drivers/lidar-x.git").unwrap(),
            branch: "release/2".into(),
        }
    }

    #[test]
    fn builds_api_urls_with_encoded_project_and_branch() {
        let c = GitLabClient::new(
            GitLabOptions {
                host: "gitlab.example.org".into(),
                api_url: "https://gitlab.example.org/api/v4/".into(),
                token: None,
                client: ClientOptions::default(),
            },
            Arc::new(MemoryStore::default()),
        )
        .unwrap();
        assert_eq!(
            c.project_url(&target().repo, &["repository", "branches", "release/2"]),
            "https://gitlab.example.org/api/v4/projects/sensors%2Fdrivers%2Flidar-x/repository/branches/release%2F2"
        );
    }

    #[test]
    fn status_bodies_use_gitlab_states() {
        let names: Vec<&str> = BuildState::ALL.into_iter().map(state_name).collect();
        assert_eq!(
            names,
            [
                "pending", "running", "success", "failed", "failed", "canceled"
            ]
        );
        let status = CommitStatus {
            state: BuildState::Cancelled,
            target_url: Some("https://ci/b/1".into()),
            description: "stopped".into(),
            context: "forgewatch/ws".into(),
        };
        assert_eq!(
            status_body(&status),
            serde_json::json!({
                "state": "canceled", "name": "forgewatch/ws", "description": "stopped",
                "target_url": "https://ci/b/1"
            })
        );
    }

    fn mr(json: serde_json::Value) -> PullRequest {
        serde_json::from_value::<GlMergeRequest>(json)
            .unwrap()
            .into_pull_request(&target().repo, Some("release/2"))
            .unwrap()
    }

    #[test]
    fn reads_modern_and_legacy_merge_requests() {
        let modern = mr(serde_json::json!({
            "iid": 7, "title": "t", "description": null, "author": {"username": "bob"},
            "labels": ["a"], "draft": true, "work_in_progress": true,
            "updated_at": "2026-01-01T00:00:00.000Z", "sha": "abc",
            "source_branch": "fix", "target_branch": "release/2",
            "source_project_id": 2, "target_project_id": 1,
            "web_url": "https://gitlab.example.org/sensors/drivers/lidar-x/-/merge_requests/7",
            "detailed_merge_status": "draft_status", "merge_status": "cannot_be_merged"
        }));
        assert!(modern.draft);
        assert_eq!(modern.mergeable, Some(false));
        assert_eq!(modern.head_repo, None, "a fork's path is not known");
        assert_eq!(modern.head_repo_numeric_id, Some(2));
        assert_eq!(modern.updated_at, Some(1_767_225_600));
        assert_eq!(
            modern.test_ref(TestRef::Merge),
            "refs/merge-requests/7/merge"
        );

        let legacy = mr(serde_json::json!({
            "iid": 8, "work_in_progress": false, "sha": "def", "source_branch": "x",
            "target_branch": "release/2", "source_project_id": 1, "target_project_id": 1,
            "merge_status": "can_be_merged"
        }));
        assert!(!legacy.draft);
        assert_eq!(legacy.mergeable, Some(true));
        assert_eq!(legacy.head_repo, Some(target().repo));
        assert_eq!(
            legacy.web_url,
            "https://gitlab.example.org/sensors/drivers/lidar-x/-/merge_requests/8"
        );
    }

    #[test]
    fn a_merge_request_without_head_is_an_item_error() {
        let json = serde_json::json!({
            "iid": 9, "sha": null, "source_branch": "x", "target_branch": "release/2"
        });
        let mr: GlMergeRequest = serde_json::from_value(json).unwrap();
        assert!(
            mr.into_pull_request(&target().repo, Some("release/2"))
                .is_err()
        );
    }
}
