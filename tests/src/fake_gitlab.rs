//! A stateful fake of the GitLab REST API v4, served over real HTTP on 127.0.0.1.
//!
//! forgewatch polls GitLab too, and GitLab differs from GitHub exactly where a poller gets
//! hurt: projects addressed by numeric id or URL-encoded full path, weak body-digest ETags
//! whose 304s still cost rate-limit budget, `x-*` pagination headers next to `Link`, 429s
//! with or without `RateLimit-*` headers, MR `iid` versus global `id`, deprecated fields on
//! older servers, and the pipeline trigger API. This fake reproduces them (`forge-apis.md`
//! §2) so end-to-end tests can drive the real daemon against it and assert on every request.
//! It mirrors the fake GitHub's structure: this file keeps the public API and the state it
//! mutates, `state.rs` its transitions; `http.rs` serves requests, `routes.rs` renders JSON,
//! `faults.rs` injects budgets that run out, hanging requests and hostile 401s.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;

use crate::fake_github::HangGate;

mod faults;
mod http;
mod routes;
mod state;
mod statuses;

use state::with_draft;

/// Start of the virtual clock: the real time when the fake starts (a forge's
/// timestamps are near now, which `stale_after` relies on); every mutation then
/// advances it one second, so each change gets a distinct, increasing timestamp.
fn epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Handle on a running fake GitLab; clones share the same state.
#[derive(Clone)]
pub struct FakeGitLab {
    inner: Arc<Inner>,
    /// Shared by the handles a test holds, not by the server's: see [`faults::Owner`].
    _owner: Option<Arc<faults::Owner>>,
}

struct Inner {
    state: Mutex<GlState>,
    addr: SocketAddr,
    served: watch::Sender<usize>,
    /// Where requests hung by [`FakeGitLab::hang_next`] and [`FakeGitLab::hang_path`] wait.
    hang: HangGate,
}

/// A merge request to open with [`FakeGitLab::open_mr`].
#[derive(Clone, Debug)]
pub struct NewMr {
    pub source_branch: String,
    pub target_branch: String,
    /// `None`: same project; `Some("group/fork")`: from that fork (which must exist).
    pub source_project: Option<String>,
    pub author: String,
    /// Like GitLab, a draft is a title prefix: `true` prefixes the title with `Draft: `.
    pub draft: bool,
    pub title: String,
    pub description: Option<String>,
    pub labels: Vec<String>,
}

impl NewMr {
    /// A same-project, non-draft MR by `alice`.
    pub fn new(source_branch: &str, target_branch: &str) -> NewMr {
        NewMr {
            source_branch: source_branch.to_owned(),
            target_branch: target_branch.to_owned(),
            source_project: None,
            author: "alice".to_owned(),
            draft: false,
            title: format!("Update {source_branch}"),
            description: None,
            labels: Vec::new(),
        }
    }
}

/// A failure injected with [`FakeGitLab::fail_next`], answered instead of the real reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 429 `Retry later`. `Some(n)`: with the `RateLimit-*` headers (remaining 0) and
    /// `Retry-After: n`; `None`: with no rate-limit header at all (GitLab's Projects, Groups
    /// and Users API throttles answer like that).
    Status429 { retry_after: Option<u64> },
    /// 403 `{"message":"403 Forbidden"}`, no rate-limit signal.
    Status403Plain,
    /// 502 with nginx's `text/html` page.
    Html502,
    /// 503 `text/plain` `upstream connect error ...` from a proxy in front of GitLab.
    NonJsonProxyError,
}

/// One accepted `POST /projects/:id/trigger/pipeline`.
#[derive(Clone, Debug)]
pub struct PipelineTrigger {
    /// The project as addressed: the decoded path (`group/project`) or the numeric id.
    pub project: String,
    pub token: String,
    pub git_ref: String,
    /// From the `variables[KEY]=value` form fields, in the order sent.
    pub variables: Vec<(String, String)>,
    /// The pipeline's id, and the head of its ref when it was created.
    pub id: u64,
    pub sha: Option<String>,
    /// Fake clock seconds.
    pub created: u64,
}

/// One request as the fake served it (the same shape as the fake GitHub's).
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    /// When the request arrived (the benchmark assigns requests to cycles by it).
    pub arrived: std::time::SystemTime,
    /// The path only, as sent (still percent-encoded).
    pub path: String,
    /// The raw query string, `""` when absent.
    pub query: String,
    pub status: u16,
    /// The request carried `If-None-Match` or `If-Modified-Since`.
    pub conditional: bool,
    /// The request's `Accept-Encoding`.
    pub accept_encoding: Option<String>,
    /// The response body went gzip-compressed (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// The credential header's value: `PRIVATE-TOKEN` if sent, else `Authorization`.
    pub authorization: Option<String>,
}

