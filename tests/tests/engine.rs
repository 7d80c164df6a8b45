//! End-to-end: every forge is polled on its own (issue 13). A forge that accepts
//! connections and never answers stalls only the builds that need it: the other
//! forge's pushes are delivered on time, the watchdog keeps being fed, and SIGTERM
//! exits within `shutdown_grace` with the hung request still in flight. And the
//! daemon runs in-process: `service::run` with a listener, a shutdown token, a
//! lifecycle and a clock of the test's own (a delivery's backoff and a webhook's
//! redelivery window pass on it).

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use std::time::Duration;

use forgewatch_tests::wait::eventually;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{DEADLINE, Env, Ws};

const MAIN: &str = "main";
const LIDAR: &str = "drivers/lidar";
const LIDAR_URL: &str = "https://gitlab.example.org/drivers/lidar";

/// A workspace on each forge; GitHub's requests time out only after 60 s, and
/// stopping may take `grace`.
fn configure(env: &Env, grace: &str) {
    env.github.create_repo("acme/app", MAIN);
    env.gitlab.create_project(LIDAR, MAIN);
    env.configure(&[
        Ws {
            name: "gh",
            ci: "bb",
            packages: &[("app", "acme/app", MAIN)],
            pull_requests: false,
        },
        Ws {
            name: "lab",
            ci: "bb",
            packages: &[("lidar", LIDAR_URL, MAIN)],
            pull_requests: true,
        },
    ]);
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replacen(
            "max_concurrency: 4",
            "max_concurrency: 4\n    request_timeout: 60s",
            1,
        )
        .replace(
            "poll_interval: 1s",
            &format!("poll_interval: 1s\nshutdown_grace: {grace}"),
        );
    std::fs::write(env.config_path(), config).unwrap();
}

/// Requests the fake GitHub holds without answering.
fn hung(env: &Env) -> usize {
    env.github
        .requests()
        .iter()
        .filter(|r| r.status == 0)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_forge_delays_nothing_on_the_other_forge_and_the_watchdog_is_fed() {
    let env = Env::new().await;
    configure(&env, "5s");
    env.github.hang_path("/");
    let socket_path = env.dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut cmd = env.command(&["run"]);
    cmd.env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000");
    let mut child = cmd.spawn().unwrap();
    // The notifications, read as systemd would, as they come.
    let (watchdogs_tx, mut watchdogs) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await.unwrap();
            if buf[..n].starts_with(b"WATCHDOG=1") {
                let _ = watchdogs_tx.send(tokio::time::Instant::now());
            }
        }
    });
    // GitLab's mainline goes out while every GitHub request hangs.
    assert!(env.ci.wait_for_accepted(1, DEADLINE).await);
    assert_eq!(env.delivered_keys(0), ["lab/mainline"]);
    let asked = eventually(DEADLINE, || async { (hung(&env) >= 1).then_some(()) }).await;
    assert!(asked.is_some(), "GitHub was asked and holds the request");

    // Each push on GitLab is delivered within poll_interval + 1 s.
    for n in 1..=3 {
        let head = env.gitlab.push(LIDAR, MAIN);
        let delivered = eventually(Duration::from_secs(2), || async {
            let accepted = env.ci.accepted();
            (accepted.len() > n).then_some(())
        })
        .await;
        assert!(
            delivered.is_some(),
            "push {n} ({head}) not delivered in time\n{}",
            std::fs::read_to_string(env.dir.path().join("daemon.log")).unwrap_or_default()
        );
        assert_eq!(env.delivered_keys(n), ["lab/mainline"]);
    }
    // The watchdog keeps coming (every half `WATCHDOG_USEC`): the pings of the
    // pushes' seconds are there, and the next ones come.
    let mut during = 0;
    while watchdogs.try_recv().is_ok() {
        during += 1;
    }
    assert!(during >= 1, "no WATCHDOG=1 while the pushes were delivered");
    for _ in 0..4 {
        let next = tokio::time::timeout(Duration::from_secs(2), watchdogs.recv()).await;
        assert!(matches!(next, Ok(Some(_))), "no WATCHDOG=1 within 2 s");
    }
    reader.abort();
    assert!(hung(&env) >= 1, "GitHub still hangs");
    assert_eq!(env.ci.accepted().len(), 4, "nothing else was sent");
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait()).await.unwrap();
    assert_eq!(status.unwrap().code(), Some(0));
    env.github.release_hung();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_hung_request_in_flight_exits_within_the_grace() {
    let env = Env::new().await;
    configure(&env, "2s");
    env.github.hang_path("/");
    let mut child = env.command(&["run"]).spawn().unwrap();
    assert!(env.ci.wait_for_accepted(1, DEADLINE).await);
    let asked = eventually(DEADLINE, || async { (hung(&env) >= 1).then_some(()) }).await;
    assert!(asked.is_some(), "GitHub was never asked");
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    // shutdown_grace + 1 s.
    let status = tokio::time::timeout(Duration::from_secs(3), child.wait())
        .await
        .expect("exit within shutdown_grace + 1 s");
    assert_eq!(status.unwrap().code(), Some(0));
    env.github.release_hung();
}

