//! The GitHub REST client (github.com and GitHub Enterprise): branch heads and open
//! pull requests of watch targets, every request conditional, every list paginated;
//! and commit statuses (`POST /repos/{o}/{r}/statuses/{sha}`).

use std::sync::Arc;

use serde::Deserialize;

use crate::forge::{Forge, ForgeError, PrState, PullRequest, RateLimit, RequestStats, WatchTarget};
use crate::governor::PauseStore;
use crate::hooks::WebhookReceiver;
use crate::http::{ClientOptions, ConditionalClient, ValidatorStore};
use crate::references::ReferenceSyntax;
use crate::results::{BuildState, CommitStatus};
use crate::{BoxFuture, RepoId, Secret};

pub mod app;
pub mod hooks;
pub mod references;

/// What a GitHub client needs to know.
#[derive(Clone, Debug)]
pub struct GitHubOptions {
    /// The host of the repositories (`github.com`, `ghe.example.org`).
    pub host: String,
    /// `https://api.github.com`, or `https://HOST/api/v3` for Enterprise.
    pub api_url: String,
    pub token: Option<Secret>,
    pub client: ClientOptions,
}

pub struct GitHubClient {
    host: String,
    api_url: url::Url,
    http: ConditionalClient,
}

impl GitHubClient {
    pub fn new(
        options: GitHubOptions,
        store: Arc<dyn ValidatorStore>,
    ) -> Result<GitHubClient, ForgeError> {
        let api_url = url::Url::parse(options.api_url.trim_end_matches('/')).map_err(|e| {
            ForgeError::Transport {
                url: options.api_url.clone(),
                message: format!("invalid API URL: {e}"),
            }
        })?;
        let auth = options.token.map(|t| {
            (
                "Authorization",
                Secret::new(format!("Bearer {}", t.expose())),
            )
        });
        let headers = vec![
            ("Accept", "application/vnd.github+json"),
            ("X-GitHub-Api-Version", "2022-11-28"),
        ];
        let http = ConditionalClient::new(&options.client, store, auth, headers)?;
        Ok(GitHubClient {
            host: options.host,
            api_url,
            http,
        })
    }

    /// Keeps this client's rate-limit pauses in `store`, keyed by the API's origin
    /// (so a new client of the same forge, after a restart or a reload, even with
    /// another token, starts paused when this one was).
    pub fn with_pauses(mut self, store: Arc<dyn PauseStore>) -> GitHubClient {
        let key = self.api_url.origin().ascii_serialization();
        self.http.keep_pauses(store, &key);
        self
    }

    /// `API/repos/OWNER/REPO/…segments`, each segment percent-encoded as one
    /// path segment (a branch `feature/x` becomes `feature%2Fx`).
    fn repo_url(&self, repo: &RepoId, segments: &[&str]) -> String {
        let mut url = self.api_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("repos");
            for part in repo.path().split('/') {
                path.push(part);
            }
            for s in segments {
                path.push(s);
            }
        }
        url.to_string()
    }

    fn decode<T: for<'de> Deserialize<'de>>(url: &str, body: &[u8]) -> Result<T, ForgeError> {
        serde_json::from_slice(body).map_err(|e| crate::decode::decode_error(url, &e))
    }

    async fn fetch_branch_head(
        &self,
        target: &WatchTarget,
        held: bool,
    ) -> Result<Option<String>, ForgeError> {
        let url = self.repo_url(&target.repo, &["branches", &target.branch]);
        let Some(page) = self.http.get_if_changed(&url, held).await? else {
            return Ok(None);
        };
        let branch: GhBranch = Self::decode(&url, &page.body)?;
        Ok(Some(branch.commit.sha))
    }

    async fn fetch_open_pulls(
        &self,
        target: &WatchTarget,
        held: bool,
    ) -> Result<Option<Vec<PullRequest>>, ForgeError> {
        let mut url = url::Url::parse(&self.repo_url(&target.repo, &["pulls"])).map_err(|e| {
            ForgeError::Decode {
                url: target.repo.to_string(),
                message: e.to_string(),
            }
        })?;
        url.query_pairs_mut()
            .append_pair("state", "open")
            .append_pair("base", &target.branch)
            .append_pair("per_page", "100");
        let url = url.to_string();
        let Some(pages) = self.http.get_all_pages_if_changed(&url, held).await? else {
            return Ok(None);
        };
        crate::decode::pull_requests_of(&url, &pages, "pull request", |pr: GhPull| {
            pr.into_pull_request(&self.host, &target.repo, Some(&target.branch))
        })
        .map(Some)
    }
}

