//! A stateful fake of the GitHub REST API, served over real HTTP on 127.0.0.1.
//!
//! forgewatch's value lies in how it talks to GitHub: conditional requests, weak/strong
//! ETags, pagination through `Link`, rate-limit accounting, deleted forks. This fake
//! reproduces those behaviours (see `forge-apis.md` §1) so that end-to-end tests can
//! drive the real daemon against it and assert on every request it made. `faults.rs` adds
//! what a daemon must survive: budgets that run out, secondary limits, 429s, requests that
//! hang, and 401s echoing secrets back; `app.rs` the GitHub App endpoints and tokens.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, watch};

mod app;
mod faults;
mod http;
mod statuses;

pub use app::{IssuedToken, OTHER_APP_PRIVATE_KEY, TEST_APP_PRIVATE_KEY, TEST_APP_PUBLIC_KEY};
pub use statuses::StatusPost;

pub(crate) use faults::{
    HangGate, echo_request_headers, epoch_after, now_epoch, reached, secs_until,
};

/// Start of the virtual clock: the real time when the fake starts (a forge's
/// timestamps are near now, which `stale_after` relies on); every mutation then
/// advances it one second, so each change gets a distinct, increasing timestamp.
fn epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Handle on a running fake GitHub; clones share the same state.
#[derive(Clone)]
pub struct FakeGitHub {
    inner: Arc<Inner>,
    /// Shared by the handles a test holds, not by the server's: see [`faults::Owner`].
    _owner: Option<Arc<faults::Owner>>,
}

struct Inner {
    state: Mutex<GhState>,
    addr: SocketAddr,
    served: watch::Sender<usize>,
    in_flight: watch::Sender<InFlight>,
    /// `true` while [`FakeGitHub::hold_responses`] is in force.
    holding: watch::Sender<bool>,
    /// While holding, each request takes one permit (given by [`FakeGitHub::release`])
    /// before it is answered.
    gate: Semaphore,
    /// Where requests hung by [`FakeGitHub::hang_next`] and [`FakeGitHub::hang_path`] wait.
    hang: HangGate,
}

/// Requests that arrived and are not answered yet (held ones included).
#[derive(Clone, Copy, Default)]
struct InFlight {
    now: usize,
    /// The largest `now` since start or since [`FakeGitHub::clear_requests`].
    max: usize,
}

/// Counts one request as in flight for as long as it lives: dropped once the request is
/// answered, or with the handler when the client goes away while it is held.
struct InFlightGuard(Arc<Inner>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|f| f.now -= 1);
    }
}

/// A pull request to open with [`FakeGitHub::open_pr`].
#[derive(Clone, Debug)]
pub struct NewPr {
    pub base: String,
    pub head_ref: String,
    /// `None`: same repository; `Some("fork/repo")`: from a fork.
    pub head_repo: Option<String>,
    pub author: String,
    pub author_association: String,
    pub draft: bool,
    pub title: String,
    pub body: Option<String>,
    /// The `html_url` answered; `None`: `https://github.com/OWNER/REPO/pull/N`, as
    /// GitHub does. A hostile value (`javascript:…`) is for the status page's tests.
    pub html_url: Option<String>,
}

impl NewPr {
    /// A same-repository, non-draft PR by `alice` (`MEMBER`).
    pub fn new(base: &str, head_ref: &str) -> NewPr {
        NewPr {
            base: base.to_owned(),
            head_ref: head_ref.to_owned(),
            head_repo: None,
            author: "alice".to_owned(),
            author_association: "MEMBER".to_owned(),
            draft: false,
            title: format!("Update {head_ref}"),
            body: None,
            html_url: None,
        }
    }
}

/// One request as the fake served it.
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
    pub authorization: Option<String>,
}

struct RepoRef {
    id: u64,
    full_name: String,
}

struct Repo {
    id: u64,
    full_name: String,
    default_branch: String,
    branches: BTreeMap<String, String>,
    pulls: BTreeMap<u64, Pr>,
    /// Virtual time of the last change to anything in this repository.
    modified: u64,
}