struct Commit {
    sha: String,
    title: String,
    at: u64,
}

/// A pipeline trigger token of one project.
struct Trigger {
    token: String,
    refs: Vec<String>,
}

struct Project {
    id: u64,
    /// Full path with its original case, e.g. `sensors/drivers/lidar-x`.
    path: String,
    default_branch: String,
    branches: BTreeMap<String, Commit>,
    /// Merge requests targeting this project, by IID.
    mrs: BTreeMap<u64, Mr>,
    forked_from: Option<u64>,
    triggers: Vec<Trigger>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MrState {
    Opened,
    Closed,
    Merged,
}

struct Mr {
    id: u64,
    iid: u64,
    title: String,
    description: Option<String>,
    author: String,
    state: MrState,
    labels: Vec<String>,
    source_branch: String,
    target_branch: String,
    source_project_id: u64,
    sha: String,
    /// What the mergeability check found (`detailed_merge_status` of an open, non-draft MR).
    merge_check: String,
    merge_commit_sha: Option<String>,
    created_at: u64,
    updated_at: u64,
    closed_at: Option<u64>,
    merged_at: Option<u64>,
}

struct GlState {
    /// `http://127.0.0.1:PORT`, for `Link` URLs.
    base_url: String,
    public_host: String,
    clock: u64,
    sha_counter: u64,
    next_project_id: u64,
    next_mr_id: u64,
    next_pipeline_id: u64,
    projects: BTreeMap<u64, Project>,
    required_token: Option<String>,
    max_per_page: usize,
    legacy: bool,
    /// Injected failures and hangs, budgets set by [`FakeGitLab::set_budget`], echoing 401s.
    faults: faults::Faults,
    rate_limit: u64,
    /// Requests counted per credential (`None`: unauthenticated), 304s included.
    used: HashMap<Option<String>, u64>,
    requests: Vec<RequestRecord>,
    pipelines: Vec<PipelineTrigger>,
    statuses: Vec<crate::fake_github::StatusPost>,
    next_status_id: u64,
}

impl FakeGitLab {
    /// Serves a fresh fake on `127.0.0.1:0` in a spawned tokio task.
    pub async fn start() -> FakeGitLab {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake GitLab: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("fake GitLab: listener has no local address");
        let state = GlState {
            base_url: format!("http://{addr}"),
            public_host: "gitlab.example.org".to_owned(),
            clock: epoch(),
            sha_counter: 0,
            next_project_id: 1000,
            next_mr_id: 90_000,
            next_pipeline_id: 500_000,
            projects: BTreeMap::new(),
            required_token: None,
            max_per_page: 100,
            legacy: false,
            faults: faults::Faults::default(),
            rate_limit: 2000,
            used: HashMap::new(),
            requests: Vec::new(),
            pipelines: Vec::new(),
            statuses: Vec::new(),
            next_status_id: 7_000,
        };
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            addr,
            served: watch::channel(0).0,
            hang: HangGate::new(),
        });
        let server = FakeGitLab {
            inner: inner.clone(),
            _owner: None,
        };
        let gl = FakeGitLab {
            _owner: Some(Arc::new(faults::Owner(inner.clone()))),
            inner,
        };
        let app = Router::new().fallback(http::handle).with_state(server);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        gl
    }

    /// The API root, `http://127.0.0.1:PORT/api/v4`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v4", self.inner.addr)
    }

    fn lock(&self) -> MutexGuard<'_, GlState> {
        self.inner
            .state
            .lock()
            .expect("fake GitLab state mutex poisoned by a panicking test")
    }

    /// When `Some`, API requests need `PRIVATE-TOKEN: TOKEN` or `Authorization: Bearer TOKEN`
    /// (the pipeline trigger route authenticates by its own trigger token instead).
    pub fn require_token(&self, token: Option<&str>) {
        self.lock().required_token = token.map(str::to_owned);
    }

    /// The host of `web_url`s and clone URLs; default `gitlab.example.org`.
    pub fn set_public_host(&self, host: &str) {
        host.clone_into(&mut self.lock().public_host);
    }

    /// Server-side cap on `per_page` (GitLab's is 100, the default here).
    pub fn set_max_per_page(&self, n: usize) {
        self.lock().max_per_page = n.max(1);
    }

    /// `RateLimit-Limit` per credential (default 2000). Past it, requests get a 429 with the
    /// `RateLimit-*` headers and `Retry-After` until [`Self::reset_rate_limit`].
    pub fn set_rate_limit(&self, limit: u64) {
        self.lock().rate_limit = limit;
    }

    /// Forgets the requests counted against the rate limit.
    pub fn reset_rate_limit(&self) {
        self.lock().used.clear();
    }

    /// An older server: MRs carry `work_in_progress` and `merge_status` only.
    pub fn set_legacy(&self, legacy: bool) {
        self.lock().legacy = legacy;
    }

    /// The next `n` requests (any route) get `failure` instead of their answer (taken in the
    /// order queued, along with [`Self::hang_next`]'s hangs).
    pub fn fail_next(&self, n: usize, failure: Failure) {
        self.lock().faults.fail_next(n, failure);
    }

    /// Creates a project at `path` (any subgroup depth) with its default branch at a fresh
    /// sha, which is returned.
    pub fn create_project(&self, path: &str, default_branch: &str) -> String {
        let mut st = self.lock();
        assert!(
            st.find(path).is_none(),
            "fake GitLab: project {path} already exists"
        );
        let id = st.fresh_project_id();
        st.projects.insert(
            id,
            Project {
                id,
                path: path.to_owned(),
                default_branch: default_branch.to_owned(),
                branches: BTreeMap::new(),
                mrs: BTreeMap::new(),
                forked_from: None,
                triggers: Vec::new(),
            },
        );
        st.push(id, default_branch)
    }

    /// Forks `source` to `fork_path` (same branches and shas); returns the fork's id.
    pub fn fork_project(&self, source: &str, fork_path: &str) -> u64 {
        let mut st = self.lock();
        assert!(
            st.find(fork_path).is_none(),
            "fake GitLab: project {fork_path} already exists"
        );
        let source_id = st.pid(source);
        let id = st.fresh_project_id();
        let src = st.project(source_id);
        let branches = src.branches.iter().map(|(name, c)| {
            let copy = Commit {
                sha: c.sha.clone(),
                title: c.title.clone(),
                at: c.at,
            };
            (name.clone(), copy)
        });
        let fork = Project {
            id,
            path: fork_path.to_owned(),
            default_branch: src.default_branch.clone(),
            branches: branches.collect(),
            mrs: BTreeMap::new(),
            forked_from: Some(source_id),
            triggers: Vec::new(),
        };
        st.tick();
        st.projects.insert(id, fork);
        id
    }

    /// Deletes a project: it answers 404, the MRs targeting it go with it, and MRs it was
    /// the source of keep their `source_project_id`.
    pub fn delete_project(&self, path: &str) {
        let mut st = self.lock();
        let id = st.pid(path);
        st.tick();
        st.projects.remove(&id);
        for project in st.projects.values_mut() {
            if project.forked_from == Some(id) {
                project.forked_from = None;
            }
        }
    }

    /// Creates or moves `branch` to a fresh sha (moving the open MRs it is the source of).
    pub fn push(&self, path: &str, branch: &str) -> String {
        let mut st = self.lock();
        let id = st.pid(path);
        st.push(id, branch)
    }

    /// Opens an MR on `target_path`; returns its IID (per project, from 1). A missing
    /// source branch is created in the source project.
    pub fn open_mr(&self, target_path: &str, mr: NewMr) -> u64 {
        let mut st = self.lock();
        let target = st.pid(target_path);
        let source = mr.source_project.as_deref().map_or(target, |p| st.pid(p));
        assert!(
            st.project(target).branches.contains_key(&mr.target_branch),
            "fake GitLab: target branch {} does not exist in {target_path}",
            mr.target_branch
        );
        let sha = match st.project(source).branches.get(&mr.source_branch) {
            Some(commit) => commit.sha.clone(),
            None => st.push(source, &mr.source_branch),
        };
        let now = st.tick();
        st.next_mr_id += 1;
        let id = st.next_mr_id;
        let project = st.project_mut(target);
        let iid = project.mrs.keys().next_back().map_or(1, |n| n + 1);
        let title = with_draft(&mr.title, mr.draft);
        project.mrs.insert(
            iid,
            Mr {
                id,
                iid,
                title,
                description: mr.description,
                author: mr.author,
                state: MrState::Opened,
                labels: mr.labels,
                source_branch: mr.source_branch,
                target_branch: mr.target_branch,
                source_project_id: source,
                sha,
                merge_check: "mergeable".to_owned(),
                merge_commit_sha: None,
                created_at: now,
                updated_at: now,
                closed_at: None,
                merged_at: None,
            },
        );
        iid
    }

    /// Pushes a new commit to the MR's source branch (in its source project, or straight to
    /// the MR when that project was deleted); returns the new head sha.
    pub fn push_mr(&self, target_path: &str, iid: u64) -> String {
        let mut st = self.lock();
        let target = st.pid(target_path);
        let mr = st.mr(target, iid);
        let (source, branch) = (mr.source_project_id, mr.source_branch.clone());
        if st.projects.contains_key(&source) {
            return st.push(source, &branch);
        }
        let sha = st.fresh_sha();
        let head = sha.clone();
        st.update_mr(target, iid, true, move |mr| mr.sha = head);
        sha
    }

    pub fn close_mr(&self, target_path: &str, iid: u64) {
        let mut st = self.lock();
        let target = st.pid(target_path);
        let now = st.clock + 1;
        st.update_mr(target, iid, true, |mr| {
            mr.state = MrState::Closed;
            mr.closed_at = Some(now);
        });
    }

    /// Merges the MR: a merge commit lands on the target branch, `merge_commit_sha` is set.
    pub fn merge_mr(&self, target_path: &str, iid: u64) {
        let mut st = self.lock();
        let target = st.pid(target_path);
        let mr = st.mr(target, iid);
        assert!(
            mr.state == MrState::Opened,
            "fake GitLab: !{iid} in {target_path} is not open"
        );
        let branch = mr.target_branch.clone();
        let merge = st.push(target, &branch);
        let now = st.clock + 1;
        st.update_mr(target, iid, true, |mr| {
            mr.state = MrState::Merged;
            mr.merged_at = Some(now);
            mr.merge_commit_sha = Some(merge);
        });
    }

    /// Moves the MR's `updated_at` `days` into the past (to make it stale).
    pub fn age_mr(&self, target_path: &str, iid: u64, days: u64) {
        let mut st = self.lock();
        let target = st.pid(target_path);
        st.update_mr(target, iid, false, |mr| {
            mr.updated_at = mr.updated_at.saturating_sub(days * 86_400);
        });
    }

    /// Sets the title; like GitLab, a `Draft:` prefix makes the MR a draft.
    pub fn set_mr_title(&self, target_path: &str, iid: u64, title: &str) {
        let title = title.to_owned();
        self.change_mr(target_path, iid, |mr| mr.title = title);
    }

    pub fn set_mr_description(&self, target_path: &str, iid: u64, description: Option<&str>) {
        let description = description.map(str::to_owned);
        self.change_mr(target_path, iid, |mr| mr.description = description);
    }

    pub fn set_labels(&self, target_path: &str, iid: u64, labels: &[&str]) {
        let labels = labels.iter().map(|l| (*l).to_owned()).collect();
        self.change_mr(target_path, iid, |mr| mr.labels = labels);
    }

    /// Adds or strips the `Draft: ` title prefix, as GitLab's "mark as draft" does.
    pub fn set_draft(&self, target_path: &str, iid: u64, draft: bool) {
        self.change_mr(target_path, iid, |mr| {
            mr.title = with_draft(&mr.title, draft)
        });
    }

    /// The mergeability check's result (`mergeable`, `conflict`, `checking`, `need_rebase`,
    /// ...). Shown as `detailed_merge_status` while the MR is open and not a draft (drafts
    /// show `draft_status`); `merge_status` is derived. `updated_at` does not move.
    pub fn set_merge_status(&self, target_path: &str, iid: u64, detailed: &str) {
        let mut st = self.lock();
        let target = st.pid(target_path);
        let detailed = detailed.to_owned();
        st.update_mr(target, iid, false, |mr| mr.merge_check = detailed);
    }

    /// Adds a pipeline trigger token to `project`, valid for the refs `refs`.
    pub fn add_trigger_token(&self, project: &str, token: &str, refs: &[&str]) {
        let mut st = self.lock();
        let id = st.pid(project);
        st.project_mut(id).triggers.push(Trigger {
            token: token.to_owned(),
            refs: refs.iter().map(|r| (*r).to_owned()).collect(),
        });
    }

    /// Every pipeline trigger accepted so far, in order.
    pub fn pipelines(&self) -> Vec<PipelineTrigger> {
        self.lock().pipelines.clone()
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// Clears the request log and the served counter (not the rate-limit counts).
    pub fn clear_requests(&self) {
        let mut st = self.lock();
        st.requests.clear();
        self.inner.served.send_replace(0);
    }

    /// Resolves to `true` once at least `n` requests are recorded, `false` after `timeout`.
    pub fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> impl Future<Output = bool> + Send + use<> {
        let mut rx = self.inner.served.subscribe();
        async move {
            matches!(
                tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await,
                Ok(Ok(_))
            )
        }
    }

    pub fn count_status(&self, status: u16) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.status == status)
            .count()
    }

    /// Requests whose raw (still percent-encoded) path starts with `prefix`.
    pub fn count_path_prefix(&self, prefix: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }

    fn change_mr(&self, target_path: &str, iid: u64, change: impl FnOnce(&mut Mr)) {
        let mut st = self.lock();
        let target = st.pid(target_path);
        st.update_mr(target, iid, true, change);
    }
}
