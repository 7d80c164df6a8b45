//! End-to-end: commit statuses out (SPEC §14) from `forgewatch run` to the fake
//! GitHub. A PR build's head gets `pending` once the CI accepted it, then the state
//! of its result with the CI's link; statuses the forge answers 502 arrive once
//! after it recovers, newest state last; a `kill -9` between a result and its
//! status post loses nothing and repeats nothing; a repository refusing statuses
//! (403) is reported once, without a storm; the write budget holds however many
//! results come in; with `report.dependencies` a dependent build's state shows on
//! its dependency; `once` posts what its deliveries made due, a dry run nothing.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use forgewatch_tests::fake_github::{NewPr, StatusPost};
use forgewatch_tests::wait::eventually;
use serde_json::{Value, json};
use support::{DEADLINE, Env, Ws};

const RESULTS_SECRET: &str = "results-secret-for-bb";
const CONTEXT: &str = "forgewatch/app";

/// Configures workspace `app` (`acme/app` and `acme/locked`, PRs on both) with
/// statuses, CI target `bb` taking results with [`RESULTS_SECRET`]; `github_extra`
/// goes into the GitHub forge's settings.
fn configure(env: &Env, github_extra: &str) {
    configure_with(env, github_extra, "acme/locked", "{ statuses: true }");
}