struct Pr {
    id: u64,
    number: u64,
    title: String,
    body: Option<String>,
    html_url: Option<String>,
    author: String,
    association: String,
    draft: bool,
    open: bool,
    labels: Vec<String>,
    base: String,
    head_ref: String,
    head_sha: String,
    /// `None` = same repository.
    head_repo: Option<RepoRef>,
    head_repo_deleted: bool,
    head_owner: String,
    /// What the single-PR endpoint answers for `mergeable` (`None`: not computed yet).
    mergeable: Option<bool>,
    /// The (base sha, head sha) pair `mergeable` was last computed at (see
    /// [`FakeGitHub::compute_mergeability_lazily`]).
    computed_at: (String, String),
    created_at: u64,
    updated_at: u64,
    closed_at: Option<u64>,
}

struct GhState {
    api_url: String,
    clock: u64,
    sha_counter: u64,
    next_id: u64,
    repos: BTreeMap<String, Repo>,
    required_token: Option<String>,
    /// URLs already answered once with a 200 (the first answer carries a weak ETag).
    seen_urls: HashSet<String>,
    /// Requests counted per budget: `None` is the unauthenticated budget, else per token.
    used: HashMap<Option<String>, u64>,
    reset_at: u64,
    requests: Vec<RequestRecord>,
    faults: faults::Faults,
    /// See [`FakeGitHub::compute_mergeability_lazily`].
    lazy_mergeability: bool,
    statuses: statuses::Statuses,
    apps: app::Apps,
}