impl Forge for GitHubClient {
    fn host(&self) -> &str {
        &self.host
    }

    fn default_branch<'a>(&'a self, repo: &'a RepoId) -> BoxFuture<'a, Result<String, ForgeError>> {
        Box::pin(async move {
            let url = self.repo_url(repo, &[]);
            let page = self.http.get(&url).await?;
            let repo: GhRepository = Self::decode(&url, &page.body)?;
            Ok(repo.default_branch)
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
            let url = self.repo_url(repo, &["pulls", &number.to_string()]);
            let page = self.http.get(&url).await?;
            let pr: GhPull = Self::decode(&url, &page.body)?;
            pr.into_pull_request(&self.host, repo, None)
                .map_err(|message| ForgeError::Decode { url, message })
        })
    }

    fn open_pull_requests_if_changed<'a>(
        &'a self,
        target: &'a WatchTarget,
        held: bool,
    ) -> BoxFuture<'a, Result<Option<Vec<PullRequest>>, ForgeError>> {
        Box::pin(self.fetch_open_pulls(target, held))
    }

    fn post_status<'a>(
        &'a self,
        repo: &'a RepoId,
        sha: &'a str,
        status: &'a CommitStatus,
    ) -> BoxFuture<'a, Result<(), ForgeError>> {
        Box::pin(async move {
            let url = self.repo_url(repo, &["statuses", sha]);
            self.http.post_json(&url, &status_body(status)).await?;
            Ok(())
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
        &references::GitHubReferences
    }

    fn webhooks(&self) -> &dyn WebhookReceiver {
        &hooks::GitHubHooks
    }

    /// The list endpoint carries no `mergeable`: only the single-PR one computes it.
    fn mergeable_needs_single_request(&self) -> bool {
        true
    }
}

/// GitHub's states are `pending|success|failure|error`.
fn state_name(state: BuildState) -> &'static str {
    match state {
        BuildState::Pending | BuildState::Running => "pending",
        BuildState::Success => "success",
        BuildState::Failure => "failure",
        BuildState::Error | BuildState::Cancelled => "error",
    }
}

/// The body of a status post; `target_url` only when there is one.
fn status_body(status: &CommitStatus) -> serde_json::Value {
    let mut body = serde_json::json!({
        "state": state_name(status.state),
        "description": status.short_description(),
        "context": status.context,
    });
    if let Some(url) = &status.target_url {
        body["target_url"] = serde_json::json!(url);
    }
    body
}

#[derive(Deserialize)]
struct GhRepository {
    default_branch: String,
}

#[derive(Deserialize)]
struct GhBranch {
    commit: GhCommitRef,
}

#[derive(Deserialize)]
struct GhCommitRef {
    sha: String,
}

#[derive(Deserialize)]
struct GhPull {
    number: u64,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merged_at: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<GhUser>,
    #[serde(default)]
    labels: Option<Vec<GhLabel>>,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    updated_at: Option<String>,
    head: GhRef,
    base: GhRef,
    #[serde(default)]
    author_association: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    mergeable: Option<bool>,
}

#[derive(Deserialize)]
struct GhUser {
    login: String,
}

#[derive(Deserialize)]
struct GhLabel {
    name: String,
}

#[derive(Deserialize)]
struct GhRef {
    #[serde(rename = "ref")]
    name: String,
    sha: String,
    #[serde(default)]
    repo: Option<GhRepo>,
}

#[derive(Deserialize)]
struct GhRepo {
    #[serde(default)]
    id: Option<u64>,
    full_name: String,
}