/// [`configure`] with `other` as the second repository and `report`.
fn configure_with(env: &Env, github_extra: &str, other: &str, report: &str) {
    env.configure(&[Ws {
        name: "app",
        ci: "bb",
        packages: &[("app", "acme/app", "main"), ("other", other, "main")],
        pull_requests: true,
    }]);
    env.give_bb_results_secret(RESULTS_SECRET);
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replacen(
            "    max_concurrency: 4\n",
            &format!("    max_concurrency: 4\n{github_extra}"),
            1,
        )
        .replacen(
            "poll_interval: 1s\n",
            "poll_interval: 1s\ndelivery: { retry_initial: 200ms, retry_cap: 400ms }\n",
            1,
        )
        .replacen(
            "    pull_requests:\n",
            &format!("    report: {report}\n    pull_requests:\n"),
            1,
        );
    std::fs::write(env.config_path(), config).unwrap();
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn new(env: &Env) -> Api {
        Api {
            base: format!("http://{}", env.listen_address().await),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    async fn result(&self, delivery_id: &str, state: &str, url: &str) {
        let r = self.send_result(delivery_id, state, url).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    }

    async fn send_result(
        &self,
        delivery_id: &str,
        state: &str,
        url: &str,
    ) -> reqwest::Result<reqwest::Response> {
        let body = json!({"delivery_id": delivery_id, "state": state, "url": url});
        self.http
            .post(format!("{}/api/v1/results", self.base))
            .bearer_auth(RESULTS_SECRET)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
    }

    async fn status(&self) -> Value {
        let r = self
            .http
            .get(format!("{}/api/v1/status", self.base))
            .send()
            .await
            .unwrap();
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }
}

/// The delivery id and PR head of the last delivery of `key` the CI accepted.
fn delivered(env: &Env, key: &str) -> Option<(String, String)> {
    env.ci
        .accepted()
        .iter()
        .map(|d| d.properties())
        .rfind(|p| p["build_key"] == key)
        .map(|p| {
            (
                p["delivery_id"].as_str().unwrap().to_owned(),
                p["pull_request"]["head_sha"].as_str().unwrap().to_owned(),
            )
        })
}

/// Each status the fake GitHub accepted on `repo`: (sha, state, link).
fn posted(env: &Env, repo: &str) -> Vec<(String, String, Option<String>)> {
    env.github
        .statuses()
        .into_iter()
        .filter(|p: &StatusPost| p.repo == repo)
        .map(|p| {
            assert_eq!(p.context, CONTEXT);
            (p.sha, p.state, p.target_url)
        })
        .collect()
}

/// The last status of each (repository, context) on the fake GitHub: state, link.
fn last_statuses(env: &Env) -> std::collections::BTreeMap<(String, String), (String, String)> {
    env.github
        .statuses()
        .into_iter()
        .map(|p| {
            (
                (p.repo, p.context),
                (p.state, p.target_url.unwrap_or_default()),
            )
        })
        .collect()
}

fn status_posts_to(env: &Env, repo: &str) -> usize {
    let prefix = format!("/repos/{repo}/statuses/");
    env.github
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with(&prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_arrive_once_each_through_502s_and_a_crash_newest_last() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", "main");
    env.github.create_repo("acme/locked", "main");
    let pr = env
        .github
        .open_pr("acme/app", NewPr::new("main", "feature"));
    configure(&env, "");
    // The first three status posts fail.
    env.github.fail_status_posts(3);
    let mut daemon = env.command(&["run"]).spawn().unwrap();
    let api = Api::new(&env).await;
    let key = format!("app/pr/github.com/acme/app/{pr}");
    let (id, sha) = eventually(DEADLINE, || async { delivered(&env, &key) })
        .await
        .expect("the PR was never delivered");
    let pending = (sha.clone(), "pending".to_owned(), None);
    eventually(DEADLINE, || async {
        (posted(&env, "acme/app") == [pending.clone()]).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no pending status: {:?}", env.github.statuses()));
    assert_eq!(status_posts_to(&env, "acme/app"), 4, "three 502s, then one");

    // Two results while GitHub fails: only the newest is posted, once.
    env.github.fail_status_posts(2);
    api.result(&id, "running", "http://ci/b/1").await;
    api.result(&id, "failure", "http://ci/b/1").await;
    let failure = (
        sha.clone(),
        "failure".to_owned(),
        Some("http://ci/b/1".into()),
    );
    eventually(DEADLINE, || async {
        (posted(&env, "acme/app").len() >= 2).then_some(())
    })
    .await
    .expect("the failure was never posted");
    let seen = posted(&env, "acme/app");
    assert!(
        seen == [pending.clone(), failure.clone()]
            || seen
                == [
                    pending.clone(),
                    (sha.clone(), "pending".into(), Some("http://ci/b/1".into())),
                    failure.clone()
                ],
        "{seen:?}"
    );
    assert_eq!(seen.last(), Some(&failure));
    let status = api.status().await;
    assert_eq!(status["statuses"]["due"], json!(0), "{status}");
    daemon.kill().await.unwrap();
    daemon.wait().await.unwrap();
    let address = env.state_dir().join("listen-address");
    std::fs::remove_file(&address).unwrap();

    // A crash right before the success is posted: after a restart it arrives, once.
    let before = env.github.statuses().len();
    let mut crashing = env.command(&["run"]);
    crashing.env("FORGEWATCH_CRASH_AT", "before-status-post");
    let mut crashing = crashing.spawn().unwrap();
    let api = Api::new(&env).await;
    // The result is recorded before the answer is written, and the status poster
    // it wakes may crash the daemon before that: the answer may never come.
    let answer = api.send_result(&id, "success", "http://ci/b/2").await;
    assert!(answer.as_ref().is_err() || answer.as_ref().is_ok_and(|r| r.status() == 200));
    let exit = tokio::time::timeout(DEADLINE, crashing.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), None, "the crash point was reached");
    assert_eq!(env.github.statuses().len(), before);
    std::fs::remove_file(&address).unwrap();
    let mut daemon = env.command(&["run"]).spawn().unwrap();
    let success = (
        sha.clone(),
        "success".to_owned(),
        Some("http://ci/b/2".into()),
    );
    eventually(DEADLINE, || async {
        (posted(&env, "acme/app").last() == Some(&success)).then_some(())
    })
    .await
    .expect("the success never arrived after the restart");
    let api = Api::new(&env).await;
    eventually(DEADLINE, || async {
        (api.status().await["statuses"]["due"] == json!(0)).then_some(())
    })
    .await
    .expect("statuses still due");
    let successes = posted(&env, "acme/app")
        .into_iter()
        .filter(|s| s == &success)
        .count();
    assert_eq!(successes, 1);
    daemon.kill().await.unwrap();
    daemon.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_repository_is_reported_once_and_the_write_budget_holds() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", "main");
    env.github.create_repo("acme/locked", "main");
    env.github.refuse_status_posts("acme/locked");
    let mut locked = Vec::new();
    for branch in ["a", "b", "c"] {
        locked.push(
            env.github
                .open_pr("acme/locked", NewPr::new("main", branch)),
        );
    }
    let mut prs = Vec::new();
    for branch in ["x", "y", "z"] {
        prs.push(env.github.open_pr("acme/app", NewPr::new("main", branch)));
    }
    // Room for five statuses a minute: three pending ones on acme/app and one
    // refused on acme/locked (the other two wait without being sent) leave one.
    configure(&env, "    status_writes_per_minute: 5\n");
    let mut daemon = env.command(&["run"]).spawn().unwrap();
    let api = Api::new(&env).await;
    let mut ids = Vec::new();
    let app_keys = prs
        .iter()
        .map(|pr| format!("app/pr/github.com/acme/app/{pr}"));
    let locked_keys = locked
        .iter()
        .map(|pr| format!("app/pr/github.com/acme/locked/{pr}"));
    for key in app_keys.chain(locked_keys) {
        let (id, _) = eventually(DEADLINE, || async { delivered(&env, &key) })
            .await
            .unwrap_or_else(|| panic!("{key} was never delivered"));
        ids.push(id);
    }
    let refused = eventually(DEADLINE, || async {
        let status = api.status().await;
        let refused = status["statuses"]["refused"].as_array()?.clone();
        (!refused.is_empty() && posted(&env, "acme/app").len() == 3).then_some(refused)
    })
    .await
    .expect("the refusal was never reported");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["repository"], json!("github.com/acme/locked"));
    assert_eq!(refused[0]["status"], json!(403));
    assert_eq!(status_posts_to(&env, "acme/locked"), 1, "no storm");

    // 200 results in a burst: one more status fits the minute's budget.
    for n in 0..200 {
        let id = &ids[n % 3];
        let state = ["running", "failure", "success"][n % 3];
        api.result(id, state, &format!("http://ci/b/{n}")).await;
    }
    let deferred = eventually(DEADLINE, || async {
        let status = api.status().await;
        let next = status["statuses"]["next_due"].as_str()?.to_owned();
        let next = humantime::parse_rfc3339_weak(&next).ok()?;
        let later = next.duration_since(std::time::SystemTime::now()).ok()?;
        (later.as_secs() >= 20).then_some(status)
    })
    .await
    .expect("the statuses never waited for the budget");
    assert_eq!(posted(&env, "acme/app").len(), 4, "{deferred}");
    assert_eq!(status_posts_to(&env, "acme/app"), 4);
    assert_eq!(status_posts_to(&env, "acme/locked"), 1);
    let events = reqwest::get(format!("{}/api/v1/events", api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = serde_json::from_str(&events).unwrap();
    let reports = events
        .iter()
        .filter(|e| e["kind"] == "status_refused")
        .count();
    assert_eq!(reports, 1);
    let metrics = reqwest::get(format!("{}/metrics", api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("forgewatch_statuses_posted_total 4\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("forgewatch_statuses_failed_total 1\n"),
        "{metrics}"
    );
    daemon.kill().await.unwrap();
    daemon.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dependencies_a_dependent_build_s_state_shows_on_its_dependency() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", "main");
    env.github.create_repo("acme/lib", "main");
    let lib = env.github.open_pr("acme/lib", NewPr::new("main", "api"));
    let mut dependent = NewPr::new("main", "use-api");
    dependent.body = Some(format!("Depends on:\n- [ ] acme/lib#{lib}\n"));
    let app = env.github.open_pr("acme/app", dependent);
    configure_with(
        &env,
        "",
        "acme/lib",
        "{ statuses: true, dependencies: true }",
    );
    let daemon = env.command(&["run"]).spawn().unwrap();
    let api = Api::new(&env).await;
    let app_key = format!("app/pr/github.com/acme/app/{app}");
    let lib_key = format!("app/pr/github.com/acme/lib/{lib}");
    let (app_id, _) = eventually(DEADLINE, || async { delivered(&env, &app_key) })
        .await
        .expect("the dependent PR was never delivered");
    let (lib_id, _) = eventually(DEADLINE, || async { delivered(&env, &lib_key) })
        .await
        .expect("the dependency was never delivered");
    let with = format!("{CONTEXT} (with github.com/acme/app#{app})");
    let key = |repo: &str, context: &str| (repo.to_owned(), context.to_owned());
    let pending = ("pending".to_owned(), String::new());
    eventually(DEADLINE, || async {
        let last = last_statuses(&env);
        (last.len() == 3
            && last.get(&key("acme/app", CONTEXT)) == Some(&pending)
            && last.get(&key("acme/lib", CONTEXT)) == Some(&pending)
            && last.get(&key("acme/lib", &with)) == Some(&pending))
        .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{:?}", env.github.statuses()));

    // The dependent build fails, the dependency's own build passes: its author
    // sees both.
    api.result(&app_id, "failure", "http://ci/b/app").await;
    api.result(&lib_id, "success", "http://ci/b/lib").await;
    let failure = ("failure".to_owned(), "http://ci/b/app".to_owned());
    let success = ("success".to_owned(), "http://ci/b/lib".to_owned());
    eventually(DEADLINE, || async {
        let last = last_statuses(&env);
        (last.get(&key("acme/app", CONTEXT)) == Some(&failure)
            && last.get(&key("acme/lib", &with)) == Some(&failure)
            && last.get(&key("acme/lib", CONTEXT)) == Some(&success))
        .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{:?}", env.github.statuses()));
    let shas: std::collections::BTreeSet<(String, String)> = env
        .github
        .statuses()
        .into_iter()
        .map(|p| (p.repo, p.sha))
        .collect();
    assert_eq!(shas.len(), 2, "one head per PR: {shas:?}");
    support::stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_posts_the_statuses_its_deliveries_made_due_and_a_dry_run_none() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", "main");
    env.github.create_repo("acme/locked", "main");
    let pr = env
        .github
        .open_pr("acme/app", NewPr::new("main", "feature"));
    configure(&env, "");
    let dry = env.finish(env.command(&["once", "--dry-run"])).await;
    assert_eq!(dry.code, Some(0), "{dry:#?}");
    assert_eq!(env.github.statuses(), []);
    let run = env.once().await;
    let key = format!("app/pr/github.com/acme/app/{pr}");
    assert!(
        run.keys_and_statuses()
            .contains(&format!("{key} delivered")),
        "{run:#?}"
    );
    let (_, sha) = delivered(&env, &key).unwrap();
    assert_eq!(
        posted(&env, "acme/app"),
        [(sha, "pending".to_owned(), None)]
    );
}