impl FakeGitHub {
    /// Serves a fresh fake on `127.0.0.1:0` in a spawned tokio task.
    pub async fn start() -> FakeGitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake GitHub: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("fake GitHub: listener has no local address");
        let reset_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 3600;
        let state = GhState {
            api_url: format!("http://{addr}"),
            clock: epoch(),
            sha_counter: 0,
            next_id: 1000,
            repos: BTreeMap::new(),
            required_token: None,
            seen_urls: HashSet::new(),
            used: HashMap::new(),
            reset_at,
            requests: Vec::new(),
            faults: faults::Faults::default(),
            lazy_mergeability: false,
            statuses: statuses::Statuses::default(),
            apps: app::Apps::default(),
        };
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            addr,
            served: watch::channel(0).0,
            in_flight: watch::channel(InFlight::default()).0,
            holding: watch::channel(false).0,
            gate: Semaphore::new(0),
            hang: HangGate::new(),
        });
        let server = FakeGitHub {
            inner: inner.clone(),
            _owner: None,
        };
        let gh = FakeGitHub {
            _owner: Some(Arc::new(faults::Owner(inner.clone()))),
            inner,
        };
        let app = Router::new().fallback(http::handle).with_state(server);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        gh
    }

    /// The API root, e.g. `http://127.0.0.1:PORT` (paths are `/repos/...`).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    fn lock(&self) -> MutexGuard<'_, GhState> {
        self.inner
            .state
            .lock()
            .expect("fake GitHub state mutex poisoned by a panicking test")
    }

    /// When `Some`, every request must carry `Authorization: Bearer TOKEN` (or `token TOKEN`).
    pub fn require_token(&self, token: Option<&str>) {
        self.lock().required_token = token.map(str::to_owned);
    }

    /// Creates `owner/repo` with its default branch at a fresh sha, which is returned.
    pub fn create_repo(&self, full_name: &str, default_branch: &str) -> String {
        let mut st = self.lock();
        let now = st.tick();
        let sha = st.fresh_sha();
        let id = st.fresh_id();
        let repo = Repo {
            id,
            full_name: full_name.to_owned(),
            default_branch: default_branch.to_owned(),
            branches: BTreeMap::from([(default_branch.to_owned(), sha.clone())]),
            pulls: BTreeMap::new(),
            modified: now,
        };
        st.repos.insert(full_name.to_lowercase(), repo);
        sha
    }

    /// Creates or moves `branch` to a fresh sha (moving same-repo PR heads with it).
    pub fn push(&self, full_name: &str, branch: &str) -> String {
        self.lock().push(full_name, branch)
    }

    /// Opens a PR; numbers increase per repository starting at 1. A same-repository head
    /// branch is created when missing.
    pub fn open_pr(&self, full_name: &str, pr: NewPr) -> u64 {
        let mut st = self.lock();
        let head_repo = pr.head_repo.as_ref().map(|name| {
            let known = st.repos.get(&name.to_lowercase()).map(|r| r.id);
            let id = known.unwrap_or_else(|| st.fresh_id());
            RepoRef {
                id,
                full_name: name.clone(),
            }
        });
        let head_sha = match &head_repo {
            None => match st.repo(full_name).branches.get(&pr.head_ref).cloned() {
                Some(sha) => sha,
                None => st.push(full_name, &pr.head_ref),
            },
            Some(_) => st.fresh_sha(),
        };
        let now = st.tick();
        let id = st.fresh_id();
        let repo = st.repo(full_name);
        assert!(
            repo.branches.contains_key(&pr.base),
            "fake GitHub: base branch {} does not exist in {full_name}",
            pr.base
        );
        let number = repo.pulls.keys().next_back().map_or(1, |n| n + 1);
        let base_sha = repo.branches[&pr.base].clone();
        let head_owner =
            http::owner_of(head_repo.as_ref().map_or(full_name, |r| &r.full_name)).to_owned();
        repo.pulls.insert(
            number,
            Pr {
                id,
                number,
                title: pr.title,
                body: pr.body,
                html_url: pr.html_url,
                author: pr.author,
                association: pr.author_association,
                draft: pr.draft,
                open: true,
                labels: Vec::new(),
                base: pr.base,
                head_ref: pr.head_ref,
                head_sha: head_sha.clone(),
                head_repo,
                head_repo_deleted: false,
                head_owner,
                mergeable: Some(true),
                computed_at: (base_sha, head_sha),
                created_at: now,
                updated_at: now,
                closed_at: None,
            },
        );
        repo.modified = now;
        number
    }

    /// Pushes a new head commit to PR `number`; returns the new head sha.
    pub fn push_pr(&self, full_name: &str, number: u64) -> String {
        let mut st = self.lock();
        let pr = st.pr(full_name, number);
        let (same_repo, head_ref) = (pr.head_repo.is_none(), pr.head_ref.clone());
        if same_repo {
            return st.push(full_name, &head_ref);
        }
        let sha = st.fresh_sha();
        let head = sha.clone();
        st.update_pr(full_name, number, true, move |pr| pr.head_sha = head);
        sha
    }

    pub fn close_pr(&self, full_name: &str, number: u64) {
        let mut st = self.lock();
        let now = st.clock + 1;
        st.update_pr(full_name, number, true, |pr| {
            pr.open = false;
            pr.closed_at = Some(now);
        });
    }

    pub fn set_pr_title(&self, full_name: &str, number: u64, title: &str) {
        let title = title.to_owned();
        self.lock()
            .update_pr(full_name, number, true, |pr| pr.title = title);
    }

    pub fn set_pr_body(&self, full_name: &str, number: u64, body: Option<&str>) {
        let body = body.map(str::to_owned);
        self.lock()
            .update_pr(full_name, number, true, |pr| pr.body = body);
    }

    pub fn set_labels(&self, full_name: &str, number: u64, labels: &[&str]) {
        let labels = labels.iter().map(|l| (*l).to_owned()).collect();
        self.lock()
            .update_pr(full_name, number, true, |pr| pr.labels = labels);
    }

    pub fn set_draft(&self, full_name: &str, number: u64, draft: bool) {
        self.lock()
            .update_pr(full_name, number, true, |pr| pr.draft = draft);
    }

    /// Moves the PR's `updated_at` `days` into the past (to make it stale).
    pub fn age_pr(&self, full_name: &str, number: u64, days: u64) {
        self.lock().update_pr(full_name, number, false, |pr| {
            pr.updated_at = pr.updated_at.saturating_sub(days * 86_400);
        });
    }

    /// What the single-PR endpoint answers for `mergeable` from now on (`None`: GitHub
    /// has not computed it yet). Default `Some(true)`. `updated_at` is untouched.
    pub fn set_mergeable(&self, full_name: &str, number: u64, mergeable: Option<bool>) {
        self.lock()
            .update_pr(full_name, number, false, |pr| pr.mergeable = mergeable);
    }

    /// From now on the single-PR endpoint answers `mergeable` as GitHub does
    /// (`forge-apis.md` §1.4–1.5): once the PR's base or head moved, the first read
    /// answers `null` and starts the computation, and the reads after it answer the
    /// value. A PR's mergeability is computed when it is opened.
    pub fn compute_mergeability_lazily(&self) {
        self.lock().lazy_mergeability = true;
    }

    /// The PR's fork is deleted: `head.repo` becomes `null` (`updated_at` is untouched).
    pub fn delete_head_repo(&self, full_name: &str, number: u64) {
        self.lock()
            .update_pr(full_name, number, false, |pr| pr.head_repo_deleted = true);
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// Clears the request log and the served counter, and restarts [`Self::max_in_flight`]
    /// from the requests in flight now.
    pub fn clear_requests(&self) {
        let mut st = self.lock();
        st.requests.clear();
        self.inner.served.send_replace(0);
        self.inner.in_flight.send_modify(|f| f.max = f.now);
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

    /// From now on every request, once counted in flight, waits for a permit from
    /// [`Self::release`] (or for [`Self::release_all`]) before it is answered (and recorded).
    pub fn hold_responses(&self) {
        self.inner.holding.send_replace(true);
    }

    /// Lets `n` held requests proceed; permits not taken yet wait for future requests.
    pub fn release(&self, n: usize) {
        self.inner.gate.add_permits(n);
    }

    /// Stops holding: every waiting and future request proceeds. Unused permits are dropped,
    /// so a later [`Self::hold_responses`] starts from none.
    pub fn release_all(&self) {
        self.inner.holding.send_replace(false);
        self.inner.gate.forget_permits(usize::MAX);
    }

    /// Requests being handled now: arrived, not yet answered (held ones included). A request
    /// leaves this count just before it is recorded and counted by [`Self::wait_for_requests`],
    /// except a hung one ([`Self::hang_next`]): recorded when taken, in flight until answered.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.borrow().now
    }

    /// The largest [`Self::in_flight`] seen since start or since [`Self::clear_requests`].
    pub fn max_in_flight(&self) -> usize {
        self.inner.in_flight.borrow().max
    }

    /// Resolves to `true` once at least `n` requests are in flight, `false` after `timeout`.
    pub fn wait_for_in_flight(
        &self,
        n: usize,
        timeout: Duration,
    ) -> impl Future<Output = bool> + Send + use<> {
        let mut rx = self.inner.in_flight.subscribe();
        async move {
            matches!(
                tokio::time::timeout(timeout, rx.wait_for(|f| f.now >= n)).await,
                Ok(Ok(_))
            )
        }
    }

    /// Counts a request as in flight until the returned guard is dropped.
    fn enter(&self) -> InFlightGuard {
        self.inner.in_flight.send_modify(|f| {
            f.now += 1;
            f.max = f.max.max(f.now);
        });
        InFlightGuard(self.inner.clone())
    }

    /// Returns at once unless holding; then waits for a permit or for [`Self::release_all`].
    async fn pass_gate(&self) {
        let mut holding = self.inner.holding.subscribe();
        if !*holding.borrow_and_update() {
            return;
        }
        tokio::select! {
            permit = self.inner.gate.acquire() => {
                if let Ok(permit) = permit {
                    permit.forget();
                }
            }
            _ = holding.wait_for(|h| !*h) => {}
        }
    }

    pub fn count_status(&self, status: u16) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.status == status)
            .count()
    }

    pub fn count_path_prefix(&self, prefix: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }
}