impl GhPull {
    fn into_pull_request(
        self,
        host: &str,
        base_repo: &RepoId,
        expected_branch: Option<&str>,
    ) -> Result<PullRequest, String> {
        if let Some(branch) = expected_branch
            && self.base.name != branch
        {
            return Err(format!(
                "#{} has base `{}`, asked for `{branch}`",
                self.number, self.base.name
            ));
        }
        let state = match (
            self.state.as_deref(),
            self.merged.unwrap_or(false) || self.merged_at.is_some(),
        ) {
            (_, true) => PrState::Merged,
            (Some("closed"), false) => PrState::Closed,
            _ => PrState::Open,
        };
        let head_repo = match &self.head.repo {
            Some(r) => Some(RepoId::from_host_path(host, &r.full_name).map_err(|e| e.to_string())?),
            None => None,
        };
        let web_url = self
            .html_url
            .unwrap_or_else(|| format!("{}/pull/{}", base_repo.web_url(), self.number));
        Ok(PullRequest {
            number: self.number,
            title: self.title.unwrap_or_default(),
            body: self.body,
            author: self
                .user
                .map(|u| u.login)
                .unwrap_or_else(|| "ghost".to_owned()),
            author_association: self.author_association,
            labels: self
                .labels
                .unwrap_or_default()
                .into_iter()
                .map(|l| l.name)
                .collect(),
            draft: self.draft.unwrap_or(false),
            updated_at: self
                .updated_at
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                .map(crate::http::unix_seconds),
            head_sha: self.head.sha,
            head_ref: self.head.name,
            head_repo_numeric_id: self.head.repo.as_ref().and_then(|r| r.id),
            head_repo,
            base_repo: base_repo.clone(),
            base_branch: self.base.name,
            base_sha: Some(self.base.sha),
            state,
            web_url,
            mergeable: self.mergeable,
            refs_prefix: format!("refs/pull/{}", self.number),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::MemoryStore;

    fn client(api: &str) -> GitHubClient {
        GitHubClient::new(
            GitHubOptions {
                host: "github.com".into(),
                api_url: api.into(),
                token: None,
                client: ClientOptions::default(),
            },
            Arc::new(MemoryStore::default()),
        )
        .unwrap()
    }

    #[test]
    fn builds_api_urls_with_encoded_segments() {
        let c = client("https://ghe.example.org/api/v3/");
        let repo = RepoId::parse("https://ghe.example.org/Acme/Repo").unwrap();
        assert_eq!(
            c.repo_url(&repo, &["branches", "feature/x"]),
            "https://ghe.example.org/api/v3/repos/acme/repo/branches/feature%2Fx"
        );
    }

    #[test]
    fn status_bodies_use_github_states() {
        let names: Vec<&str> = BuildState::ALL.into_iter().map(state_name).collect();
        assert_eq!(
            names,
            ["pending", "pending", "success", "failure", "error", "error"]
        );
        let status = CommitStatus {
            state: BuildState::Running,
            target_url: None,
            description: "x".repeat(200),
            context: "forgewatch/ws".into(),
        };
        assert_eq!(
            status_body(&status),
            serde_json::json!({
                "state": "pending", "description": "x".repeat(140), "context": "forgewatch/ws"
            })
        );
    }

    #[test]
    fn a_deleted_fork_is_a_pull_request_without_head_repository() {
        let target = WatchTarget {
            repo: RepoId::parse("https://github.com/acme/repo").unwrap(),
            branch: "main".into(),
        };
        let json = serde_json::json!({
            "number": 7, "title": "t", "body": null, "user": {"login": "bob"},
            "labels": [{"name": "x"}], "draft": false, "updated_at": "2026-01-01T00:00:00Z",
            "head": {"ref": "fix", "sha": "abc", "repo": null},
            "base": {"ref": "main", "sha": "def", "repo": {"id": 1, "full_name": "acme/repo"}},
            "author_association": "CONTRIBUTOR", "html_url": "https://github.com/acme/repo/pull/7"
        });
        let pr: GhPull = serde_json::from_value(json).unwrap();
        let pr = pr
            .into_pull_request("github.com", &target.repo, Some("main"))
            .unwrap();
        assert_eq!(pr.head_repo, None);
        assert_eq!(pr.head_repo_numeric_id, None);
        assert_eq!(pr.updated_at, Some(1_767_225_600));
        assert_eq!(pr.test_ref(crate::forge::TestRef::Head), "refs/pull/7/head");
    }
}