/// A lifecycle that records what the daemon says.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<&'static str>>);

impl forgewatch::service::Lifecycle for Recorded {
    fn ready(&self) {
        self.0.lock().unwrap().push("ready");
    }
    fn status(&self, _line: &str) {}
    fn watchdog(&self) {}
    fn reloading(&self) {
        self.0.lock().unwrap().push("reloading");
    }
    fn stopping(&self) {
        self.0.lock().unwrap().push("stopping");
    }
    fn watchdog_interval(&self) -> Option<Duration> {
        None
    }
}

/// The configuration `env` wrote, loaded in this process with the tests' secrets.
fn load_config(env: &Env) -> forgewatch::config::Config {
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    let secrets = |name: &str| {
        let value = match name {
            "FW_E2E_TOKEN" => support::TOKEN,
            "FW_E2E_HOOK_SECRET" => support::HOOK_SECRET,
            "FW_E2E_TRIGGER_TOKEN" => support::TRIGGER_TOKEN,
            "FW_E2E_ADMIN" => support::ADMIN_TOKEN,
            "FW_E2E_GITHUB_HOOK" => support::GITHUB_HOOK_SECRET,
            "FW_E2E_GITLAB_HOOK" => support::GITLAB_HOOK_SECRET,
            _ => return None,
        };
        Some(value.to_owned())
    };
    forgewatch::config::load_with_env(&text, &env.config_path(), &secrets).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_in_process_until_its_token_is_cancelled() {
    use forgewatch::service::{Request, Requests, SystemClock};
    let env = Env::new().await;
    configure(&env, "5s");
    let config = load_config(&env);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let requests = Requests::default();
    let ask = requests.sender.clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let lifecycle = Recorded::default();
    let daemon = forgewatch::service::run(
        config,
        listener,
        requests,
        shutdown.clone(),
        &lifecycle,
        std::sync::Arc::new(SystemClock),
    );
    let drive = async {
        // Both mainlines, then a push, then a manual trigger through the loop.
        assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
        env.github.push("acme/app", MAIN);
        assert!(env.ci.wait_for_accepted(3, DEADLINE).await);
        assert_eq!(env.delivered_keys(2), ["gh/mainline"]);
        let (answer, id) = tokio::sync::oneshot::channel();
        let key = forgewatch::plan::ids::BuildKey::mainline("gh");
        ask.send(Request::Trigger(key, answer)).await.unwrap();
        let delivery_id = id.await.unwrap().unwrap();
        assert!(env.ci.wait_for_accepted(4, DEADLINE).await);
        let sent = env.ci.accepted()[3].properties();
        assert_eq!(sent["delivery_id"], delivery_id.as_str());
        assert_eq!(sent["build_key"], "gh/mainline");
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(daemon, drive);
    result.unwrap();
    assert_eq!(*lifecycle.0.lock().unwrap(), ["ready", "stopping"]);
    assert_eq!(env.ci.accepted().len(), 4, "nothing else was sent");
}

/// A wall clock the test moves.
struct ManualClock(std::sync::Mutex<std::time::SystemTime>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl forgewatch::service::Clock for ManualClock {
    fn now(&self) -> std::time::SystemTime {
        *self.0.lock().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_waits_for_its_backoff_on_the_injected_clock() {
    use forgewatch::service::Requests;
    let env = Env::new().await;
    configure(&env, "5s");
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        config.replace(
            "poll_interval: 1s\n",
            "poll_interval: 1s\ndelivery: { retry_initial: 1h, retry_cap: 2h }\n",
        ),
    )
    .unwrap();
    let config = load_config(&env);
    assert_eq!(config.delivery.retry_initial, Duration::from_secs(3600));
    env.ci.fail_next(2, 500);
    let clock = std::sync::Arc::new(ManualClock(std::sync::Mutex::new(
        std::time::SystemTime::now(),
    )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let lifecycle = Recorded::default();
    let daemon = forgewatch::service::run(
        config,
        listener,
        Requests::default(),
        shutdown.clone(),
        &lifecycle,
        clock.clone(),
    );
    let drive = async {
        // Both mainlines' first attempts fail: each is due again in about an hour.
        assert!(
            eventually(DEADLINE, || async {
                (env.ci.rejected_count() == 2).then_some(())
            })
            .await
            .is_some(),
            "the first attempts never came"
        );
        // Four more slices (each wakes the senders of what is pending): nothing is
        // due on the daemon's clock.
        let seen = env.requests().len();
        let more = || async { (env.requests().len() >= seen + 8).then_some(()) };
        assert!(eventually(DEADLINE, more).await.is_some());
        assert_eq!(env.ci.rejected_count(), 2);
        assert!(env.ci.accepted().is_empty(), "sent before its backoff");
        // Past the backoff (1 h, with at most 20% jitter): both go out, once.
        clock.advance(Duration::from_secs(2 * 3600));
        assert!(env.ci.wait_for_accepted(2, DEADLINE).await, "no retry");
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(daemon, drive);
    result.unwrap();
    let mut keys = env.delivered_keys(0);
    keys.sort();
    assert_eq!(keys, ["gh/mainline", "lab/mainline"], "each exactly once");
    assert_eq!(env.ci.rejected_count(), 2);
}

/// Both mainlines are delivered at once, GitHub holds one request, and each of two
/// GitLab pushes is delivered within `poll_interval` + 1 s meanwhile.
async fn mainlines_and_pushes_go_out_while_one_request_hangs(env: &Env) {
    assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
    let mut keys = env.delivered_keys(0);
    keys.sort();
    assert_eq!(keys, ["gh/mainline", "lab/mainline"]);
    let asked = eventually(DEADLINE, || async { (hung(env) >= 1).then_some(()) }).await;
    assert!(asked.is_some(), "GitHub was asked and holds the request");
    for n in 1..=2 {
        env.gitlab.push(LIDAR, MAIN);
        let delivered = eventually(Duration::from_secs(2), || async {
            (env.ci.accepted().len() > n + 1).then_some(())
        })
        .await;
        assert!(delivered.is_some(), "push {n} not delivered in time");
        assert_eq!(env.delivered_keys(n + 1), ["lab/mainline"]);
    }
    assert_eq!(hung(env), 1, "asked once, and still hanging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_dependency_lookup_holds_up_only_the_pull_request_that_needs_it() {
    use forgewatch_tests::fake_gitlab::NewMr;
    const MR: &str = "lab/pr/gitlab.example.org/drivers/lidar/1";
    let env = Env::new().await;
    configure(&env, "5s");
    // A GitLab MR depends on a GitHub PR outside the watched targets, whose lookup
    // hangs (GitHub's `request_timeout` is 60 s).
    env.github.hang_path("/repos/acme/app/pulls/7");
    let mut mr = NewMr::new("scan", MAIN);
    mr.description = Some("Depends-On: https://github.com/acme/app/pull/7\n".into());
    env.gitlab.open_mr(LIDAR, mr);
    let mut child = env.command(&["run"]).spawn().unwrap();
    // Both mainlines go out at once and GitLab's pushes go on; the MR waits.
    mainlines_and_pushes_go_out_while_one_request_hangs(&env).await;
    // Its answer (a failure) wakes the loop: the MR is built, its dependency unresolved.
    env.github.release_hung();
    assert!(env.ci.wait_for_accepted(5, DEADLINE).await);
    assert_eq!(env.delivered_keys(4), [MR]);
    let sent = env.ci.accepted()[4].properties();
    assert_eq!(
        sent["unresolved_dependencies"][0]["reference"], "github.com/acme/app#7",
        "{sent}"
    );
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait()).await.unwrap();
    assert_eq!(status.unwrap().code(), Some(0));
    assert_eq!(env.ci.accepted().len(), 5, "nothing else was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_mergeability_request_holds_up_only_its_pull_request() {
    use forgewatch_tests::fake_github::NewPr;
    const PR: &str = "gh/pr/github.com/acme/app/1";
    let env = Env::new().await;
    configure(&env, "5s");
    // The GitHub workspace builds its PRs at their merge ref (`pr_ref: auto`), so a
    // PR needs its mergeability; that request hangs.
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    let gh_builds_prs = config.replacen(
        "pull_requests:\n      enabled: false",
        "pull_requests:\n      enabled: true",
        1,
    );
    assert_ne!(gh_builds_prs, config, "{config}");
    std::fs::write(env.config_path(), gh_builds_prs).unwrap();
    env.github.open_pr("acme/app", NewPr::new(MAIN, "feature"));
    env.github.hang_path("/repos/acme/app/pulls/1");
    let mut child = env.command(&["run"]).spawn().unwrap();
    mainlines_and_pushes_go_out_while_one_request_hangs(&env).await;
    // The failed answer counts as "still computing": the PR is built at its head.
    env.github.release_hung();
    assert!(env.ci.wait_for_accepted(5, DEADLINE).await);
    assert_eq!(env.delivered_keys(4), [PR]);
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait()).await.unwrap();
    assert_eq!(status.unwrap().code(), Some(0));
    assert_eq!(env.ci.accepted().len(), 5, "nothing else was sent");
}

/// The `forgewatch_build_computations_total` counter of the `run` daemon of `env`.
async fn computations(env: &Env) -> u64 {
    let base = format!("http://{}", env.listen_address().await);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("forgewatch_build_computations_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_mergeability_answers_is_computed_from_once() {
    use forgewatch_tests::fake_github::NewPr;
    let env = Env::new().await;
    env.github.create_repo("acme/app", MAIN);
    env.configure(&[Ws {
        name: "gh",
        ci: "bb",
        packages: &[("app", "acme/app", MAIN)],
        pull_requests: true,
    }]);
    // One cycle an hour: nothing but the answers below makes the loop compute.
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        config.replacen("poll_interval: 1s", "poll_interval: 1h", 1),
    )
    .unwrap();
    for n in 0..8 {
        env.github
            .open_pr("acme/app", NewPr::new(MAIN, &format!("feature-{n}")));
    }
    // Eight mergeability questions, four at a time (`max_concurrency: 4`): the
    // first four hang until released, then fail; the next four are answered.
    env.github.hang_path("/repos/acme/app/pulls/");
    let mut child = env.command(&["run"]).spawn().unwrap();
    assert!(env.ci.wait_for_accepted(1, DEADLINE).await);
    assert!(env.github.wait_for_hung(4, DEADLINE).await);
    let before = computations(&env).await;
    env.github.release_hung();
    assert!(env.ci.wait_for_accepted(9, DEADLINE).await);
    let mut keys = env.delivered_keys(1);
    keys.sort();
    let expected: Vec<String> = (1..=8)
        .map(|n| format!("gh/pr/github.com/acme/app/{n}"))
        .collect();
    assert_eq!(keys, expected);
    // The eight answers came one after another: one computation from all of them.
    assert_eq!(computations(&env).await, before + 1);
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait()).await.unwrap();
    assert_eq!(status.unwrap().code(), Some(0));
    assert_eq!(env.ci.accepted().len(), 9, "nothing else was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_redelivered_after_an_hour_on_the_injected_clock_polls_again() {
    use forgewatch::service::Requests;
    let env = Env::new().await;
    configure(&env, "5s");
    // After the first cycle only webhooks poll (the next cycle is ten minutes off).
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        text.replace("poll_interval: 1s", "poll_interval: 10m"),
    )
    .unwrap();
    let clock = std::sync::Arc::new(ManualClock(std::sync::Mutex::new(
        std::time::SystemTime::now(),
    )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/github", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let lifecycle = Recorded::default();
    let daemon = forgewatch::service::run(
        load_config(&env),
        listener,
        Requests::default(),
        shutdown.clone(),
        &lifecycle,
        clock.clone(),
    );
    let drive = async {
        assert!(env.ci.wait_for_accepted(2, DEADLINE).await);
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let body = r#"{"ref":"refs/heads/main","repository":{"full_name":"acme/app"}}"#;
        let deliver = || async {
            let answer = http
                .post(&url)
                .header(
                    "x-hub-signature-256",
                    support::github_signature(body.as_bytes()),
                )
                .header("x-github-delivery", "0b9e4d0a-5f7c-4a39-9d0e-6f1c2b3a4d5e")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 202);
            serde_json::from_slice::<serde_json::Value>(&answer.bytes().await.unwrap()).unwrap()
        };
        let polled = serde_json::json!({"polled": "github.com/acme/app"});
        let head = env.github.push("acme/app", MAIN);
        assert_eq!(deliver().await, polled);
        assert!(env.ci.wait_for_accepted(3, DEADLINE).await);
        assert_eq!(env.ci.accepted()[2].field("revision"), Some(head.as_str()));
        let head = env.github.push("acme/app", MAIN);
        clock.advance(Duration::from_secs(3599));
        assert_eq!(deliver().await["redelivery"], true, "within the hour");
        clock.advance(Duration::from_secs(1));
        assert_eq!(deliver().await, polled, "an hour later");
        assert!(env.ci.wait_for_accepted(4, DEADLINE).await);
        assert_eq!(env.ci.accepted()[3].field("revision"), Some(head.as_str()));
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(daemon, drive);
    result.unwrap();
    assert_eq!(env.delivered_keys(2), ["gh/mainline", "gh/mainline"]);
}