impl GhState {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn fresh_sha(&mut self) -> String {
        self.sha_counter += 1;
        let digest = Sha256::digest(format!("forgewatch-fake-commit-{}", self.sha_counter));
        hex::encode(digest)[..40].to_owned()
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn repo(&mut self, full_name: &str) -> &mut Repo {
        self.repos
            .get_mut(&full_name.to_lowercase())
            .unwrap_or_else(|| panic!("fake GitHub: unknown repository {full_name}"))
    }

    fn pr(&mut self, full_name: &str, number: u64) -> &mut Pr {
        self.repo(full_name)
            .pulls
            .get_mut(&number)
            .unwrap_or_else(|| panic!("fake GitHub: no PR #{number} in {full_name}"))
    }

    /// Applies `change` to a PR, bumping the repository clock and, if `bump`, `updated_at`.
    fn update_pr(
        &mut self,
        full_name: &str,
        number: u64,
        bump: bool,
        change: impl FnOnce(&mut Pr),
    ) {
        let now = self.tick();
        let pr = self.pr(full_name, number);
        change(pr);
        if bump {
            pr.updated_at = now;
        }
        self.repo(full_name).modified = now;
    }

    fn push(&mut self, full_name: &str, branch: &str) -> String {
        let now = self.tick();
        let sha = self.fresh_sha();
        let repo = self.repo(full_name);
        repo.branches.insert(branch.to_owned(), sha.clone());
        repo.modified = now;
        let heads = repo.pulls.values_mut();
        for pr in heads.filter(|pr| pr.open && pr.head_repo.is_none() && pr.head_ref == branch) {
            pr.head_sha = sha.clone();
            pr.updated_at = now;
        }
        sha
    }
}
